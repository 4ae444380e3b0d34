"""The Mattebox menu ("Mattebox > Matte" in Nuke's menu bar and in the Nodes toolbar, with an icon)
and the dockable Mattebox panel (Windows > Custom > Mattebox, or the Pane menu)."""
import os

import nuke
import nukescripts

ICON = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mattebox.png").replace(os.sep, "/")
CREATE = "from plugin.nuke import actions; actions.create()"
PANEL_ID = "com.mattebox.panel"
#: evaluated by nukescripts in Nuke's namespace: it imports what it needs
PANEL_WIDGET = "__import__('plugin.nuke.panel', fromlist=['Panel']).Panel"


def install():
    nuke.menu("Nuke").addMenu("Mattebox").addCommand("Matte", CREATE, icon=ICON)
    nuke.toolbar("Nodes").addMenu("Mattebox", icon=ICON).addCommand("Matte", CREATE, icon=ICON)
    nukescripts.panels.registerWidgetAsPanel(PANEL_WIDGET, "Mattebox", PANEL_ID)
