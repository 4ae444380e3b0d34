"""The one Qt compatibility import: PySide6 (Nuke 16) else PySide2 (Nuke 14 and 15).

    from plugin.nuke.qt import QtCore, QtGui, QtWidgets
"""
try:
    from PySide6 import QtCore, QtGui, QtWidgets
except ImportError:
    from PySide2 import QtCore, QtGui, QtWidgets

__all__ = ["QtCore", "QtGui", "QtWidgets"]
