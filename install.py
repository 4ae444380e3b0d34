#!/usr/bin/env python3
"""Set up Mattebox in one command (standard library only; safe to run again).

    python3 install.py            environment, dependencies, generated gRPC code, self-check
    python3 install.py --demo     ... then run the demo (the main job on a generated shot)
    python3 install.py --test     ... then run the test suite
    python3 install.py --blender  ... and install the Blender extension into a Blender found here
    python3 install.py --nuke     ... and add the Nuke plugin to ~/.nuke (done anyway when ~/.nuke exists)
    python3 install.py --dry-run  say which PyTorch build it would install and how; change nothing

Steps, each skipped when already done:
1. a virtual environment in .venv (Python 3.11 or newer);
2. PyTorch 2.13.0 (kept when that version of the right kind is installed): where `nvidia-smi` answers,
   the CUDA build of the newest CUDA the driver supports, from PyTorch's wheel index for it; else the
   CPU build: from a local wheel folder of pip's (find-links) when one has it, else from PyTorch's CPU
   wheel index (not PyPI's default Linux wheel, which is the multi-GB CUDA build);
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
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".mattebox-deps"
TORCH = "2.13.0"
# The CUDA builds PyTorch 2.13.0 publishes, each on its own index (https://download.pytorch.org/whl/cu126,
# ...): CUDA 12.6 and 13.0 stable, 13.2 experimental (PyTorch's RELEASE.md compatibility matrix for 2.13,
# pytorch/pytorch#187075). Update this with TORCH.
TORCH_CUDA = ((12, 6), (13, 0), (13, 2))
# Assumed: the CPU index's Linux and Windows wheels carry the +cpu label (torch-2.13.0+cpu-...), its
# macOS ones none (as PyPI's, which are CPU and Metal builds).
WHEELS = "https://download.pytorch.org/whl"
PYPI = "https://pypi.org/simple"
PROTO = "server/api/mattebox.proto"


def say(msg: str) -> None:
    print(f"install: {msg}", flush=True)


def run(*cmd: str) -> None:
    result = subprocess.run(cmd, cwd=ROOT)
    if result.returncode != 0:
        sys.exit(f"install: failed ({result.returncode}): {' '.join(cmd)}")


def venv_python() -> str:
    return str(VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python"))


def output(*cmd: str) -> str:
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else ""


def driver_cuda(smi: str) -> tuple[int, int] | None:
    """The newest CUDA the driver supports, from `nvidia-smi`'s header ("... CUDA Version: 13.0 |");
    None when there is no such line (no nvidia-smi, no GPU, a driver that does not answer)."""
    found = re.search(r"CUDA Version\s*:\s*(\d+)\.(\d+)", smi)
    return (int(found[1]), int(found[2])) if found else None


def cuda_build(driver: tuple[int, int]) -> tuple[int, int] | None:
    """The CUDA build of TORCH for a driver that supports CUDA `driver`: the newest build not newer
    than the driver, else the newest of the driver's major version (CUDA minor-version compatibility:
    a 12.x build runs on any 12.x driver); None when the driver is older than every build."""
    older = [b for b in TORCH_CUDA if b <= driver]
    same_major = [b for b in TORCH_CUDA if b[0] == driver[0]]
    return max(older or same_major, default=None)


@dataclass(frozen=True)
class TorchPlan:
    """How to install TORCH: cuda "13.0" (the build's CUDA) or "" (the CPU build); pip_args: what
    follows `pip install`; why: the line install.py says."""

    cuda: str
    pip_args: list
    why: str


def torch_plan(smi: str, local: str = "", system: str = "Linux") -> TorchPlan:
    """smi: `nvidia-smi`'s output ("" where it is missing or fails). local: the version of the torch
    wheel pip finds in its local wheel folders alone ("2.13.0+cpu"; "" for none; see local_torch).
    system: platform.system(). The version is pinned with its build label (+cu130, +cpu), so that no
    other build of the same version (a local CPU wheel, PyPI's CUDA one) can be taken instead."""
    driver = driver_cuda(smi)
    build = cuda_build(driver) if driver else None
    if build:
        tag = f"cu{build[0]}{build[1]}"
        return TorchPlan(f"{build[0]}.{build[1]}", [f"torch=={TORCH}+{tag}", "--index-url", f"{WHEELS}/{tag}",
                                                    "--extra-index-url", PYPI],
                         f"PyTorch {TORCH} for CUDA {build[0]}.{build[1]} (the NVIDIA driver supports CUDA "
                         f"{driver[0]}.{driver[1]})")
    why = (f"the NVIDIA driver supports CUDA {driver[0]}.{driver[1]}, older than every CUDA build of PyTorch "
           f"{TORCH} ({', '.join(f'{a}.{b}' for a, b in TORCH_CUDA)}): update the driver for the GPU build"
           if driver else "no NVIDIA GPU answers nvidia-smi")
    if local.split("+")[0] == TORCH and "+cu" not in local:
        return TorchPlan("", [f"torch=={local}"], f"PyTorch {local} for the CPU from the local wheel ({why})")
    if system == "Darwin":  # PyPI's macOS wheels are the CPU (and Metal) build
        return TorchPlan("", [f"torch=={TORCH}"], f"PyTorch {TORCH} for the CPU and Metal from PyPI ({why})")
    return TorchPlan("", [f"torch=={TORCH}+cpu", "--index-url", f"{WHEELS}/cpu", "--extra-index-url", PYPI],
                     f"PyTorch {TORCH} for the CPU from PyTorch's CPU wheel index ({why})")


def local_version(report: str) -> str:
    """The torch version in a `pip install --dry-run --report -` JSON report ("" when it has none)."""
    try:
        return next((i["metadata"]["version"] for i in json.loads(report)["install"]
                     if i["metadata"]["name"].lower() == "torch"), "")
    except (ValueError, KeyError, TypeError):
        return ""


def local_torch(python: str) -> str:
    """The torch TORCH wheel pip would take from its local wheel folders alone (find-links in pip's
    settings or $PIP_FIND_LINKS; no index asked, nothing installed): its version, or ""."""
    return local_version(output(python, "-m", "pip", "install", "--dry-run", "--no-index", "--no-deps",
                                "--ignore-installed", "--quiet", "--report", "-", f"torch=={TORCH}"))


def nvidia_smi() -> str:
    return output("nvidia-smi") if shutil.which("nvidia-smi") else ""


def installed_torch() -> str:
    """The venv's torch as "2.13.0+cpu None" / "2.13.0+cu130 13.0" ("" when there is none)."""
    return output(venv_python(), "-c", "import torch; print(torch.__version__, torch.version.cuda)")


def keeps(installed: str, plan: TorchPlan) -> bool:
    """Whether the installed torch (installed_torch()) is TORCH of the plan's kind (CUDA or CPU)."""
    version, _, built_for = installed.partition(" ")
    return version.split("+")[0] == TORCH and (built_for not in ("None", "")) == bool(plan.cuda)


def make_venv() -> None:
    if sys.version_info < (3, 11):
        sys.exit(f"install: the server needs Python 3.11 or newer; this is {sys.version.split()[0]}. "
                 "Run install.py with a newer python3.")
    if not Path(venv_python()).exists():
        say(f"creating {VENV}")
        run(sys.executable, "-m", "venv", str(VENV))


def install_torch() -> None:
    smi = nvidia_smi()
    if keeps(installed_torch(), torch_plan(smi)):
        return
    plan = torch_plan(smi, local_torch(venv_python()), platform.system())
    say(f"installing {plan.why}")
    run(venv_python(), "-m", "pip", "install", "--quiet", *plan.pip_args)


def dry_run() -> None:
    """What install_torch would do, said; nothing changed."""
    python = venv_python() if Path(venv_python()).exists() else sys.executable
    plan = torch_plan(nvidia_smi(), local_torch(python), platform.system())
    have = installed_torch() if Path(venv_python()).exists() else ""
    say(f"would install {plan.why}:")
    say(f"  {Path(venv_python()).relative_to(ROOT)} -m pip install {' '.join(plan.pip_args)}")
    if keeps(have, plan):
        say(f"  not needed: {have.split()[0]} is installed in {VENV.name} (kept)")


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
    what.add_argument("--dry-run", action="store_true",
                      help="say which PyTorch build would be installed and the pip command; change nothing")
    ap.add_argument("pytest_args", nargs="*", help="extra pytest arguments for --test (after --)")
    args = ap.parse_args()
    if args.dry_run:
        dry_run()
        return 0
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
