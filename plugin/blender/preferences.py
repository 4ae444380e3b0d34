"""Add-on preferences: which server, which `mattebox` client command, and whether the extension may
start a local server. Empty fields take the settings file that install.py writes (host.config); the
file's other settings (allowed roots, token, TLS CA, ...) pass through to the client unchanged, and its
server list is offered as suggestions in the Server field."""
from __future__ import annotations

import dataclasses

import bpy
from bpy.props import BoolProperty, StringProperty

from .host import config


def _server_suggestions(self, context, edit_text: str) -> list[str]:
    """The settings file's servers, each alone and (several) all together, balanced round-robin."""
    try:
        servers = config.load().servers
    except config.ConfigError:
        return []
    found = list(servers) + ([",".join(servers)] if len(servers) > 1 else [])
    return [s for s in found if edit_text.lower() in s.lower()] or found


class MatteboxPreferences(bpy.types.AddonPreferences):
    bl_idname = __package__

    server: StringProperty(name="Server", description="host:port of the Mattebox matting server "
                           "(empty: the one in the Mattebox settings file)",
                           search=_server_suggestions, search_options={"SUGGESTION"})
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
        prefs.server = prefs.server or saved.address()
        prefs.client = prefs.client or saved.client
        prefs.start_server = saved.start_server
        prefs.loaded = True


def settings(context=None) -> config.Config:
    """The settings file with the preferences on top: a server (or "a:1,b:2" list) in the preferences
    other than the file's address replaces it; an empty server or client keeps the file's. Raises
    config.ConfigError for a broken settings file."""
    prefs = preferences(context)
    saved = config.load()
    server, client = prefs.server.strip(), bpy.path.abspath(prefs.client.strip())
    cfg = dataclasses.replace(saved, client=client or saved.client, start_server=prefs.start_server)
    if server and server != saved.address():
        parts = [p.strip() for p in server.split(",") if p.strip()]
        cfg = dataclasses.replace(cfg, server=parts[0] if len(parts) == 1 else saved.server,
                                  servers=parts if len(parts) > 1 else [])
    return cfg


def register() -> None:
    bpy.utils.register_class(MatteboxPreferences)


def unregister() -> None:
    bpy.utils.unregister_class(MatteboxPreferences)
