"""Add-on preferences: which server, which `mattebox` client command, and whether the extension may
start a local server. Empty fields take the settings file that install.py writes (host.config)."""
from __future__ import annotations

import bpy
from bpy.props import BoolProperty, StringProperty

from .host import config


class MatteboxPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    server: StringProperty(name="Server", description="host:port of the Mattebox matting server "
                           "(empty: the one in the Mattebox settings file)")
    client: StringProperty(name="Client command", subtype="FILE_PATH",
                           description="Path of the `mattebox` executable (empty: the one in the Mattebox "
                                       "settings file, else `mattebox` on PATH)")
    start_server: BoolProperty(name="Start a local server", default=True,
                               description="When no server answers at a loopback address, start "
                                           "`mattebox serve` there (stopped when Blender quits)")
    loaded: BoolProperty(options={"HIDDEN"}, description="The settings file has been read once")

    def draw(self, context):
        col = self.layout.column()
        col.prop(self, "server")
        col.prop(self, "client")
        col.prop(self, "start_server")
        col.label(text=f"Empty fields use {config.path()} (written by `python3 install.py`)", icon="INFO")


def preferences(context=None) -> MatteboxPreferences:
    return (context or bpy.context).preferences.addons[__package__].preferences


def fill_from_config() -> None:
    """Once, at the first registration: copy the settings file into empty preferences (start_server
    included), so that later edits in Blender win. A broken file is left for settings() to report."""
    try:
        prefs = preferences()
        saved = config.load()
    except (KeyError, config.ConfigError):
        return
    if not prefs.loaded:
        prefs.server = prefs.server or saved.server
        prefs.client = prefs.client or saved.client
        prefs.start_server = saved.start_server
        prefs.loaded = True


def settings(context=None) -> config.Config:
    """The preferences as host settings; an empty server or client falls back to the settings file.
    Raises config.ConfigError for a broken settings file."""
    prefs = preferences(context)
    server, client = prefs.server.strip(), bpy.path.abspath(prefs.client.strip())
    if not server or not client:
        saved = config.load()
        server, client = server or saved.server, client or saved.client
    return config.Config(client=client, server=server, start_server=prefs.start_server)


def register() -> None:
    bpy.utils.register_class(MatteboxPreferences)


def unregister() -> None:
    bpy.utils.unregister_class(MatteboxPreferences)
