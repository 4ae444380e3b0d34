"""The Nuke plugin against what Nuke offers: every `nuke.` name it uses exists in the types-nuke stubs,
the Nuke double defines nothing the stubs lack, the code parses as Python 3.9 (Nuke 14), and
`mattebox plugin nuke` installs into a Nuke user folder and removes exactly what it added; the
installed start-up files make the menu, the toolbar icon and the panel."""
from __future__ import annotations

import ast
import contextlib
import io
import socket
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "nuke_double"))
import harness  # noqa: E402
import nuke  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent / "nuke"))
import api_names  # noqa: E402  (shared with tests/nuke/session.py, which runs it under each Nuke release)
from api_names import public_names  # noqa: E402

from plugin.cli.main import main  # noqa: E402
from plugin.host import config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DOUBLE = ROOT / "tests" / "nuke_double"
PLUGIN = ROOT / "plugin" / "nuke"
STUBS = next(Path(p) / "nuke-stubs" for p in sys.path if (Path(p) / "nuke-stubs" / "__init__.pyi").exists())


def stub_names() -> set[str]:
    """The names `import nuke` offers according to the stubs (following __init__.pyi's imports)."""
    return api_names.stub_names(STUBS)


def used_names(module: str) -> dict[str, set[str]]:
    """`module.NAME` attributes used in plugin/nuke/** (module may be dotted: "nukescripts.panels"):
    name -> files."""
    return api_names.used_names(module, PLUGIN)


def test_nuke_names_the_plugin_uses_exist_in_the_stubs():
    stubs = stub_names()
    assert {"Group", "ProgressTask", "executeInMainThread", "execute", "Enumeration_Knob"} <= stubs
    used = used_names("nuke")
    assert {"ProgressTask", "executeInMainThread", "execute", "nodes"} <= set(used)
    missing = {name: files for name, files in used.items() if name not in stubs}
    assert not missing, f"not in the types-nuke stubs: {missing}"


def test_nuke_double_offers_only_what_the_stubs_have():
    extra = public_names(ast.parse((DOUBLE / "nuke.py").read_text())) - stub_names()
    assert not extra, f"the double defines names real Nuke lacks: {extra}"
    hosts = (ROOT.parent / "shared" / "docs" / "HOSTS.md")
    panels = public_names(ast.parse((DOUBLE / "nukescripts" / "panels.py").read_text()))
    assert panels == {"registerWidgetAsPanel"} == set(used_names("nukescripts.panels"))
    if hosts.exists():
        assert "nukescripts.panels.registerWidgetAsPanel(widget_path_str, title, id, create=False)" in hosts.read_text()


def py39_problems(path: Path) -> list[str]:
    src = path.read_text()
    tree = ast.parse(src, feature_version=(3, 9))
    future = any(isinstance(n, ast.ImportFrom) and n.module == "__future__" and
                 any(a.name == "annotations" for a in n.names) for n in tree.body)
    problems = [f"{path}:{n.lineno}: match statement" for n in ast.walk(tree) if type(n).__name__ == "Match"]
    if not future:
        annotations = [n.annotation for n in ast.walk(tree) if isinstance(n, (ast.arg, ast.AnnAssign)) and n.annotation]
        annotations += [n.returns for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                        and n.returns]
        problems += [f"{path}:{a.lineno}: X | Y annotation without `from __future__ import annotations`"
                     for a in annotations for b in ast.walk(a) if isinstance(b, ast.BinOp) and isinstance(b.op, ast.BitOr)]
    return problems


def test_nuke_plugin_code_is_python_39():
    files = [*PLUGIN.rglob("*.py"), *(ROOT / "plugin" / "host").rglob("*.py"), ROOT / "models" / "sequence.py"]
    assert len(files) > 10
    assert [p for f in files for p in py39_problems(f)] == []
    bad = ROOT / "bad.py"
    problems = py39_problems_text("def f(x: int | None): pass\n", bad)
    assert problems and "X | Y" in problems[0]


def py39_problems_text(src: str, path: Path) -> list[str]:
    """py39_problems of a source text (the check itself is checked on a bad example)."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / path.name
        f.write_text(src)
        return py39_problems(f)


def mattebox(*args: str) -> subprocess.CompletedProcess:
    """`mattebox ARGS` run in this process (its command-line entry point), output captured."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def test_nuke_install_is_idempotent_and_uninstall_removes_exactly_it(tmp_path):
    nuke_dir = tmp_path / ".nuke"
    nuke_dir.mkdir()
    mine = "import nuke\nnuke.pluginAddPath('/studio/tools')  # no newline at the end"
    (nuke_dir / "init.py").write_text(mine)
    (nuke_dir / "menu.py").write_text("print('my menu')\n")
    for _ in range(2):
        r = mattebox("plugin", "nuke", "--install", "--nuke-dir", str(nuke_dir))
        assert r.returncode == 0, r.stderr
    text = (nuke_dir / "init.py").read_text()
    assert text.startswith(mine) and text.count(">>> mattebox >>>") == 1 and str(PLUGIN / "startup") in text
    assert (nuke_dir / "menu.py").read_text() == "print('my menu')\n"
    r = mattebox("plugin", "nuke", "--uninstall", "--nuke-dir", str(nuke_dir))
    assert r.returncode == 0 and (nuke_dir / "init.py").read_text() == mine
    assert "nothing to remove" in mattebox("plugin", "nuke", "--uninstall", "--nuke-dir", str(nuke_dir)).stderr

    fresh = tmp_path / "fresh"
    assert mattebox("plugin", "nuke", "--install", "--nuke-dir", str(fresh)).returncode == 0
    assert mattebox("plugin", "nuke", "--uninstall", "--nuke-dir", str(fresh)).returncode == 0
    assert list(fresh.iterdir()) == []  # the init.py it made is gone again
    line = mattebox("plugin", "nuke", "--print").stdout
    assert line.startswith("export NUKE_PATH=") and str(PLUGIN / "startup") in line


def test_nuke_start_up_files_make_the_menu_toolbar_and_panel(tmp_path, monkeypatch):
    pytest.importorskip("PySide6")
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    monkeypatch.setenv("MATTEBOX_CONFIG", str(tmp_path / "client.json"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        down = "127.0.0.1:%d" % s.getsockname()[1]
    config.save(config.Config(client=str(Path(sys.executable).with_name("mattebox")), server=down, start_server=False))
    harness.new_script(tmp_path / "comp.nk")
    nuke._state.menus.clear()
    assert mattebox("plugin", "nuke", "--install", "--nuke-dir", str(tmp_path)).returncode == 0
    exec((tmp_path / "init.py").read_text(), {})  # ~/.nuke/init.py, as Nuke runs it
    (plugin_dir,) = nuke._state.plugin_paths[-1:]
    for start_up in ("init.py", "menu.py"):  # Nuke then runs the plug-in folder's start-up files
        path = Path(plugin_dir) / start_up
        exec(compile(path.read_text(), str(path), "exec"), {"__file__": str(path), "__name__": "__main__"})
    item = nuke.menu("Nuke").findItem("Mattebox/Matte")
    tool = nuke.toolbar("Nodes").findItem("Mattebox/Matte")
    assert item is not None and tool is not None and Path(tool.icon()).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert nuke.toolbar("Nodes").findItem("Mattebox").icon() == tool.icon()

    from plugin.nuke.qt import QtWidgets

    item.invoke()  # Mattebox > Matte: a node, asking a server that is not there for its models
    (node,) = [n for n in nuke.root().nodes() if n.knob("matte") is not None]
    assert [n.name() for n in node.nodes() if n.Class() == "Input"] == ["Source", "Plate", "Trimap", "GT"]
    assert node["server"].value() == down
    harness.pump(lambda: node["status"].value().startswith("no Mattebox server answers at " + down), 30)

    widget, title, panel_id = nuke._state.panels[-1]
    assert title == "Mattebox" and panel_id
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    panel = eval(widget, {})()  # nukescripts evaluates the string in Nuke's namespace and makes the widget
    assert isinstance(panel, QtWidgets.QWidget) and app is not None
    panel.timer.stop()
    panel.deleteLater()


BANNED = api_names.NOT_IN_NUKE


def imports_of(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside functions (absolute names)."""
    names = set()
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.Import):
            names.update(a.name for a in n.names)
        elif isinstance(n, ast.ImportFrom):
            base = n.module or ""
            if n.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - n.level + 1] + ([base] if base else []))
            names.update(f"{base}.{a.name}" if (ROOT / base.replace(".", "/") / f"{a.name}.py").exists() else base
                         for a in n.names)
    return names


def test_nuke_plugin_loads_no_grpc_protobuf_numpy_or_torch():
    """Nuke ships its own protobuf and must stay free of ours: following every import of plugin/nuke
    through the checkout, nothing reaches grpc, protobuf, numpy, torch, OpenImageIO or the server; of
    models/, only the standard-library frame patterns."""
    todo, seen, reached = list(PLUGIN.rglob("*.py")), set(), {}
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imports_of(path):
            reached.setdefault(name, path.relative_to(ROOT))
            file = ROOT / (name.replace(".", "/") + ".py")
            package = ROOT / name.replace(".", "/") / "__init__.py"
            todo += [f for f in (file, package) if f.exists()]
    bad = {n: str(f) for n, f in reached.items() if n.split(".")[0] in BANNED}
    assert not bad, f"modules Nuke must not load, and the file that imports them: {bad}"
    assert {n for n in reached if n.startswith("models")} <= {"models", "models.sequence"}
    assert {"plugin.host.client", "nuke"} <= set(reached) and len(seen) > 15  # the walk saw the plugin
