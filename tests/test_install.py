"""install.py's choice of PyTorch build: nvidia-smi's outputs (none, no GPU, old and new drivers), a
local CPU wheel, and the pip arguments each gives; a real pip finding a local wheel; the dry run.
Nothing here installs anything or reaches the network."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("install", ROOT / "install.py")
install = importlib.util.module_from_spec(spec)
sys.modules["install"] = install
spec.loader.exec_module(install)

TORCH = install.TORCH


def smi(driver: str, cuda: str) -> str:
    """`nvidia-smi`'s header and one GPU, in the layout drivers print."""
    return (
        "Tue Dec  1 10:00:00 2026\n"
        "+-----------------------------------------------------------------------------------------+\n"
        f"| NVIDIA-SMI {driver}             Driver Version: {driver}     CUDA Version: {cuda}     |\n"
        "|-----------------------------------------+------------------------+----------------------+\n"
        "| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |\n"
        "|   0  NVIDIA H200                    On  |   00000000:19:00.0 Off |                    0 |\n"
        "+-----------------------------------------+------------------------+----------------------+\n")


NO_DRIVER = ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that "
             "the latest NVIDIA driver is installed and running.\n")


def cuda_args(tag: str) -> list[str]:
    return [f"torch=={TORCH}+{tag}", "--index-url", f"https://download.pytorch.org/whl/{tag}",
            "--extra-index-url", "https://pypi.org/simple"]


CPU_INDEX = [f"torch=={TORCH}+cpu", "--index-url", "https://download.pytorch.org/whl/cpu",
             "--extra-index-url", "https://pypi.org/simple"]


@pytest.mark.parametrize("output, local, system, cuda, args", [
    # no GPU: the local CPU wheel where pip has one, else PyTorch's CPU index (never PyPI's CUDA wheel)
    ("", f"{TORCH}+cpu", "Linux", "", [f"torch=={TORCH}+cpu"]),
    ("", "", "Linux", "", CPU_INDEX),
    ("", "", "Windows", "", CPU_INDEX),
    ("", "", "Darwin", "", [f"torch=={TORCH}"]),
    ("", f"{TORCH}+cu130", "Linux", "", CPU_INDEX),  # a local CUDA wheel is no CPU build
    ("", "2.12.0+cpu", "Linux", "", CPU_INDEX),       # nor a local wheel of another version
    ("No devices were found\n", "", "Linux", "", CPU_INDEX),
    (NO_DRIVER, f"{TORCH}+cpu", "Linux", "", [f"torch=={TORCH}+cpu"]),
    # a GPU: the newest CUDA build the driver supports, whatever local CPU wheel there is
    (smi("580.95.05", "13.0"), f"{TORCH}+cpu", "Linux", "13.0", cuda_args("cu130")),
    (smi("590.44.01", "13.1"), "", "Linux", "13.0", cuda_args("cu130")),
    (smi("595.71.05", "13.2"), "", "Windows", "13.2", cuda_args("cu132")),
    (smi("610.10", "14.0"), "", "Linux", "13.2", cuda_args("cu132")),
    (smi("570.172.08", "12.8"), "", "Linux", "12.6", cuda_args("cu126")),
    (smi("550.54.15", "12.4"), "", "Linux", "12.6", cuda_args("cu126")),  # CUDA minor-version compatibility
    # a driver older than every build: the CPU build, saying why
    (smi("470.256.02", "11.4"), f"{TORCH}+cpu", "Linux", "", [f"torch=={TORCH}+cpu"]),
    (smi("470.256.02", "11.4"), "", "Linux", "", CPU_INDEX),
])
def test_torch_plan(output, local, system, cuda, args):
    plan = install.torch_plan(output, local, system)
    assert (plan.cuda, plan.pip_args) == (cuda, args)


def test_an_old_driver_is_said():
    why = install.torch_plan(smi("470.256.02", "11.4")).why
    assert "CUDA 11.4" in why and "update the driver" in why


@pytest.mark.parametrize("installed, output, kept", [
    (f"{TORCH}+cpu None", "", True),
    (f"{TORCH}+cu130 13.0", smi("580.95.05", "13.0"), True),
    (f"{TORCH}+cu126 12.6", smi("580.95.05", "13.0"), True),  # a CUDA build of the version: no reinstall
    (f"{TORCH}+cpu None", smi("580.95.05", "13.0"), False),   # a GPU now: the CUDA build
    (f"{TORCH}+cu130 13.0", "", False),                       # no GPU any more: the CPU build
    ("2.12.0+cpu None", "", False),
    ("", "", False),                                          # no torch
])
def test_installed_torch_kept(installed, output, kept):
    assert install.keeps(installed, install.torch_plan(output)) is kept


def fake_wheel(folder: Path, version: str) -> Path:
    """A minimal valid wheel named torch (metadata only), for pip to find in a local folder."""
    path = folder / f"torch-{version}-py3-none-any.whl"
    info = f"torch-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: torch\nVersion: {version}\n")
        z.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr(f"{info}/RECORD", "")
    return path


@pytest.mark.parametrize("versions, found", [([f"{TORCH}+cpu", "2.12.0+cpu"], f"{TORCH}+cpu"), (["2.12.0+cpu"], ""),
                                             ([], "")])
def test_pip_finds_the_local_wheel(tmp_path, monkeypatch, versions, found):
    """The real pip, its settings replaced by a find-links folder of our own (no index asked)."""
    for v in versions:
        fake_wheel(tmp_path, v)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    assert install.local_torch(sys.executable) == found


@pytest.mark.parametrize("report, found", [
    ('{"install": [{"metadata": {"name": "torch", "version": "2.13.0+cpu"}}]}', "2.13.0+cpu"),
    ('{"install": []}', ""), ("", ""), ("not json", "")])
def test_local_version_from_the_report(report, found):
    assert install.local_version(report) == found


def test_dry_run_says_the_pip_command_and_changes_nothing():
    stamp = install.STAMP.stat().st_mtime_ns if install.STAMP.exists() else None
    r = subprocess.run([sys.executable, str(ROOT / "install.py"), "--dry-run"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "install: would install PyTorch" in r.stdout and f"-m pip install torch=={TORCH}" in r.stdout, r.stdout
    assert (install.STAMP.stat().st_mtime_ns if install.STAMP.exists() else None) == stamp
