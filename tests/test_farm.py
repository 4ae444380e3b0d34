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
from training.farm.templates import MATTE, MattingShot, matting_template, write_template
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


def write_shot(tmp_path) -> tuple[str, str]:
    """A 4-frame 96x64 scene-linear EXR shot and its clean plate: (source pattern, plate)."""
    shot = make_shot(96, 64, 4, first=1, seed=3)
    src, plate = str(tmp_path / "src.####.exr"), str(tmp_path / "plate.exr")
    images.write_rgb(plate, colour.convert(shot.plate, colour.SRGB, colour.SCENE_LINEAR))
    for i in range(4):
        images.write_rgb(sequence.frame_path(src, 1 + i), colour.convert(shot.image[i], colour.SRGB,
                                                                         colour.SCENE_LINEAR))
    return src, plate


def run_matting_job(template: str) -> str:
    """`openjd run` the template's Matte step over frames 1-4 in chunks of 2; its log (asserting success)."""
    r = openjd("run", template, "--step", "Matte", "-p", "FrameRange=1-4", "-p", "ChunkSize=2", timeout=120)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log
    return log


@needs_openjd
def test_matting_template_runs_a_chunked_shot_through_one_server_per_session(tmp_path):
    src, plate = write_shot(tmp_path)
    out = str(tmp_path / "out" / "a.####.exr")
    template = str(tmp_path / "matte.yaml")
    r = mattebox("farm", "template", "matte", "--out", template, "--input", src, "--background", plate,
                 "--output", out, "--model", "difference")
    assert r.returncode == 0, r.stderr
    log = run_matting_job(template)
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

    # the job re-queued (a worker died before its chunk's second frame): finished frames are kept, the rest matted
    os.remove(sequence.frame_path(out, 3))
    kept = {f: os.stat(sequence.frame_path(out, f)).st_mtime_ns for f in (1, 2, 4)}
    log = run_matting_job(template)
    assert {f: os.stat(sequence.frame_path(out, f)).st_mtime_ns for f in (1, 2, 4)} == kept
    assert os.path.isfile(sequence.frame_path(out, 3))
    assert len(re.findall(r"frame [124] -> .*complete on disk, kept", log)) == 3, log


@needs_openjd
def test_matting_template_writes_the_unmixed_foreground_into_a_folder_it_makes(tmp_path):
    pytest.importorskip("models.foreground", reason="the unmixed foreground (issue 12, point 6) is not in yet")
    src, plate = write_shot(tmp_path)
    out, fgr = str(tmp_path / "out" / "a.####.exr"), str(tmp_path / "fgr" / "f.####.exr")
    template = str(tmp_path / "matte.json")
    r = mattebox("farm", "template", "matte", "--out", template, "--input", src, "--background", plate,
                 "--output", out, "--foreground", fgr, "--model", "difference")
    assert r.returncode == 0, r.stderr
    run_matting_job(template)
    assert sorted(os.listdir(tmp_path / "fgr")) == [f"f.000{f}.exr" for f in (1, 2, 3, 4)]
    for f in (1, 2, 3, 4):
        assert images.read(sequence.frame_path(fgr, f)).pixels.shape == (64, 96, 3)


def matte_script(tmp_path, align: str) -> subprocess.CompletedProcess:
    """The template's task script, run with a stand-in for mattebox that prints its arguments."""
    script, fake = tmp_path / "matte.sh", tmp_path / "mattebox"
    script.write_text(MATTE)
    fake.write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@"\n')
    for p in (script, fake):
        p.chmod(0o755)
    return subprocess.run([str(script), align, str(fake), "--model", "bgm", "--trimap", "", "--skip-existing"],
                          capture_output=True, text=True, timeout=30)


@pytest.mark.skipif(shutil.which("bash") is None, reason="the farm scripts need bash")
def test_align_plate_parameter_adds_the_flag_and_the_task_always_skips_existing_frames(tmp_path):
    assert matte_script(tmp_path, "true").stdout.splitlines() == [
        "matte", "--model", "bgm", "--trimap", "", "--skip-existing", "--align-plate"]
    assert "--align-plate" not in matte_script(tmp_path, "false").stdout.splitlines()
    r = matte_script(tmp_path, "yes")
    assert r.returncode == 1 and "openjd_fail: AlignPlate is 'yes'" in r.stdout
    template = matting_template(MattingShot(model="bgm"), tmp_path)
    step = template["steps"][0]
    args = step["script"]["actions"]["onRun"]["args"]
    assert "--skip-existing" in args and args[:2] == ["{{Param.AlignPlate}}", "{{Param.MatteboxCommand}}"]
    params = {p["name"]: p for p in template["parameterDefinitions"]}
    assert params["AlignPlate"]["allowedValues"] == ["true", "false"] and params["AlignPlate"]["default"] == "false"
    assert params["Foreground"]["default"] == "" and params["MatteChannel"]["default"] == ""
