"""The Nuke API as the types-nuke stubs describe it, and the names the plugin and the Nuke double use.

Standard library only, Python 3.9 syntax: tests/test_nuke_api.py uses it in the tests' environment and
tests/nuke/session.py under each Nuke release's own Python (the stubs are read as text from the tests'
environment; the release environments hold only Qt).
"""
from __future__ import annotations

import ast
from pathlib import Path

#: top-level modules the Nuke plugin must never load: Nuke has its own protobuf (loading ours, or grpcio,
#: has crashed it), and the plugin has the standard library and Qt only; nor the server's own packages
NOT_IN_NUKE = {"grpc", "google", "numpy", "torch", "OpenImageIO", "cv2", "server", "training"}


def public_names(tree: ast.Module) -> set[str]:
    """Top-level names a module defines (functions, classes, assignments; not imports), public only."""
    names = set()
    for n in tree.body:
        if isinstance(n, (ast.FunctionDef, ast.ClassDef)):
            names.add(n.name)
        elif isinstance(n, ast.Assign):
            names.update(t.id for t in n.targets if isinstance(t, ast.Name))
        elif isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name):
            names.add(n.target.id)
    return {n for n in names if not n.startswith("_")}


def stub_names(stubs: Path) -> set[str]:
    """The names `import nuke` offers according to the stubs folder `stubs` (nuke-stubs/), following
    __init__.pyi's relative imports."""
    init = ast.parse((stubs / "__init__.pyi").read_text())
    names = public_names(init)
    for n in init.body:
        if isinstance(n, ast.ImportFrom) and n.level == 1:
            module = public_names(ast.parse((stubs / ("%s.pyi" % n.module)).read_text()))
            names |= module if n.names[0].name == "*" else {a.asname or a.name for a in n.names}
    return names


def used_names(module: str, plugin: Path) -> dict[str, set[str]]:
    """`module.NAME` attributes used in the .py files under `plugin` (module may be dotted:
    "nukescripts.panels"): name -> file names."""
    used: dict[str, set[str]] = {}
    for path in sorted(plugin.rglob("*.py")):
        for n in ast.walk(ast.parse(path.read_text())):
            if isinstance(n, ast.Attribute) and ast.unparse(n.value) == module:
                used.setdefault(n.attr, set()).add(path.name)
    return used


def missing(stubs: Path, plugin: Path, double: Path) -> dict[str, list[str]]:
    """What the stubs lack: {"plugin": nuke names the plugin uses, "double": public names the double
    defines}; both empty when the plugin and the double keep to the stubs' API."""
    names = stub_names(stubs)
    return {"plugin": sorted(n for n in used_names("nuke", plugin) if n not in names),
            "double": sorted(public_names(ast.parse((double / "nuke.py").read_text())) - names)}
