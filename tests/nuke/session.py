"""A Nuke user's session under one Nuke release's own Python and Qt (run by tests/test_nuke_releases.py
with the python of .venv-nuke14, -15 or -16, which hold Qt and nothing else), in one process:

1. imports every module of plugin/host and plugin/nuke, with an import hook that refuses what Nuke must
   never load (grpc, protobuf, numpy, torch, OpenImageIO, ...); then every module loaded must come from
   the standard library, the Qt bindings, the plugin's own files or the Nuke double;
2. checks the plugin's `nuke.` names and the double's against the types-nuke stubs (read as text from
   the tests' environment), and that the imported double has every name the plugin uses;
3. runs the plug-in folder's start-up files (init.py, menu.py) as Nuke does: menu, toolbar, panel;
4. builds the Mattebox panel offscreen: the test server up with its models, the loss curve drawn;
5. makes a MatteboxMatte node from the menu on the shot, presses Matte, sees the job in the panel and
   cancels it there, presses Matte again and pumps until the real server has written the alpha frames
   through the real `mattebox` client command, then again (all up to date); a refusal, a server that
   is down, and a farm template.

    python session.py PARAMS.json
PARAMS: root (the checkout), stubs (nuke-stubs folder), shot (src.####.exr, plate.exr, tri.####.png,
frames 1-4), comp (the script's folder), server (host:port), dead_server, mattebox (the client command).
Prints one JSON object on its last stdout line: what it saw; "failures" lists the steps that failed.
"""
import importlib
import importlib.abc
import json
import os
import sys
import sysconfig
import time
import traceback
from pathlib import Path

with open(sys.argv[1]) as _params:
    P = json.load(_params)
ROOT = os.path.abspath(P["root"])
HERE = os.path.dirname(os.path.abspath(__file__))
DOUBLE = os.path.join(ROOT, "tests", "nuke_double")
BASELINE = set(sys.modules)
SEEN = {"python": "%d.%d.%d" % sys.version_info[:3], "failures": [], "refused": [], "import_errors": {},
        "outside": [], "times": {}}
sys.path[:0] = [HERE, DOUBLE, ROOT]

import api_names  # noqa: E402  (standard library only)


class NotInNuke(importlib.abc.MetaPathFinder):
    """Refuses the modules Nuke must not load, naming the file that imports them."""

    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if (top in api_names.NOT_IN_NUKE or name.startswith(("plugin.client", "plugin.cli"))
                or (top == "models" and name not in ("models", "models.sequence"))):
            where = importer()
            if not where.startswith(".venv"):  # ours, not the Qt bindings probing for an optional numpy
                SEEN["refused"].append("%s (imported by %s)" % (name, where))
            raise ImportError("%s is not in Nuke: the plugin may use the standard library and Qt only "
                              "(imported by %s)" % (name, where))
        return None


def importer():
    """file:line of the innermost frame outside the import machinery and this file."""
    frame = sys._getframe(2)
    while frame is not None:
        file = frame.f_code.co_filename
        if not file.startswith("<") and os.path.abspath(file) != os.path.abspath(__file__):
            return "%s:%d" % (os.path.relpath(file, ROOT), frame.f_lineno)
        frame = frame.f_back
    return "?"


sys.meta_path.insert(0, NotInNuke())


class Step:
    """`with Step("name"):` times a step and records its failure (the traceback's end) instead of raising;
    the session ends there unless the steps after it do not need it (later=True)."""

    def __init__(self, name, later=False):
        self.name, self.later = name, later

    def __enter__(self):
        self.t0 = time.monotonic()
        return self

    def __exit__(self, kind, err, tb):
        SEEN["times"][self.name] = round(time.monotonic() - self.t0, 3)
        if err is not None:
            SEEN["failures"].append("%s: %s" % (self.name, "".join(traceback.format_exception(kind, err, tb))[-2500:]))
            if not self.later:
                finish()
        return True


def short_traceback(err):
    """[the error, the traceback's frames without the import machinery's (and this file's)] of `err`."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if not f.filename.startswith("<")
              and "importlib" not in f.filename and os.path.abspath(f.filename) != os.path.abspath(__file__)]
    return ["".join(traceback.format_exception_only(type(err), err))[-1500:],
            "".join(traceback.format_list(frames))[-1500:]]


def finish(code=0):
    running = sys.modules.get("plugin.nuke.job")
    for task in running.running() if running is not None else []:  # a failed step's job: stop its client
        task.cancel()
    # every module the session loaded, the plugin's lazy imports included
    SEEN["outside"] = sorted("%s (%s)" % (n, getattr(m, "__file__", None)) for n, m in list(sys.modules.items())
                             if n not in BASELINE and getattr(m, "__file__", None) and not allowed(m.__file__))
    sys.stdout.flush()
    print(json.dumps(SEEN))
    sys.stdout.flush()
    os._exit(code)  # no atexit or Qt teardown: what the process saw is all in SEEN


def modules(folder):
    """Dotted names of the .py modules under ROOT/folder."""
    out = []
    for base, dirs, files in os.walk(os.path.join(ROOT, folder)):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for f in sorted(files):
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(base, f), ROOT)[:-3].split(os.sep)
                out.append(".".join(rel[:-1] if rel[-1] == "__init__" else rel))
    return out


def allowed(file):
    """Whether a loaded module's file is the standard library, the Qt bindings, or ours (a module with no
    file of its own, like the Qt bindings' embedded "(builtin)" ones, is theirs)."""
    if not os.path.isabs(file):
        return True
    file = os.path.realpath(file)
    paths = sysconfig.get_paths()
    stdlib = [os.path.realpath(paths[k]) for k in ("stdlib", "platstdlib")]
    site = os.path.realpath(paths["purelib"])
    qt = [os.path.join(site, d) for d in ("PySide2", "shiboken2", "PySide6", "shiboken6")]
    ours = [os.path.join(ROOT, "plugin", "host"), os.path.join(ROOT, "plugin", "nuke"), DOUBLE, HERE]
    ours_files = [os.path.join(ROOT, "plugin", "__init__.py"), os.path.join(ROOT, "models", "__init__.py"),
                  os.path.join(ROOT, "models", "sequence.py")]
    if any(file.startswith(os.path.join(p, "")) for p in qt + ours) or file in ours_files:
        return True
    return any(file.startswith(os.path.join(p, "")) for p in stdlib) and not file.startswith(os.path.join(site, ""))


# -- 1. imports ---------------------------------------------------------------------------------------

with Step("imports", later=True):
    import harness  # noqa: E402  (the Nuke double: tests/nuke_double)
    import nuke  # noqa: E402

    names = modules(os.path.join("plugin", "host")) + modules(os.path.join("plugin", "nuke"))
    for name in names:
        try:
            importlib.import_module(name)
        except BaseException as err:  # a SyntaxError of a newer Python included
            SEEN["import_errors"][name] = short_traceback(err)
    SEEN["imported"] = sorted(n for n in names if n in sys.modules)
    if not SEEN["import_errors"]:
        from plugin.nuke.qt import QtCore

        SEEN["qt"] = [QtCore.__name__.split(".")[0], QtCore.qVersion()]
if SEEN["import_errors"] or SEEN["failures"]:
    finish()

import nuke_checks  # noqa: E402
from plugin.host import config  # noqa: E402
from plugin.nuke import job, menus  # noqa: E402
from plugin.nuke import panel as mpanel  # noqa: E402
from plugin.nuke.qt import QtGui, QtWidgets  # noqa: E402

# -- 2. the stubs --------------------------------------------------------------------------------------

with Step("stubs", later=True):
    plugin_dir = Path(ROOT, "plugin", "nuke")
    SEEN["stubs_missing"] = api_names.missing(Path(P["stubs"]), plugin_dir, Path(DOUBLE))
    used = api_names.used_names("nuke", plugin_dir)
    panels = api_names.used_names("nukescripts.panels", plugin_dir)
    import nukescripts  # noqa: E402

    SEEN["double_lacks"] = sorted([n for n in used if not hasattr(nuke, n)] +
                                  ["nukescripts.panels." + n for n in panels if not hasattr(nukescripts.panels, n)])
    SEEN["nuke_names_used"] = len(used)

# -- 3. start-up files, 4. the panel --------------------------------------------------------------------

app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
config.save(config.Config(client=P["mattebox"], server=P["server"], start_server=False))
harness.new_script(os.path.join(P["comp"], "comp.nk"), 1, 4)
panel = None

with Step("startup"):
    startup = os.path.join(ROOT, "plugin", "nuke", "startup")
    for start_up in ("init.py", "menu.py"):  # as Nuke runs a plug-in folder's start-up files
        path = os.path.join(startup, start_up)
        with open(path) as f:
            exec(compile(f.read(), path, "exec"), {"__file__": path, "__name__": "__main__"})
    item = nuke.menu("Nuke").findItem("Mattebox/Matte")
    tool = nuke.toolbar("Nodes").findItem("Mattebox/Matte")
    widget, title, panel_id = nuke._state.panels[-1]
    SEEN["startup"] = {"menu": item is not None and item.script() == menus.CREATE,
                       "toolbar_icon": tool is not None and os.path.isfile(tool.icon()),
                       "panel": [title, panel_id]}

with Step("panel"):
    panel = eval(widget, {})()  # nukescripts evaluates the string in Nuke's namespace and makes the widget
    assert isinstance(panel, QtWidgets.QWidget)
    SEEN["panel_models"] = nuke_checks.check_panel_lists_the_server(app, panel, P["server"])  # its timer ticks
    panel.timer.stop()  # from here on the session ticks it
    SEEN["panel_health"] = panel.health.text()
    nuke_checks.check_loss_curve(mpanel, QtGui)
    SEEN["loss_curve"] = "drawn"

# -- 5. a node, a job ----------------------------------------------------------------------------------

shot = P["shot"]


def read(name, first=1, last=4):
    return nuke.nodes.Read(file=os.path.join(shot, name), first=first, last=last)


def status(node):
    return node["status"].value()


with Step("matte"):
    item.invoke()  # Mattebox > Matte: a node asking the server for its models in the background
    (node,) = [n for n in nuke.root().nodes() if n.knob("matte") is not None]
    harness.pump(lambda: "models on" in status(node), 60)
    SEEN["node"] = node.name()
    SEEN["node_models"] = node["model"].values()
    node.setInput(0, read("src.####.exr"))
    node.setInput(1, read("plate.exr"))
    node["model"].setValue("difference")
    statuses = {}

    node["matte"].execute()  # the job shows in the panel; its Cancel button there stops it at once
    task = job.find(node.fullName())
    panel.tick()
    row = panel.rows[task]
    SEEN["job_row"] = [row.label.text(), row.bar.value(), panel.idle.isHidden()]
    row.cancel.click()
    nuke_checks.wait(app, lambda: not task._thread.is_alive())
    harness.run_queued()
    statuses["cancelled"] = status(node)
    panel.tick()
    SEEN["job_row_after"] = [task in panel.rows, panel.idle.isHidden()]

    task = nuke_checks.press(node, "matte")
    statuses["matte"] = status(node)
    SEEN["percent"] = task.percent
    SEEN["command"] = task.job.command[1:]
    alpha = node.node("MatteboxAlpha")
    SEEN["alpha_read"] = [alpha["file"].value(), alpha["first"].value(), alpha["last"].value(),
                          alpha["disable"].value()]
    nuke_checks.press(node, "matte")
    statuses["again"] = status(node)
    SEEN["statuses"] = statuses
    SEEN["messages"] = harness.messages()

with Step("errors"):
    node["model"].setValue("closed_form")  # no Trimap connected
    nuke_checks.press(node, "matte")
    SEEN["refused_status"] = status(node)
    node["model"].setValue("difference")
    node["server"].setValue(P["dead_server"])
    nuke_checks.press(node, "matte")
    SEEN["down_status"] = status(node)
    SEEN["down_message"] = harness.messages()[-1:]
    node["server"].setValue(P["server"])

with Step("farm"):
    node["farm_chunk"].setValue(2)
    node["farm"].execute()
    SEEN["farm_status"] = status(node)

if panel is not None:
    panel.deleteLater()
SEEN["double_state"] = {"renders": harness.renders(), "tasks": len(nuke._state.tasks)}
finish()
