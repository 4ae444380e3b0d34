"""Mattebox for Blender: matte an image sequence or movie clip on a Mattebox server and wire the
alpha into the scene compositor.

Blender's own Python only: the extension runs the `mattebox` client command in a subprocess (host/,
a copy of plugin/host made when the zip is built) and reads its JSON progress lines. Modules:
preferences (server, client, local server), settings (the panel's choices, per scene), sources
(datablock -> files the server reads), matting (one run: checks, job, steps, result), compositor
(alpha sequence -> Set Alpha -> output), operators, panel, state (what is known while Blender runs).
"""
from . import operators, panel, preferences, settings, state

_MODULES = (preferences, settings, operators, panel)


def register() -> None:
    for module in _MODULES:
        module.register()
    preferences.fill_from_config()


def unregister() -> None:
    state.STATE.stop()  # also when Blender quits: it disables every add-on on the way out
    for module in reversed(_MODULES):
        module.unregister()
