#!/usr/bin/env python3
"""Set up Mattebox in one command (standard library only; safe to run again).

    python3 install.py            environment, dependencies, generated gRPC code, self-check
    python3 install.py --demo     ... then run the demo (the main job on a generated shot)
    python3 install.py --test     ... then run the test suite
    python3 install.py --blender  ... and install the Blender extension into a Blender found here
    python3 install.py --nuke     ... and add the Nuke plugin to ~/.nuke (done anyway when ~/.nuke exists)

Steps, each skipped when already done:
1. a virtual environment in .venv (Python 3.11 or newer);
2. PyTorch 2.13.0: the CUDA build where an NVIDIA GPU answers `nvidia-smi`, else the CPU build;
3. the project and its pinned dependencies (pyproject.toml), installed editable;
4. the Python gRPC code generated from server/api/mattebox.proto with grpcio-tools (regenerated on
   every run, never committed, so it always matches the .proto);
5. a self-check: the generated code imports, the model registry lists every model, and a server
   starts and answers a health check and ListModels over loopback gRPC;
6. the host plugins' settings (plugin/host/config.py: this checkout's `mattebox` command; the other
   keys of an existing file are kept: server(s), start_server, allowed_roots, token, tls_ca), then the
   Nuke and Blender plugins on request.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".mattebox-deps"
TORCH = "2.13.0"
PROTO = "server/api/mattebox.proto"


def say(msg: str) -> None:
    print(f"install: {msg}", flush=True)


def run(*cmd: str, env: dict | None = None) -> None:
    result = subprocess.run(cmd, cwd=ROOT, env=env)
    if result.returncode != 0:
        sys.exit(f"install: failed ({result.returncode}): {' '.join(cmd)}")


def venv_python() -> str:
    return str(VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python"))


def output(*cmd: str) -> str:
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else ""


def has_cuda() -> bool:
    return shutil.which("nvidia-smi") is not None and output("nvidia-smi", "-L").startswith("GPU")


def make_venv() -> None:
    if sys.version_info < (3, 11):
        sys.exit(f"install: the server needs Python 3.11 or newer; this is {sys.version.split()[0]}. "
                 "Run install.py with a newer python3.")
    if not Path(venv_python()).exists():
        say(f"creating {VENV}")
        run(sys.executable, "-m", "venv", str(VENV))


def install_torch() -> None:
    cuda = has_cuda()
    have = output(venv_python(), "-c", "import torch; print(torch.__version__, torch.version.cuda)")
    version, _, built_for = have.partition(" ")
    if version.split("+")[0] == TORCH and (built_for != "None") == cuda:
        return
    env = dict(os.environ)
    if cuda:
        say(f"installing PyTorch {TORCH} with CUDA (nvidia-smi found a GPU)")
        env["PIP_FIND_LINKS"] = ""  # a local CPU wheel folder must not win over the CUDA build
    else:
        say(f"installing PyTorch {TORCH} for the CPU (no NVIDIA GPU found)")
    run(venv_python(), "-m", "pip", "install", "--quiet", f"torch=={TORCH}", env=env)


def install_project() -> None:
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text() == digest:
        return
    say("installing the project and its dependencies")
    run(venv_python(), "-m", "pip", "install", "--quiet", "-e", ".[test]")
    STAMP.write_text(digest)


def generate_grpc() -> None:
    run(venv_python(), "-m", "grpc_tools.protoc", "-I", ".", "--python_out=.", "--pyi_out=.",
        "--grpc_python_out=.", PROTO)


SELF_CHECK = """
from models.registry import Registry
from plugin.client.connection import Client
from server.app import ServerConfig, start
names = Registry().names()
running = start(ServerConfig(port=0))
try:
    with Client(running.address) as c:
        assert c.health() == "SERVING"
        served = [m.name for m in c.models()]
        assert served == names, (served, names)
finally:
    running.stop()
print("install: self-check passed: server answers on loopback; models: " + ", ".join(names))
"""


def write_host_config(mattebox: str) -> None:
    sys.path.insert(0, str(ROOT))
    from plugin.host import config

    try:
        cfg = config.load()
    except config.ConfigError as err:
        kept = config.path().with_name(config.path().name + ".broken")
        os.replace(config.path(), kept)  # the user's servers, roots and token stay readable there
        say(f"replacing unusable settings (the old file is now {kept}): {err}")
        cfg = config.Config()
    cfg.client = mattebox
    say(f"host plugin settings: {config.save(cfg)}")


def main() -> int:
    ap = argparse.ArgumentParser(description="Set up Mattebox (idempotent).")
    what = ap.add_mutually_exclusive_group()
    what.add_argument("--demo", action="store_true", help="run the demo after setting up")
    what.add_argument("--test", action="store_true", help="run the test suite after setting up")
    ap.add_argument("--blender", action="store_true", help="install the Blender extension (or say where its zip is)")
    ap.add_argument("--nuke", action="store_true", help="add the Nuke plugin to ~/.nuke (default when ~/.nuke exists)")
    ap.add_argument("pytest_args", nargs="*", help="extra pytest arguments for --test (after --)")
    args = ap.parse_args()
    make_venv()
    install_torch()
    install_project()
    generate_grpc()
    run(venv_python(), "-c", SELF_CHECK)
    mattebox = str(Path(venv_python()).with_name("mattebox"))
    write_host_config(mattebox)
    if args.nuke or (Path.home() / ".nuke").is_dir():
        run(mattebox, "plugin", "nuke", "--install")
    if args.blender:
        run(mattebox, "plugin", "blender", "--install")
    if args.demo:
        return subprocess.run([mattebox, "demo"], cwd=ROOT).returncode
    if args.test:
        return subprocess.run([venv_python(), "-m", "pytest", "-q", *args.pytest_args], cwd=ROOT).returncode
    say(f"done. Try: {mattebox} demo   (or {mattebox} serve, {mattebox} models)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
