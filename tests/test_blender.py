"""The Blender extension in real Blender 5.0 (bpy 5.0.1 in .venv-blender, see blender_env.py).

One bpy process (tests/blender/session.py) installs the zip built by `mattebox plugin blender --zip`
into Blender user folders under tmp_path, sets the preferences, loads a generated EXR shot and mattes
it against the live test server; the tests here check what it reported and the files it wrote,
against the models run directly in this process.
"""
from __future__ import annotations

import ast
import json
import os
import signal
import socket
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pytest

from blender_env import MATTEBOX, bpy_python, run_in_blender  # noqa: F401 - bpy_python is a fixture
from conftest import W, H, encode_srgb, write_pixels
from models import images
from plugin.cli import main as cli, plugin_blender
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


@pytest.fixture(scope="module")
def blender_shot(tmp_path_factory):
    """A 3-frame shot on disk as a user has it: scene-linear float EXRs, a clean plate, a trimap."""
    folder = tmp_path_factory.mktemp("shot")
    shot = make_shot(width=W, height=H, frames=len(FRAMES), first=FRAMES[0], seed=5)
    paths = {}
    for i, f in enumerate(FRAMES):
        paths[f] = folder / f"shot.{f}.exr"
        write_pixels(paths[f], encode_srgb(shot.image[i], "float32")[0])
    write_pixels(folder / "plate.exr", encode_srgb(shot.plate, "float32")[0])
    trimap = trimap_from_alpha(shot.alpha[0], band=3)
    np.save(folder / "trimap.npy", trimap / np.float32(255))
    return {"frames": paths, "plate": folder / "plate.exr", "trimap": trimap}


@pytest.fixture(scope="module")
def session(bpy_python, built_zip, blender_shot, server, tmp_path_factory):  # noqa: F811
    """Run tests/blender/session.py once; (what it saw, its parameters)."""
    tmp = tmp_path_factory.mktemp("blender")
    params = {"zip": str(built_zip), "server": server.address, "client": MATTEBOX, "dead_server": _free_address(),
              "source_first": str(blender_shot["frames"][FRAMES[0]]), "plate": str(blender_shot["plate"]),
              "trimap_npy": str(blender_shot["plate"].with_name("trimap.npy")), "frames": FRAMES, "long": LONG,
              "render": str(tmp / "render.exr"), "render_clip": str(tmp / "render_clip.exr"),
              "blend": str(tmp / "project" / "shot.blend"), "movie": str(tmp / "movie.mkv"),
              **{f"out_{k}": str(tmp / f"out_{k}") for k in ("difference", "closed_form", "movie", "clip_sequence",
                                                             "refused", "partial", "cancel")}}
    (tmp / "params.json").write_text(json.dumps(params))
    settings = {"client": MATTEBOX, "server": server.address, "start_server": False}
    seen = run_in_blender(bpy_python, "session.py", tmp, settings, str(tmp / "params.json"))
    return seen, params, tmp


def _alpha(path) -> np.ndarray:
    return images.read(path).pixels[..., 0]


def _source(path) -> np.ndarray:
    return images.read(path, 3).pixels


# -- the zip ------------------------------------------------------------------------------------------


def test_zip_holds_extension_and_host_package(built_zip):
    names = set(zipfile.ZipFile(built_zip).namelist())
    assert {"blender_manifest.toml", "__init__.py", "operators.py", "matting.py", "host/__init__.py",
            "host/client.py", "host/config.py"} <= names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)


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


# -- in Blender ---------------------------------------------------------------------------------------


def test_session_ran_to_the_end(session):
    crashed = session[0]["crashed"]
    assert not crashed, "\n".join(f"{phase}:\n{trace}" for phase, trace in crashed.items())


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
    assert sorted(p.name for p in out.iterdir()) == [f"shot_alpha.{f}.exr" for f in FRAMES]
    plate = _source(blender_shot["plate"])
    for f in FRAMES:
        want = direct("difference", _source(blender_shot["frames"][f]), background=plate)
        np.testing.assert_array_equal(_alpha(out / f"shot_alpha.{f}.exr"), want)
    assert seen["alpha_image"] == {"source": "SEQUENCE", "filepath": str(out / f"shot_alpha.{FRAMES[0]}.exr")}


def test_compositor_wiring_puts_the_alpha_on_the_source(session, blender_shot):
    seen, params, _ = session
    w = seen["wiring"]
    assert w["use_compositing"] and w["outputs"] == ["Image"]
    assert {"Mattebox Source:CompositorNodeImage", "Mattebox Alpha:CompositorNodeImage",
            "Mattebox Set Alpha:CompositorNodeSetAlpha"} <= set(w["nodes"])
    assert any(n.endswith(":NodeGroupOutput") for n in w["nodes"])
    output = next(n.split(":")[0] for n in w["nodes"] if n.endswith(":NodeGroupOutput"))
    assert w["links"] == sorted(["Mattebox Source.Image->Mattebox Set Alpha.Image",
                                 "Mattebox Alpha.Alpha->Mattebox Set Alpha.Alpha",
                                 f"Mattebox Set Alpha.Image->{output}.Image"])
    assert w["set_alpha_type"] == "Replace Alpha"
    assert w["images"] == {"Mattebox Source": "shot", "Mattebox Alpha": "shot alpha"}
    # the compositor's picture at the middle frame: that frame's colour with that frame's alpha
    f = FRAMES[1]
    rendered = images.read(params["render"]).pixels.astype(np.float32)
    alpha = _alpha(Path(params["out_difference"]) / f"shot_alpha.{f}.exr").astype(np.float32)
    np.testing.assert_allclose(rendered[..., 3], alpha, atol=1e-3)
    np.testing.assert_allclose(rendered[..., :3], _source(blender_shot["frames"][f]), atol=1e-3)


def test_trimap_painted_in_blender_keeps_its_grey(session, blender_shot, direct):
    seen, params, _ = session
    assert seen["closed_form"] == {"result": ["FINISHED"]}
    f = FRAMES[0]
    got = _alpha(Path(params["out_closed_form"]) / f"shot_alpha.{f}.exr")
    want = direct("closed_form", _source(blender_shot["frames"][f]), trimap=blender_shot["trimap"])
    np.testing.assert_array_equal(got, want)


def test_movie_clip_is_matted_through_temporary_frames(session):
    seen, params, _ = session
    assert seen["movie"] == {"result": ["FINISHED"]}
    out = Path(params["out_movie"])
    names = sorted(p.name for p in out.iterdir())
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
    np.testing.assert_allclose(rendered[..., 3], alpha.astype(np.float32), atol=1e-3)
    np.testing.assert_allclose(rendered[..., :3], _source(blender_shot["frames"][f]), atol=1e-3)


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
    assert sorted(p.name for p in Path(params["out_partial"]).iterdir()) == [f"shot_alpha.{f}.exr" for f in FRAMES]
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
    assert {"image=shot", "clip=", "plate=plate", "model=difference", "frame_start=0", "frame_end=-1"} <= set(matte)
    error = " ".join(matte[matte.index("output_dir=") + 1:])
    assert f"frame {FRAMES[-1] + 1}" in error and "finished frames are in" in error


def test_step_logic_reports_progress_and_finishes(session):
    steps = session[0]["steps"]
    assert steps["result"] == ["FINISHED"] and steps["frames"] == [1, 2, 3, 4, 5]
    beside_blend = session[2] / "project" / "mattebox" / "still"
    assert sorted(p.name for p in beside_blend.iterdir()) == [f"still_alpha.{f:04d}.exr" for f in range(1, 6)]
    percents = steps["percents"]
    assert percents == sorted(percents) and percents[-1] == 100 and len(set(percents)) > 1
    assert steps["idle"] and not steps["scratch_left"]
    assert any(level == ["INFO"] and "5 frames" in text for level, text in session[0]["step_reports"])


def test_cancel_stops_the_job_and_keeps_finished_frames(session):
    seen, params, _ = session
    cancel = seen["cancel"]
    assert cancel["result"] == ["CANCELLED"] and cancel["idle"]
    assert 0 < len(cancel["frames"]) < LONG
    on_disk = sorted(Path(params["out_cancel"]).iterdir())
    assert len(cancel["frames"]) <= len(on_disk) < LONG
    assert any(level == ["WARNING"] and "cancelled" in text for level, text in seen["step_reports"])
