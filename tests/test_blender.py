"""The Blender extension in real Blender: 4.2 LTS, 4.5 LTS and 5.0 (bpy 4.2.23, 4.5.15 and 5.0.1, each in
its own .venv-blender-<release>, see blender_env.py). Every test that runs Blender runs once per release
(ids [blender-4.2], [blender-4.5], [blender-5.0]); the zip's own tests run once.

One bpy process per release (tests/blender/session.py) installs the zip built by `mattebox plugin
blender --zip` into Blender user folders under tmp_path, sets the preferences, loads a generated EXR
shot and mattes it against the live test server; the tests here check what it reported, the commands
it ran and the files it wrote, against the models run directly in this process.

The shot is scene-linear Rec.709 (what Blender takes a float EXR to be); the references are the models
run on its pixels as linear Rec.709.
"""
from __future__ import annotations

import ast
import json
import sys
import os
import signal
import socket
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pytest

import blender_env
from blender_env import MATTEBOX, RELEASES, bpy_python, release_of, run_in_blender  # noqa: F401 - a fixture
from conftest import W, H, write_pixels
from host_files import acescg_exr, rgba_roto_exr, rgba_trimap_png
from models import colour, images
from models.colour import LINEAR_REC709
from plugin.cli import main as cli, plugin_blender
from server.app import ServerConfig, start
from training.synthetic import make_shot, trimap_from_alpha

FRAMES = [1001, 1002, 1003]
LONG = 300  # frames in the run the step test cancels


def _free_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture(scope="module")
def built_zip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("zip") / "mattebox.zip"
    assert cli.main(["plugin", "blender", "--zip", str(path)]) == 0
    return path


OVER = (0.2, 0.4, 0.8)  # the flat colour the session puts the Mattebox output over (Alpha Over)
OUTPUTS = ("difference", "closed_form", "movie", "clip_sequence", "refused", "partial", "cancel", "foreground",
           "misaligned", "channel_red", "channel_auto", "aces", "mixed", "notice")


def _linear(srgb: np.ndarray) -> np.ndarray:
    return colour.convert(np.ascontiguousarray(srgb, np.float32), "sRGB", LINEAR_REC709)


@pytest.fixture(scope="module")
def blender_shot(tmp_path_factory):
    """A 3-frame shot on disk as a user has it: scene-linear Rec.709 float EXRs, a clean plate, a trimap;
    the same shot and plate from an ACES pipeline (ACEScg EXRs), a flat plate nothing can be aligned
    with, and trimaps as hosts write them: in the red of an RGBA EXR whose alpha is something else, and
    in the alpha of an RGBA PNG."""
    folder = tmp_path_factory.mktemp("shot")
    shot = make_shot(width=W, height=H, frames=len(FRAMES), first=FRAMES[0], seed=5)
    paths = {}
    for i, f in enumerate(FRAMES):
        paths[f] = folder / f"shot.{f}.exr"
        write_pixels(paths[f], _linear(shot.image[i]))
        acescg_exr(folder / f"shot_aces.{f}.exr", _linear(shot.image[i]))
    write_pixels(folder / "plate.exr", _linear(shot.plate))
    acescg_exr(folder / "plate_aces.exr", _linear(shot.plate))
    write_pixels(folder / "flat.exr", np.full((H, W, 3), 0.18, np.float32))
    trimap = trimap_from_alpha(shot.alpha[0], band=3)
    np.save(folder / "trimap.npy", trimap / np.float32(255))
    rgba_roto_exr(folder / "roto_red.exr", matte=np.zeros((H, W), np.float32), red=trimap / np.float32(255))
    rgba_trimap_png(folder / "trimap.png", trimap)
    return {"frames": paths, "plate": folder / "plate.exr", "trimap": trimap, "folder": folder}


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory):
    """A server on this machine that may read and write only a folder the shot is not in."""
    running = start(ServerConfig(port=0, grace_s=2.0, allow_roots=[str(tmp_path_factory.mktemp("elsewhere"))]))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def session(bpy_python, built_zip, blender_shot, server, strict_server, tmp_path_factory):  # noqa: F811
    """Run tests/blender/session.py once; (what it saw, its parameters, its folder)."""
    tmp = tmp_path_factory.mktemp("blender")
    folder = blender_shot["folder"]
    params = {"zip": str(built_zip), "server": server.address, "client": MATTEBOX, "dead_server": _free_address(),
              "strict_server": strict_server.address,
              "source_first": str(blender_shot["frames"][FRAMES[0]]), "plate": str(blender_shot["plate"]),
              "aces_first": str(folder / f"shot_aces.{FRAMES[0]}.exr"), "plate_aces": str(folder / "plate_aces.exr"),
              "flat_plate": str(folder / "flat.exr"), "roto_red": str(folder / "roto_red.exr"),
              "trimap_png": str(folder / "trimap.png"),
              "trimap_npy": str(folder / "trimap.npy"), "frames": FRAMES, "long": LONG, "over_colour": OVER,
              "render": str(tmp / "render.exr"), "render_clip": str(tmp / "render_clip.exr"),
              "render_over": str(tmp / "render_over.exr"), "render_foreground": str(tmp / "render_foreground.exr"),
              "blend": str(tmp / "project" / "shot.blend"), "movie": str(tmp / "movie.mkv"),
              **{f"out_{k}": str(tmp / f"out_{k}") for k in OUTPUTS}}
    (tmp / "params.json").write_text(json.dumps(params))
    settings = {"client": MATTEBOX, "server": server.address, "start_server": False}
    seen = run_in_blender(bpy_python, "session.py", tmp, settings, str(tmp / "params.json"))
    (tmp / "seen.json").write_text(json.dumps(seen, indent=1))  # to read when a test fails
    return seen, params, tmp


def _blender5(seen: dict) -> bool:
    """The session ran in Blender 5 (else 4.2 or 4.5: the compositor's older API)."""
    return seen["blender"] >= [5, 0, 0]


def _alpha(path) -> np.ndarray:
    return images.read(path).pixels[..., 0]


def _source(path) -> np.ndarray:
    return images.read(path, 3).pixels


def _frames(folder) -> list[str]:
    """The EXRs in an output folder (the run record, .NAME.mattebox.json, left out)."""
    return sorted(p.name for p in Path(folder).iterdir() if not p.name.startswith("."))


def _option(command: list[str], flag: str) -> str | None:
    """The value after `flag` in a command line (None: not there)."""
    return command[command.index(flag) + 1] if flag in command else None


# -- the zip ------------------------------------------------------------------------------------------


def test_zip_holds_extension_and_host_package(built_zip):
    names = set(zipfile.ZipFile(built_zip).namelist())
    assert {"blender_manifest.toml", "__init__.py", "operators.py", "matting.py", "host/__init__.py",
            "host/client.py", "host/config.py", "sequence.py"} <= names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)


def test_zip_carries_the_projects_one_frame_pattern_module(built_zip):
    """sequence.py in the zip is models/sequence.py, and the extension has no frame-pattern code of its own."""
    z = zipfile.ZipFile(built_zip)
    assert z.read("sequence.py") == (plugin_blender.ROOT / "models" / "sequence.py").read_bytes()
    sources = z.read("sources.py").decode()
    assert "from . import compositor, sequence" in sources and "def frames_on_disk" not in sources


def test_every_colour_space_the_extension_names_is_one_the_server_accepts(built_zip):
    tree = ast.parse(zipfile.ZipFile(built_zip).read("sources.py"))
    spaces = next(ast.literal_eval(n.value) for n in tree.body
                  if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "SPACES")
    assert spaces["ACEScg"] == "ACEScg" and spaces["Linear Rec.709"] == LINEAR_REC709
    for blender_name, server_name in spaces.items():
        assert colour.check_space(server_name) == server_name, blender_name


def test_manifest_parses_with_permissions(built_zip):
    manifest = tomllib.loads(zipfile.ZipFile(built_zip).read("blender_manifest.toml").decode())
    assert manifest["id"] == "mattebox" and manifest["type"] == "add-on"
    assert manifest["blender_version_min"] == "4.2.0"
    assert manifest["license"] == ["SPDX:GPL-3.0-or-later"]
    assert set(manifest["permissions"]) == {"files", "network"}
    assert all(reason and not reason.endswith(".") for reason in manifest["permissions"].values())


def test_zip_imports_nothing_blender_lacks(built_zip):
    """No torch, grpc, protobuf or numpy inside Blender: only the standard library, bpy and the package."""
    z = zipfile.ZipFile(built_zip)
    banned = {"torch", "grpc", "google", "numpy", "OpenImageIO", "models", "server", "plugin", "training"}
    for name in (n for n in z.namelist() if n.endswith(".py")):
        tree = ast.parse(z.read(name), name)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                roots = {node.module.split(".")[0]}
            else:
                continue
            assert not roots & banned, f"{name}:{node.lineno} imports {roots & banned}"


def test_install_without_blender_says_where_the_zip_is(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no blender on PATH, and the usual places not looked at:
    monkeypatch.setattr(plugin_blender, "_USUAL_PLACES", ())  # the test never installs into a real Blender
    assert cli.main(["plugin", "blender", "--install"]) == 0
    out = capsys.readouterr().out
    zip_path = Path(out.split("The extension is at\n")[1].split("\n")[0].strip())
    assert zip_path.name == "mattebox-blender-0.1.0.zip" and zip_path.parent.name == "dist"
    assert zipfile.ZipFile(zip_path).testzip() is None
    assert "install-file -r user_default" in out and "Install from Disk" in out


def test_install_with_a_blender_that_is_not_there_says_so(tmp_path):
    with pytest.raises(SystemExit, match="is not an executable"):
        cli.main(["plugin", "blender", "--install", "--blender", str(tmp_path / "blender")])


# -- the environments -----------------------------------------------------------------------------------


def test_each_release_has_its_own_environment_at_the_root():
    assert RELEASES == {"4.2": "4.2.23", "4.5": "4.5.15", "5.0": "5.0.1"}
    names = [blender_env.venv(r).name for r in RELEASES]
    assert names == [".venv-blender-4.2", ".venv-blender-4.5", ".venv-blender-5.0"]
    assert all(blender_env.venv(r).parent == plugin_blender.ROOT for r in RELEASES)
    assert release_of(blender_env.python_of("4.5")) == "4.5"


def test_without_python311_the_release_is_skipped_saying_why(monkeypatch, tmp_path):
    """No Python 3.11 here (running on another Python, and none on PATH, or only a pyenv shim of a
    version that is not installed): a skip naming the release and what to install, nothing built."""
    monkeypatch.setattr(blender_env.sys, "version_info", (3, 12, 0))
    monkeypatch.setenv("PATH", str(tmp_path))
    assert blender_env.python311() is None
    shim = tmp_path / "python3.11"
    shim.write_text("#!/bin/sh\necho 'pyenv: python3.11: command not found' >&2\nexit 127\n")
    shim.chmod(0o755)
    assert blender_env.python311() is None
    monkeypatch.setattr(blender_env, "ROOT", tmp_path)
    monkeypatch.setitem(RELEASES, "9.9", "9.9.0")
    with pytest.raises(pytest.skip.Exception, match=r"Blender 9\.9 tests need Python 3\.11 .*install it"):
        blender_env.build("9.9")
    assert not blender_env.venv("9.9").exists()


def test_a_python311_on_path_is_used_when_the_tests_run_on_another(monkeypatch, tmp_path):
    monkeypatch.setattr(blender_env.sys, "version_info", (3, 12, 0))
    monkeypatch.setenv("PATH", str(tmp_path))
    (tmp_path / "python3.11").symlink_to(sys.executable)  # this interpreter is a 3.11
    assert blender_env.python311() == str(tmp_path / "python3.11")


# -- in Blender ---------------------------------------------------------------------------------------


def test_session_ran_to_the_end(session):
    crashed = session[0]["crashed"]
    assert not crashed, "\n".join(f"{phase}:\n{trace}" for phase, trace in crashed.items())


def test_session_ran_in_the_release_of_its_environment(session, bpy_python):
    release = release_of(bpy_python)
    assert session[0]["blender"] == [int(n) for n in RELEASES[release].split(".")]


def test_installs_into_the_given_user_folders_and_reads_the_settings_file(session):
    seen, params, tmp = session
    install = seen["install"]
    assert install["result"] == ["FINISHED"] and install["enabled"] and install["operators"]
    assert install["panels"] == [True, True]
    assert Path(install["file"]) == tmp / "blender-user" / "extensions" / "user_default" / "mattebox" / "__init__.py"
    assert install["prefs_from_file"] == [params["server"], MATTEBOX, False]  # the default would be True


def test_refresh_fills_the_panel_model_list(session):
    seen, params, _ = session
    assert seen["model_before_refresh"] == "NONE"
    model, chosen, status = seen["panel_model"]
    assert model == chosen == "difference"
    assert status.startswith(f"online at {params['server']}")


def test_sequence_with_plate_matches_the_model_run_directly(session, blender_shot, direct):
    seen, params, _ = session
    assert seen["difference"] == {"result": ["FINISHED"]}
    out = Path(params["out_difference"])
    assert _frames(out) == [f"shot_alpha.{f}.exr" for f in FRAMES]
    assert seen["spaces"]["shot"] == seen["spaces"]["plate"] == "Linear Rec.709"
    command = seen["commands"]["out_difference"]
    assert _option(command, "--colour-space") == LINEAR_REC709 and "--skip-existing" in command
    assert "--align-plate" not in command and "--foreground" not in command and "--matte-channel" not in command
    plate = _source(blender_shot["plate"])
    for f in FRAMES:
        want = direct("difference", _source(blender_shot["frames"][f]), background=plate, colour_space=LINEAR_REC709)
        np.testing.assert_array_equal(_alpha(out / f"shot_alpha.{f}.exr"), want)
    assert seen["alpha_image"] == {"source": "SEQUENCE", "filepath": str(out / f"shot_alpha.{FRAMES[0]}.exr")}


def test_compositor_output_is_the_source_premultiplied_by_the_alpha(session, blender_shot):
    seen, params, _ = session
    w = seen["wiring"]
    assert w["use_compositing"] and w["outputs"] == ["Image"]
    assert {"Mattebox Source:CompositorNodeImage", "Mattebox Alpha:CompositorNodeImage",
            "Mattebox Set Alpha:CompositorNodeSetAlpha"} <= set(w["nodes"])
    # Blender 5: the scene's compositing node group, out through Group Output; 4.x: scene.node_tree, Composite
    output, kind = w["output"].split(":")
    assert kind == ("NodeGroupOutput" if _blender5(seen) else "CompositorNodeComposite")
    assert w["output"] in w["nodes"]
    assert not any(n.endswith(":CompositorNodeRLayers") for n in w["nodes"])  # 4.x's default: a 3D render a frame
    assert w["links"] == sorted(["Mattebox Source.Image->Mattebox Set Alpha.Image",
                                 "Mattebox Alpha.Alpha->Mattebox Set Alpha.Alpha",
                                 f"Mattebox Set Alpha.Image->{output}.Image"])
    assert w["set_alpha_type"] == "Apply Mask"
    assert w["images"] == {"Mattebox Source": "shot", "Mattebox Alpha": "shot alpha"}
    # the compositor's picture at the middle frame: that frame's colour times that frame's alpha, with it
    # as alpha (premultiplied, as Blender's compositor works): nothing at all where the alpha is 0
    f = FRAMES[1]
    rendered = images.read(params["render"]).pixels.astype(np.float32)
    alpha = _alpha(Path(params["out_difference"]) / f"shot_alpha.{f}.exr").astype(np.float32)
    source = _source(blender_shot["frames"][f])
    assert 0 < (alpha == 0).mean() < 1 and (alpha == 1).any()
    np.testing.assert_allclose(rendered[..., 3], alpha, atol=1e-3)
    np.testing.assert_allclose(rendered[..., :3], source * alpha[..., None], atol=1e-3)
    assert np.abs(rendered[alpha == 0]).max() == 0  # RGB and A


def test_alpha_over_a_colour_shows_the_colour_where_the_alpha_is_zero(session, blender_shot):
    """What the user does next with the output: an Alpha Over (premultiplied, the default) onto a new
    background. Where the matte is 0 only the background shows (the old wiring showed the whole plate)."""
    seen, params, _ = session
    assert seen["alpha_over"] == {"straight": False, "type": "Over"}
    f = FRAMES[1]
    rendered = images.read(params["render_over"]).pixels.astype(np.float32)
    alpha = _alpha(Path(params["out_difference"]) / f"shot_alpha.{f}.exr").astype(np.float32)[..., None]
    source = _source(blender_shot["frames"][f])
    np.testing.assert_allclose(rendered[alpha[..., 0] == 0][:, :3], np.broadcast_to(OVER, ((alpha == 0).sum(), 3)),
                               atol=1e-4)
    np.testing.assert_allclose(rendered[..., :3], source * alpha + np.float32(OVER) * (1 - alpha), atol=1e-3)


def test_trimap_painted_in_blender_keeps_its_grey(session, blender_shot, direct):
    seen, params, _ = session
    assert seen["closed_form"] == {"result": ["FINISHED"]}
    f = FRAMES[0]
    got = _alpha(Path(params["out_closed_form"]) / f"shot_alpha.{f}.exr")
    want = direct("closed_form", _source(blender_shot["frames"][f]), trimap=blender_shot["trimap"],
                  colour_space=LINEAR_REC709)
    np.testing.assert_array_equal(got, want)
    command = seen["commands"]["out_closed_form"]
    assert "--matte-channel" not in command  # Auto; the painted trimap is written without an alpha channel
    assert not os.path.exists(_option(command, "--trimap"))  # a temporary EXR, removed after the run


def test_movie_clip_is_matted_through_temporary_frames_one_per_step(session):
    seen, params, _ = session
    movie = seen["movie"]
    assert movie["result"] == ["FINISHED"] and movie["idle"] and not movie["scratch_left"]
    # the worker thread reaches the server while the steps wait, Blender renders a frame per step, then the job
    stages = [s for i, s in enumerate(movie["stages"]) if s != (movie["stages"][i - 1] if i else None)]
    assert stages[-3:] == ["export", "job waiting", "done"] and stages[0] in ("server waiting", "export")
    assert movie["export_steps"] == len(FRAMES)
    assert _option(seen["commands"]["out_movie"], "--colour-space") == LINEAR_REC709  # what Blender wrote
    out = Path(params["out_movie"])
    names = _frames(out)
    assert names == [f"movie_alpha.{i:04d}.exr" for i in range(1, len(FRAMES) + 1)]
    for i, f in enumerate(FRAMES):  # lossless movie, 8-bit: close to the sequence's alpha, frame by frame
        got = _alpha(out / names[i]).astype(np.float32)
        want = _alpha(Path(params["out_difference"]) / f"shot_alpha.{f}.exr").astype(np.float32)
        assert np.abs(got - want).mean() < 0.02, f"movie frame {i + 1} does not match sequence frame {f}"
    assert "Mattebox Source:CompositorNodeMovieClip" in seen["movie_wiring"]["nodes"]
    assert seen["movie_wiring"]["images"]["Mattebox Alpha"] == "movie alpha"


def test_clip_of_a_sequence_keeps_its_timing_in_the_compositor(session, blender_shot):
    """The clip starts at scene frame 5: frame 6 shows the shot's second file with that file's alpha."""
    seen, params, _ = session
    assert seen["clip_sequence"] == {"result": ["FINISHED"]}
    f = FRAMES[1]
    rendered = images.read(params["render_clip"]).pixels.astype(np.float32)
    alpha = _alpha(Path(params["out_clip_sequence"]) / f"shot_alpha.{f}.exr")  # the clip is named shot.1001.exr
    alpha = alpha.astype(np.float32)
    np.testing.assert_allclose(rendered[..., 3], alpha, atol=1e-3)
    np.testing.assert_allclose(rendered[..., :3], _source(blender_shot["frames"][f]) * alpha[..., None], atol=1e-3)


def test_errors_are_reported_with_what_to_do(session):
    seen, params, _ = session
    for case, words in (("no_plate", ["needs a clean plate", "under Clean plate"]),
                        ("unknown_model", ["no model 'no_such_model'", "difference", "pick one"]),
                        ("server_down", [f"no Mattebox server answers at {params['dead_server']}", "mattebox serve"])):
        got = seen[case]
        assert "error" in got, f"{case}: {got}"
        for w in words:
            assert w in got["error"], f"{case}: {got['error']!r} does not say {w!r}"
        assert got["last_error"] and got["last_error"] in got["error"]
    assert not seen["refused_wrote"], "a refused request must not start anything"


def test_a_failed_frame_is_reported_and_the_others_are_kept(session):
    seen, params, _ = session
    error = seen["frame_failure"]["error"]
    assert f"frame {FRAMES[-1] + 1}" in error and f"the {len(FRAMES)} finished frames are in" in error
    assert _frames(params["out_partial"]) == [f"shot_alpha.{f}.exr" for f in FRAMES]
    assert seen["partial_wiring"]["images"]["Mattebox Alpha"] == "shot alpha"


def test_local_server_started_when_allowed_and_stopped_when_blender_quits(session):
    local = session[0]["local_server"]
    assert local["status"].startswith(f"online at {session[1]['dead_server']} (started here)")
    assert local["models"] > 0
    try:
        os.kill(local["pid"], signal.SIGTERM)  # still there: the extension left it behind; stop it
    except ProcessLookupError:
        return
    pytest.fail("the local server outlived Blender")


def test_addon_off_and_on_keeps_preferences(session):
    seen, params, _ = session
    assert seen["disabled"] and seen["reenabled_prefs"] == [params["server"], MATTEBOX]


def test_panel_shows_status_model_needs_and_last_error(session):
    seen, params, _ = session
    shown = seen["panel"]
    assert shown[0].startswith(f"Server: online at {params['server']}")
    assert "Needs: image, clean plate" in shown
    matte = shown[shown.index("(mattebox.matte)"):]
    assert {"image=shot", "clip=", "plate=plate", "model=difference", "frame_start=0", "frame_end=-1",
            "align_plate=True", "matte_channel=AUTO", "foreground=True"} <= set(matte)
    assert "[align_plate]" in shown and "[foreground]" in shown
    assert "[matte_channel]" not in shown  # no trimap chosen, and the model takes none
    assert "a notice from the last run" in shown  # the last run's notices and alignment failures stay shown
    error = " ".join(matte[matte.index("foreground=True") + 1:])
    assert f"frame {FRAMES[-1] + 1}" in error and "finished frames are in" in error


def test_step_logic_reports_progress_and_finishes(session):
    steps = session[0]["steps"]
    assert steps["result"] == ["FINISHED"] and steps["frames"] == [1, 2, 3, 4, 5]
    beside_blend = session[2] / "project" / "mattebox" / "still"
    assert _frames(beside_blend) == [f"still_alpha.{f:04d}.exr" for f in range(1, 6)]
    percents = steps["percents"]
    assert percents == sorted(percents) and percents[-1] == 100 and len(set(percents)) > 1
    assert steps["idle"] and not steps["scratch_left"]
    assert any(level == "INFO" and "5 frames" in text for level, text in session[0]["step_reports"])


def test_cancel_stops_the_job_and_keeps_finished_frames(session):
    seen, params, _ = session
    cancel = seen["cancel"]
    assert cancel["result"] == ["CANCELLED"] and cancel["idle"]
    assert 0 < len(cancel["frames"]) < LONG
    on_disk = seen["before_continue"]
    assert len(cancel["frames"]) <= len(on_disk) < LONG
    assert any(level == "WARNING" and "cancelled" in text for level, text in seen["step_reports"])


# -- the options: foreground, plate alignment, trimap channel, colour spaces, notices ---------------------


def test_unmixed_foreground_is_written_and_composited_premultiplied(session, blender_shot):
    seen, params, _ = session
    assert seen["foreground"] == {"result": ["FINISHED"]}
    out = Path(params["out_foreground"])
    command = seen["commands"]["out_foreground"]
    assert _option(command, "--foreground") == str(out / "shot_foreground.####.exr") and "--align-plate" in command
    assert _frames(out) == sorted([f"shot_alpha.{f}.exr" for f in FRAMES] + [f"shot_foreground.{f}.exr" for f in FRAMES])
    w = seen["foreground_wiring"]
    assert "Mattebox Foreground:CompositorNodeImage" in w["nodes"]
    assert w["images"]["Mattebox Foreground"] == "shot foreground"
    assert "Mattebox Foreground.Image->Mattebox Set Alpha.Image" in w["links"]
    assert not any(link.startswith("Mattebox Source.") for link in w["links"])
    assert w["set_alpha_type"] == "Apply Mask"
    f = FRAMES[1]
    rendered = images.read(params["render_foreground"]).pixels.astype(np.float32)
    alpha = _alpha(out / f"shot_alpha.{f}.exr").astype(np.float32)
    foreground = images.read(out / f"shot_foreground.{f}.exr", 3).pixels.astype(np.float32)
    np.testing.assert_allclose(rendered[..., 3], alpha, atol=1e-3)
    np.testing.assert_allclose(rendered[..., :3], foreground * alpha[..., None], atol=2e-3)
    assert np.abs(rendered[alpha == 0]).max() == 0


def test_a_plate_that_cannot_be_aligned_is_reported(session):
    seen, _, _ = session
    run = seen["misaligned"]
    assert run["result"] == ["FINISHED"] and run["frames"] == [FRAMES[0]]
    assert "--align-plate" in seen["commands"]["out_misaligned"]
    warned = [text for level, text in seen["option_reports"] if level == "WARNING" and "could not be aligned" in text]
    assert len(warned) == 1 and f"frame {FRAMES[0]}" in warned[0]
    assert any("could not be aligned" in w for w in run["warnings"])  # kept for the panel


def test_trimap_channel_picked_in_blender_reaches_the_server(session, blender_shot, direct):
    seen, params, _ = session
    f = FRAMES[0]
    want = direct("closed_form", _source(blender_shot["frames"][f]), trimap=blender_shot["trimap"],
                  colour_space=LINEAR_REC709)
    for case, channel in (("channel_red", "R"), ("channel_auto", None)):
        assert seen[case] == {"result": ["FINISHED"]}, case
        assert _option(seen["commands"][f"out_{case}"], "--matte-channel") == channel
        got = _alpha(Path(params[f"out_{case}"]) / f"shot_alpha.{f}.exr")
        np.testing.assert_array_equal(got, want, err_msg=case)


def test_acescg_source_passes_its_colour_space(session, blender_shot, direct):
    seen, params, _ = session
    # Blender 5 reads the space from the EXR's chromaticities, 4.x takes any float EXR to be its linear
    # working space; the session then sets ACEScg, as a user does
    guess = "ACEScg" if _blender5(seen) else "Linear Rec.709"
    assert seen["aces_guessed"] == [guess, guess]
    assert seen["aces"] == {"result": ["FINISHED"]}
    command = seen["commands"]["out_aces"]
    assert _option(command, "--colour-space") == "ACEScg"
    folder = blender_shot["folder"]
    assert _option(command, "--input") == str(folder / "shot_aces.####.exr")  # read as it is, not converted
    plate = _source(folder / "plate_aces.exr")
    for f in FRAMES:
        got = _alpha(Path(params["out_aces"]) / f"shot_aces_alpha.{f}.exr")
        want = direct("difference", _source(folder / f"shot_aces.{f}.exr"), background=plate, colour_space="ACEScg")
        np.testing.assert_array_equal(got, want)
        rec709 = _alpha(Path(params["out_difference"]) / f"shot_alpha.{f}.exr").astype(np.float32)
        assert np.abs(got.astype(np.float32) - rec709).mean() < 0.01  # the same matte as the Rec.709 shot


def test_source_and_plate_in_different_spaces_are_converted_by_blender(session):
    seen, params, _ = session
    mixed = seen["mixed"]
    assert mixed["result"] == ["FINISHED"] and mixed["export_steps"] == 1 + len(FRAMES)  # the plate, then the shot
    command = seen["commands"]["out_mixed"]
    assert _option(command, "--colour-space") == LINEAR_REC709
    for f in FRAMES:
        got = _alpha(Path(params["out_mixed"]) / f"shot_aces_alpha.{f}.exr").astype(np.float32)
        rec709 = _alpha(Path(params["out_difference"]) / f"shot_alpha.{f}.exr").astype(np.float32)
        assert np.abs(got - rec709).mean() < 0.01


def test_the_clients_notice_is_reported(session):
    """The server may not read the shot's folder: the client sends the pixels itself, says so, and the
    frames still come back."""
    seen, params, _ = session
    run = seen["notice"]
    assert run["result"] == ["FINISHED"], seen["option_reports"]
    assert _frames(params["out_notice"]) == [f"shot_alpha.{FRAMES[0]}.exr"]
    notices = [text for level, text in seen["option_reports"] if level == "INFO" and "shared memory" in text]
    assert len(notices) == 1 and run["warnings"] and "shared memory" in run["warnings"][0]


# -- continuing a stopped run, threads -----------------------------------------------------------------


def test_a_stopped_run_continues_where_it_stopped(session):
    seen, params, _ = session
    reported = seen["cancel"]["frames"]
    more = seen["continue"]
    assert more["result"] == ["FINISHED"] and "--skip-existing" in seen["commands"]["out_cancel"]
    assert more["kept"] == reported  # what the stopped run reported stays as it was
    assert more["frames"] == list(range(1, len(reported) + 4))
    before, after = seen["before_continue"], seen["after_continue"]
    for f in reported:
        name = f"still_alpha.{f:04d}.exr"
        assert after[name] == before[name], f"frame {f} was matted again"
    assert len(after) == len(reported) + 3


def test_a_rerun_keeps_everything_and_other_settings_redo_everything(session):
    seen, _, _ = session
    frames = seen["continue"]["frames"]
    assert seen["again"]["result"] == ["FINISHED"] and seen["again"]["kept"] == frames
    assert seen["changed"]["result"] == ["FINISHED"] and seen["changed"]["kept"] == []
    assert seen["changed"]["frames"] == frames


def test_refresh_runs_on_a_worker_thread(session):
    seen, params, _ = session
    got = seen["threaded_refresh"]
    assert got["spins"] > 1, "the main thread waited for the model list"
    assert got["status"].startswith(f"online at {params['server']}") and not got["refreshing"]
    assert "already asking the server" in got["second"]
