"""Nuke start-up file (every session, GUI or not): make the Mattebox checkout importable.

Only a sys.path entry: the node's buttons import `plugin.nuke.*` when pressed, so a render or
terminal session loads nothing else.
"""
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if _ROOT not in sys.path:
    sys.path.append(_ROOT)
