"""Farm job templates: `mattebox farm template` writes them, `openjd check` accepts them, and the matting
template runs end to end under `openjd run` (one session, two chunked tasks, one shared server)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig

import pytest

from models import colour, images, sequence
from plugin.cli.main import main
from plugin.cli.progress import Progress
from training.farm.templates import MattingShot, matting_template, write_template
from training.synthetic import make_shot

OPENJD = shutil.which("openjd", path=sysconfig.get_path("scripts")) or shutil.which("openjd")
needs_openjd = pytest.mark.skipif(OPENJD is None, reason="openjd-cli is not installed (pip install openjd-cli)")


def mattebox(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "plugin.cli.main", *args], capture_output=True, text=True,
                          timeout=60)


def openjd(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([OPENJD, *args], capture_output=True, text=True, timeout=timeout)


def exited(pid: int) -> bool:
    """The process is gone, or a zombie waiting to be reaped (it has exited either way)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@needs_openjd
def test_templates_written_by_the_command_pass_openjd_check(tmp_path):
    for kind, name in (("matte", "matte.json"), ("finetune", "finetune.yaml")):
        r = mattebox("farm", "template", kind, "--out", str(tmp_path / name))
        assert r.returncode == 0, r.stderr
        r = openjd("check", str(tmp_path / name))
        assert r.returncode == 0, r.stdout + r.stderr


def test_yaml_and_json_hold_the_same_template(tmp_path):
    yaml = pytest.importorskip("yaml")
    template = matting_template(MattingShot(model="difference"), tmp_path)
    write_template(template, tmp_path / "t.json")
    write_template(template, tmp_path / "t.yml")
    assert json.loads((tmp_path / "t.json").read_text()) == yaml.safe_load((tmp_path / "t.yml").read_text()) == template
    assert "  #!/usr/bin/env bash\n" in (tmp_path / "t.yml").read_text()  # scripts as literal blocks
    with pytest.raises(ValueError, match=".json, .yaml or .yml"):
        write_template(template, tmp_path / "t.txt")


def test_flags_become_parameter_defaults(tmp_path, capsys):
    out = tmp_path / "finetune.json"
    assert main(["farm", "template", "finetune", "--out", str(out), "--base-model", "bgm", "--steps", "50",
                 "--mattebox", "/opt/mattebox/bin/mattebox"]) == 0
    params = {p["name"]: p for p in json.loads(out.read_text())["parameterDefinitions"]}
    assert params["BaseModel"]["default"] == "bgm" and params["Steps"]["default"] == 50
    assert params["MatteboxCommand"]["default"] == "/opt/mattebox/bin/mattebox"
    assert "default" not in params["Input"] and params["Background"]["default"] == ""


def test_path_defaults_are_relative_to_the_template_folder(tmp_path, capsys):
    out = tmp_path / "matte.json"
    src = str(tmp_path / "plates" / "s.####.exr")
    assert main(["farm", "template", "matte", "--out", str(out), "--input", src]) == 0
    params = {p["name"]: p for p in json.loads(out.read_text())["parameterDefinitions"]}
    assert params["Input"]["default"] == os.path.join("plates", "s.####.exr")
    assert main(["farm", "template", "matte", "--out", str(tmp_path / "sub" / "matte.json"), "--input",
                 str(tmp_path / "s.####.exr")]) == 1
    assert "give Input at submission" in capsys.readouterr().err


def test_openjd_progress_lines(capsys):
    p = Progress("openjd")
    p.start("j", 2)
    p.frame(1, "a.0001.exr", 0.5)
    p.error(2, "src.0002.exr: no such file")
    assert capsys.readouterr().out.splitlines() == [
        "openjd_status: job j: 2 frame(s)",
        "openjd_status: [ 50.0%] frame 1 -> a.0001.exr (0.50 s)", "openjd_progress: 50.0",
        "openjd_fail: [100.0%] ERROR frame 2: src.0002.exr: no such file", "openjd_progress: 100.0"]


@needs_openjd
def test_matting_template_runs_a_chunked_shot_through_one_server_per_session(tmp_path):
    shot = make_shot(96, 64, 4, first=1, seed=3)
    src, plate, out = str(tmp_path / "src.####.exr"), str(tmp_path / "plate.exr"), str(tmp_path / "out" / "a.####.exr")
    images.write_rgb(plate, colour.convert(shot.plate, colour.SRGB, colour.SCENE_LINEAR))
    for i in range(4):
        images.write_rgb(sequence.frame_path(src, 1 + i), colour.convert(shot.image[i], colour.SRGB,
                                                                         colour.SCENE_LINEAR))
    template = str(tmp_path / "matte.yaml")
    r = mattebox("farm", "template", "matte", "--out", template, "--input", src, "--background", plate,
                 "--output", out, "--model", "difference")
    assert r.returncode == 0, r.stderr
    r = openjd("run", template, "--step", "Matte", "-p", "FrameRange=1-4", "-p", "ChunkSize=2", timeout=120)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log
    assert sorted(os.listdir(tmp_path / "out")) == [f"a.000{f}.exr" for f in (1, 2, 3, 4)]
    for f in (1, 2, 3, 4):
        alpha = images.read(sequence.frame_path(out, f))
        assert alpha.pixels.shape == (64, 96, 1) and 0 < alpha.pixels.mean() < 1
    assert re.findall(r"Frames\(CHUNK\[INT\]\) = (\S+)", log) == ["1-2", "3-4"]  # two tasks in one session
    assert re.findall(r"openjd_progress: ([\d.]+)", log) == ["50.0", "100.0"] * 2
    servers = re.findall(r"mattebox server: (\{.*\})", log)
    assert len(servers) == 1, log  # one server for the session's two tasks
    pid = json.loads(servers[0])["pid"]
    assert exited(pid), f"mattebox serve (pid {pid}) still running after the session"
