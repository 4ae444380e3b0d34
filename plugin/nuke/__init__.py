"""The Mattebox plugin for Nuke 14 to 16: a MatteboxMatte node and a dockable panel.

Runs on Nuke's own Python (3.9 to 3.11) with the standard library and Qt only. Pixels go to the
matting server as files (path mode): the node runs the `mattebox` client command in a subprocess
(plugin.host.client) and reads its JSON progress lines on a background thread.

Nuke start-up files, in startup/ (the folder on Nuke's plug-in path): init.py (makes this checkout
importable) and menu.py (menu, toolbar, panel).
"""
