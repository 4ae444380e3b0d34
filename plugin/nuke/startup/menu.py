"""Nuke start-up file (GUI sessions): the Mattebox menu, toolbar icon and panel."""
from plugin.nuke import menus

menus.install()
