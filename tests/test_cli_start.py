"""The `mattebox` command starts light for the calls host plugins make.

Nuke and Blender run the command in a subprocess on every Refresh, Matte and Fine-tune; an artist must
never wait for torch (seconds) or OpenImageIO to load for those. Each call here runs in its own process
under `-X importtime` against the real test server, and what the process imported is checked: never
torch, OpenImageIO or cv2. Not a timed test (`mattebox bench cli` prints the times).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pytest

from plugin.cli import bench_cli
from plugin.cli.main import COMMANDS, chosen, main

HEAVY = ("torch", "OpenImageIO", "cv2")


def imports(*args: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run `mattebox ARGS` in a new process under -X importtime: the result, and every module it imported."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPROFILEIMPORTTIME"}
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "plugin.cli.main", *args], capture_output=True,
                       text=True, timeout=120, env=env)
    modules = {line.rsplit("|", 1)[1].strip() for line in r.stderr.splitlines()
               if line.startswith("import time:") and line.count("|") == 2}
    r.stderr = "\n".join(ln for ln in r.stderr.splitlines() if not ln.startswith("import time:"))
    return r, modules


def heavy(modules: set[str]) -> list[str]:
    return sorted({m.split(".")[0] for m in modules} & set(HEAVY))


def test_models_from_a_server_imports_no_torch_opencv_or_openimageio(server):
    r, modules = imports("models", "--server", server.address, "--json")
    assert r.returncode == 0, r.stderr
    assert "null" in [m["name"] for m in json.loads(r.stdout)]
    assert heavy(modules) == [], f"`mattebox models --server` imported {heavy(modules)}"
    assert "plugin.cli.matte" not in modules and "plugin.cli.serve" not in modules  # only the chosen command


def test_matte_in_path_mode_imports_no_torch_opencv_or_openimageio(server, tmp_path):
    src, out = tmp_path / "src.0001.png", tmp_path / "alpha" / "a.0001.exr"
    bench_cli.write_png(str(src))
    r, modules = imports("matte", "--model", "null", "--input", str(src), "--output", str(out), "--frames", "1-1",
                         "--transport", "path", "--server", server.address, "--progress", "json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert out.is_file()  # the server wrote the frame: the job really ran
    events = [json.loads(line)["event"] for line in r.stdout.splitlines()]
    assert events[0] == "start" and events[-1] == "done"
    assert heavy(modules) == [], f"`mattebox matte --server` (path mode) imported {heavy(modules)}"


def test_remote_finetune_command_imports_no_torch(tmp_path):
    # refused before any call (no --server): what is left is the command's start-up and imports
    r, modules = imports("finetune", "--remote", "--model", "bgm", "--name", "x", "--input", str(tmp_path / "s.####.png"),
                         "--mattes", str(tmp_path / "m.####.png"), "--train-frames", "1")
    assert r.returncode == 2 and "--remote needs --server" in r.stderr
    assert heavy(modules) == [], f"`mattebox finetune --remote` imported {heavy(modules)}"


def test_top_level_help_lists_every_command_and_imports_none_of_them():
    r, modules = imports("--help")
    assert r.returncode == 0, r.stderr
    for name, (_, text) in COMMANDS.items():
        assert name in r.stdout and " ".join(text.split()[:3]) in " ".join(r.stdout.split())
    assert not [m for m in modules if m.startswith("plugin.cli.") and m != "plugin.cli.main"]
    assert heavy(modules) == [] and "grpc" not in modules


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_has_its_own_help(name, capsys):
    with pytest.raises(SystemExit) as done:
        main([name, "--help"])
    assert done.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert out.startswith(f"usage: mattebox {name}") and " ".join(COMMANDS[name][1].split()) in out


def test_the_command_word_is_found_after_top_level_options():
    assert chosen(["--log-level", "DEBUG", "models", "--json"]) == "models"
    assert chosen(["--log", "INFO", "matte"]) == "matte"  # argparse takes the abbreviation
    assert chosen(["--log-level=INFO", "serve"]) == "serve"
    assert chosen(["--help"]) is None and chosen(["nope"]) is None
    with pytest.raises(SystemExit):
        main(["nope"])  # argparse's own "invalid choice" message


def test_bench_cli_times_every_host_call(server, capsys):
    assert bench_cli.run(argparse.Namespace(json=True, repeat=1, server=server.address)) == 0
    report = json.loads(capsys.readouterr().out)
    calls = {row["call"].split(" (")[0]: row for row in report["calls"]}
    assert set(calls) == {"models --server --json", "matte --server", "finetune --remote", "farm template matte"}
    for row in report["calls"]:
        assert row["ok"] and 0 < row["min_s"] <= row["median_s"] <= row["max_s"], row
        assert set(row["heavy_imports"]) <= set(bench_cli.HEAVY)  # the tests above say which must be empty
