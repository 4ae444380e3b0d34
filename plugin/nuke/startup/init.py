"""Nuke start-up file (every session, GUI or not): make the Mattebox checkout importable.

This folder (plugin/nuke/startup) is what goes on Nuke's plug-in path: it holds only the two
start-up files, so no module of ours can shadow a studio's on NUKE_PATH. Only a sys.path entry: the node's buttons import `plugin.nuke.*` when pressed, so a render or
terminal session loads nothing else.
"""
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
if _ROOT not in sys.path:
    sys.path.append(_ROOT)
