"""Shots as a studio has them, through the real `mattebox matte` command and real servers: folders
outside the home and temp folders, Nuke bbox EXRs, RGBA rotos and trimaps, ACES and log plates, a
hand-held clean plate, the unmixed foreground, and restarting a stopped job."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import host_files
import numpy as np
import pytest

from models import colour, images, sequence
from plugin.cli.connect import spawn_server
from training.synthetic import make_shot, trimap_from_alpha

W, H, FIRST, N = 96, 64, 1001, 3


def mattebox(*args: str, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "plugin.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, env=None if env is None else {**os.environ, **env})


def events(run: subprocess.CompletedProcess) -> list[dict]:
    return [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def shot():
    return make_shot(W, H, N, first=FIRST, seed=5)


def write_shot(folder, shot) -> dict[str, str]:
    """The shot as scene-linear EXRs, a still clean plate and 8-bit grey trimaps; the patterns."""
    folder.mkdir(parents=True, exist_ok=True)
    pat = {"input": str(folder / "src.####.exr"), "background": str(folder / "plate.exr"),
           "trimap": str(folder / "tri.####.png")}
    images.write_rgb(pat["background"], colour.convert(shot.plate, colour.SRGB, colour.SCENE_LINEAR))
    for i in range(len(shot.image)):
        images.write_rgb(sequence.frame_path(pat["input"], FIRST + i),
                         colour.convert(shot.image[i], colour.SRGB, colour.SCENE_LINEAR))
        images.write_rgb(sequence.frame_path(pat["trimap"], FIRST + i),
                         np.repeat(trimap_from_alpha(shot.alpha[i], band=2)[..., None], 3, 2))
    return pat


@pytest.fixture(scope="module")
def server_address():
    with spawn_server() as address:
        yield address


def read_alpha(path) -> np.ndarray:
    return images.read(path).pixels[..., 0].astype(np.float32)


# -- where the shot lives -------------------------------------------------------------------------------


def test_private_server_allows_the_jobs_own_folders(tmp_path, shot):
    """A shot outside the home and temp folders (the server's default roots) mattes with the private
    server a command starts for itself."""
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir(), tmp.mkdir()
    pat = write_shot(tmp_path / "mnt" / "projects" / "show", shot)
    out = str(tmp_path / "mnt" / "renders" / "alpha.####.exr")
    run = mattebox("matte", "--model", "difference", "--input", pat["input"], "--background", pat["background"],
                   "--output", out, "--progress", "json", env={"HOME": str(home), "TMPDIR": str(tmp)})
    assert run.returncode == 0, run.stderr + run.stdout
    assert not [e for e in events(run) if e["event"] == "notice"]  # the server read the files itself
    assert sequence.frames_on_disk(out) == list(range(FIRST, FIRST + N))


def test_a_server_that_refuses_the_folder_gets_the_pixels_by_shared_memory(tmp_path, shot, make_server):
    """A local server whose roots do not hold the shot: one notice that says what happens and how to
    let the server read there, then every frame written, the same alpha as path mode."""
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    srv = make_server(allow_roots=[str(allowed)])
    pat = write_shot(tmp_path / "show", shot)
    out = str(tmp_path / "show" / "alpha.####.exr")
    run = mattebox("matte", "--model", "difference", "--input", pat["input"], "--background", pat["background"],
                   "--output", out, "--server", srv.address, "--progress", "json")
    assert run.returncode == 0, run.stderr + run.stdout
    got = events(run)
    notices = [e["message"] for e in got if e["event"] == "notice"]
    assert len(notices) == 1 and "shared memory" in notices[0] and "--allow-root" in notices[0]
    assert [e["frame"] for e in got if e["event"] == "frame"] == list(range(FIRST, FIRST + N))

    inside = write_shot(allowed / "show", shot)
    ref = str(allowed / "show" / "alpha.####.exr")
    run = mattebox("matte", "--model", "difference", "--input", inside["input"], "--background",
                   inside["background"], "--output", ref, "--server", srv.address, "--progress", "json")
    assert run.returncode == 0 and not [e for e in events(run) if e["event"] == "notice"]
    for f in range(FIRST, FIRST + N):
        np.testing.assert_array_equal(read_alpha(sequence.frame_path(out, f)), read_alpha(sequence.frame_path(ref, f)))


def test_transport_path_only_reports_the_refusal_with_its_fix(tmp_path, shot, make_server):
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    srv = make_server(allow_roots=[str(allowed)])
    pat = write_shot(tmp_path / "show", shot)
    run = mattebox("matte", "--model", "difference", "--input", pat["input"], "--background", pat["background"],
                   "--output", str(tmp_path / "show" / "a.####.exr"), "--server", srv.address,
                   "--transport", "path", "--progress", "json")
    assert run.returncode == 1
    errors = [e["message"] for e in events(run) if e["event"] == "error"]
    assert len(errors) == 1 and "PERMISSION_DENIED" in errors[0]
    assert "mattebox serve --allow-root" in errors[0] and "allowed_roots" in errors[0]
    assert not sequence.frames_on_disk(str(tmp_path / "show" / "a.####.exr"))


# -- restarting a stopped job ------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["path", "shm"])
def test_skip_existing_keeps_complete_frames_and_redoes_the_rest(tmp_path, shot, server_address, transport):
    pat = write_shot(tmp_path / "show", shot)
    out = str(tmp_path / "out" / "alpha.####.exr")
    args = ["matte", "--model", "difference", "--input", pat["input"], "--background", pat["background"],
            "--output", out, "--server", server_address, "--progress", "json", "--transport", transport]
    assert mattebox(*args).returncode == 0
    kept = sequence.frame_path(out, FIRST)
    stamp = os.stat(kept).st_mtime_ns
    os.unlink(sequence.frame_path(out, FIRST + 1))                      # never written (job killed)
    with open(sequence.frame_path(out, FIRST + 2), "r+b") as f:         # written by something else, cut short
        f.truncate(100)
    run = mattebox(*args, "--skip-existing")
    assert run.returncode == 0, run.stderr + run.stdout
    frames = {e["frame"]: e for e in events(run) if e["event"] == "frame"}
    assert frames[FIRST].get("skipped") is True
    assert not frames[FIRST + 1].get("skipped") and not frames[FIRST + 2].get("skipped")
    assert os.stat(kept).st_mtime_ns == stamp
    done = [e for e in events(run) if e["event"] == "done"][0]
    assert done["done"] == N and done["skipped"] == 1
    assert read_alpha(sequence.frame_path(out, FIRST + 2)).shape == (H, W)


# -- files as Nuke and Blender write them ------------------------------------------------------------------

BOX = (12, 6, 60, 44)  # a Nuke bbox (x, y, width, height) inside the 96x64 format


def linear(srgb: np.ndarray) -> np.ndarray:
    return colour.convert(srgb, colour.SRGB, colour.SCENE_LINEAR)


def matte_cli(*args: str, server: str, transport: str = "auto") -> list[dict]:
    run = mattebox("matte", *args, "--server", server, "--progress", "json", "--transport", transport)
    assert run.returncode == 0, run.stderr + run.stdout
    return events(run)


@pytest.mark.parametrize("transport", ["path", "shm"])
def test_bbox_exr_against_a_full_frame_plate_keeps_its_windows(tmp_path, shot, server_address, transport):
    """A Nuke bbox EXR mattes against a full-frame clean plate; its alpha has the image's data and
    display windows and, inside, is the alpha of the full frame (away from the bbox edge, where the
    key's 3x3 clean-up sees the border)."""
    x, y, w, h = BOX
    host_files.bbox_exr(tmp_path / "src.exr", linear(shot.image[0]), BOX)
    images.write_rgb(tmp_path / "full.exr", linear(shot.image[0]))
    images.write_rgb(tmp_path / "plate.exr", linear(shot.plate))
    for name in ("src", "full"):
        matte_cli("--model", "difference", "--input", str(tmp_path / f"{name}.exr"), "--background",
                  str(tmp_path / "plate.exr"), "--output", str(tmp_path / f"{name}_alpha.exr"),
                  server=server_address, transport=transport)
    got = images.read(tmp_path / "src_alpha.exr")
    assert (got.window.x, got.window.y, got.window.width, got.window.height) == BOX
    assert (got.window.full_width, got.window.full_height) == (W, H)
    full = read_alpha(tmp_path / "full_alpha.exr")
    np.testing.assert_array_equal(got.pixels[3:-3, 3:-3, 0].astype(np.float32), full[y + 3:y + h - 3, x + 3:x + w - 3])


def test_bbox_roto_trimap_against_a_full_frame_image(tmp_path, shot, server_address):
    """A trimap roto'd in Nuke comes out as an RGBA EXR with a bbox around the shape: read from its
    alpha and padded with background to the image's frame, it gives the matte of the full trimap
    wherever the full trimap is background outside the bbox."""
    tri = np.zeros((H, W), np.uint8)
    tri[16:48, 30:70], tri[22:42, 38:62] = 128, 255
    x, y, w, h = 28, 14, 44, 36
    host_files.bbox_exr(tmp_path / "roto.exr", np.zeros((H, W, 3), np.float32), (x, y, w, h), alpha=tri / 255.0)
    images.write_rgb(tmp_path / "tri.png", np.repeat(tri[..., None], 3, 2))
    images.write_rgb(tmp_path / "src.exr", linear(shot.image[0]))
    for name in ("roto.exr", "tri.png"):
        matte_cli("--model", "closed_form", "--input", str(tmp_path / "src.exr"), "--trimap", str(tmp_path / name),
                  "--output", str(tmp_path / f"{name}.alpha.exr"), server=server_address)
    a, b = read_alpha(tmp_path / "roto.exr.alpha.exr"), read_alpha(tmp_path / "tri.png.alpha.exr")
    assert np.abs(a - b).max() < 2e-3  # half-float trimap levels 0.5 vs 128/255: the same unknown region


def test_plate_whose_bbox_does_not_cover_the_image_is_refused_per_frame(tmp_path, shot, server_address):
    host_files.bbox_exr(tmp_path / "plate.exr", linear(shot.plate), BOX)
    images.write_rgb(tmp_path / "src.exr", linear(shot.image[0]))
    run = mattebox("matte", "--model", "difference", "--input", str(tmp_path / "src.exr"), "--background",
                   str(tmp_path / "plate.exr"), "--output", str(tmp_path / "a.exr"), "--server", server_address,
                   "--progress", "json")
    assert run.returncode == 1
    message = [e["message"] for e in events(run) if e["event"] == "error"][0]
    assert "plate.exr" in message and "full frame" in message
    assert not os.path.exists(tmp_path / "a.exr")


@pytest.mark.parametrize("transport", ["path", "shm"])
def test_rgba_trimaps_are_read_from_alpha_and_the_channel_can_be_named(tmp_path, shot, server_address, transport):
    """An RGBA trimap PNG and an RGBA roto EXR, whose red is not the trimap, give the matte of the
    plain grey trimap; --matte-channel R reads a trimap stored in red."""
    tri = trimap_from_alpha(shot.alpha[0], band=2)
    images.write_rgb(tmp_path / "src.exr", linear(shot.image[0]))
    images.write_rgb(tmp_path / "grey.png", np.repeat(tri[..., None], 3, 2))
    host_files.rgba_trimap_png(tmp_path / "rgba.png", tri)
    host_files.rgba_roto_exr(tmp_path / "roto.exr", tri / np.float32(255))
    host_files.rgba_roto_exr(tmp_path / "red.exr", np.ones((H, W), np.float32), red=tri / np.float32(255))
    runs = {"grey.png": [], "rgba.png": [], "roto.exr": [], "red.exr": ["--matte-channel", "R"]}
    for name, extra in runs.items():
        matte_cli("--model", "closed_form", "--input", str(tmp_path / "src.exr"), "--trimap", str(tmp_path / name),
                  *extra, "--output", str(tmp_path / f"{name}.alpha.exr"), server=server_address, transport=transport)
    want = read_alpha(tmp_path / "grey.png.alpha.exr")
    for name in runs:
        assert np.abs(read_alpha(tmp_path / f"{name}.alpha.exr") - want).max() < 2e-3, name


def test_a_channel_the_file_lacks_is_a_clear_error(tmp_path, shot, server_address):
    images.write_rgb(tmp_path / "src.exr", linear(shot.image[0]))
    host_files.rgba_roto_exr(tmp_path / "roto.exr", shot.alpha[0])
    run = mattebox("matte", "--model", "closed_form", "--input", str(tmp_path / "src.exr"), "--trimap",
                   str(tmp_path / "roto.exr"), "--matte-channel", "mask.a", "--output", str(tmp_path / "a.exr"),
                   "--server", server_address, "--progress", "json")
    assert run.returncode == 1
    message = [e["message"] for e in events(run) if e["event"] == "error"][0]
    assert "mask.a" in message and "R, G, B, A" in message


@pytest.mark.parametrize("transport", ["path", "shm"])
def test_aces_and_log_plates_give_the_matte_of_the_rec709_original(tmp_path, shot, server_address, transport):
    """The same shot as a linear Rec.709 EXR (the original), an ACEScg EXR (tagged), a 16-bit ACEScct
    TIFF (untagged: --colour-space ACEScct) and a 10-bit log DPX (Cineon transfer in its header)."""
    src, plate = linear(shot.image[0]), linear(shot.plate)
    files = {
        "rec709.exr": (images.write_rgb, []),
        "acescg.exr": (host_files.acescg_exr, []),
        "acescct.tif": (host_files.acescct_tiff, ["--colour-space", "ACEScct"]),
        "log.dpx": (host_files.log_dpx, []),
    }
    alphas = {}
    for name, (write, extra) in files.items():
        write(tmp_path / f"src_{name}", src)
        write(tmp_path / f"plate_{name}", plate)
        out = str(tmp_path / f"alpha_{name}.exr")
        matte_cli("--model", "difference", "--input", str(tmp_path / f"src_{name}"), "--background",
                  str(tmp_path / f"plate_{name}"), *extra, "--output", out, server=server_address, transport=transport)
        alphas[name] = read_alpha(out)
    for name, a in alphas.items():
        # the key's soft threshold (0.04 to 0.20 of colour distance) turns a file's quantisation
        # (<= 0.008 in sRGB, see test_images) into at most ~0.05 of alpha at a pixel; an ACEScg file
        # taken for Rec.709 is 0.016 off on average and 0.56 at worst
        assert np.abs(a - alphas["rec709.exr"]).mean() < 2e-3, name
        assert np.abs(a - alphas["rec709.exr"]).max() < 0.1, name


# -- a hand-held plate, the unmixed foreground ------------------------------------------------------------


def handheld(plate: np.ndarray, dx: float = 3.0, dy: float = -2.0, degrees: float = 0.6) -> np.ndarray:
    """The plate as a hand-held camera would shoot it again: shifted and rotated a little about the
    frame centre, edges replicated."""
    import cv2

    h, w = plate.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    m[:, 2] += (dx, dy)
    return cv2.warpAffine(plate, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def sad(alpha: np.ndarray, true: np.ndarray) -> float:
    return float(np.abs(alpha - true).sum() / 1000)


def test_align_plate_brings_a_handheld_plate_back_to_the_true_plates_matte(tmp_path, server_address):
    shot = make_shot(320, 192, 2, first=FIRST, seed=9)
    pat = write_shot(tmp_path / "show", shot)
    images.write_rgb(tmp_path / "show" / "handheld.exr", linear(handheld(shot.plate)))
    runs = {"true": (pat["background"], []), "handheld": (str(tmp_path / "show" / "handheld.exr"), []),
            "aligned": (str(tmp_path / "show" / "handheld.exr"), ["--align-plate"])}
    scores, frames = {}, {}
    for name, (plate, extra) in runs.items():
        out = str(tmp_path / name / "a.####.exr")
        got = matte_cli("--model", "difference", "--input", pat["input"], "--background", plate, *extra,
                        "--output", out, server=server_address)
        frames[name] = [e for e in got if e["event"] == "frame"]
        scores[name] = sum(sad(read_alpha(sequence.frame_path(out, FIRST + i)), shot.alpha[i]) for i in range(2))
    assert scores["handheld"] > 1.3 * scores["true"]          # the wobble hurts the key ...
    assert scores["aligned"] <= 1.1 * scores["true"]          # ... and alignment takes it back
    for e in frames["aligned"]:
        assert e["alignment"]["ok"] and 1.0 < e["alignment"]["shift_px"] < 8.0
    assert all("alignment" not in e for e in frames["true"])


def test_a_plate_that_cannot_be_aligned_is_reported_on_its_frames(tmp_path, shot, server_address):
    pat = write_shot(tmp_path / "show", shot)
    images.write_rgb(tmp_path / "flat.exr", np.full((H, W, 3), 0.18, np.float32))
    run = mattebox("matte", "--model", "difference", "--input", pat["input"], "--background", str(tmp_path / "flat.exr"),
                   "--align-plate", "--output", str(tmp_path / "a.####.exr"), "--server", server_address,
                   "--progress", "json")
    assert run.returncode == 0, run.stderr + run.stdout  # matted with the plate as given, and said so
    got = events(run)
    frames = [e for e in got if e["event"] == "frame"]
    assert len(frames) == N and all(not e["alignment"]["ok"] and e["alignment"]["message"] for e in frames)
    assert [e for e in got if e["event"] == "done"][0]["misaligned"] == N


@pytest.mark.parametrize("model,transport", [("difference", "path"), ("difference", "stream"),
                                             ("closed_form", "shm")])
def test_unmixed_foreground_composites_over_a_new_background(tmp_path, shot, server_address, model, transport):
    """--foreground writes straight RGB beside the alpha, in the input's colour space and windows;
    premultiplied by the model's own alpha over a new background (in linear light, as a compositor
    merges EXRs) it is closer to the true composite than the source premultiplied, which still
    carries the old background at soft edges."""
    f_lin, b_lin = linear(shot.foreground), linear(shot.plate)
    a_true = shot.alpha[..., None]
    src = a_true * f_lin + (1 - a_true) * b_lin  # the plate photographed with the subject in front
    folder = tmp_path / "show"
    folder.mkdir()
    images.write_rgb(folder / "plate.exr", b_lin)
    for i in range(N):
        images.write_rgb(sequence.frame_path(str(folder / "src.####.exr"), FIRST + i), src[i])
        images.write_rgb(sequence.frame_path(str(folder / "tri.####.png"), FIRST + i),
                         np.repeat(trimap_from_alpha(shot.alpha[i], band=2)[..., None], 3, 2))
    out, fg = str(tmp_path / "out" / "a.####.exr"), str(tmp_path / "out" / "fg.####.exr")
    extra = ["--background", str(folder / "plate.exr")] if model == "difference" else ["--trimap", str(folder / "tri.####.png")]
    got = matte_cli("--model", model, "--input", str(folder / "src.####.exr"), *extra, "--output", out,
                    "--foreground", fg, server=server_address, transport=transport)
    assert [e["foreground"] for e in got if e["event"] == "frame"] == [sequence.frame_path(fg, f)
                                                                       for f in range(FIRST, FIRST + N)]
    new = np.zeros((H, W, 3), np.float32)
    new[..., 1] = 0.6  # a green replacement background, linear
    errors = {"band": [0.0, 0.0], "matte right": [0.0, 0.0]}  # (ours, source premultiplied) summed over frames
    for i in range(N):
        fgr = images.read(sequence.frame_path(fg, FIRST + i), 3)
        assert fgr.colour_space == colour.SCENE_LINEAR and fgr.pixels.shape == (H, W, 3)
        a = read_alpha(sequence.frame_path(out, FIRST + i))[..., None]
        true = a_true[i] * f_lin[i] + (1 - a_true[i]) * new
        band = trimap_from_alpha(shot.alpha[i], band=2) == 128
        for name, where in (("band", band), ("matte right", band & (np.abs(a[..., 0] - shot.alpha[i]) < 0.05))):
            errors[name][0] += np.abs(a * fgr.pixels + (1 - a) * new - true)[where].mean()
            errors[name][1] += np.abs(a * src[i] + (1 - a) * new - true)[where].mean()
    # Where the model's alpha is right the old background's fringe is what is left, and most of it
    # goes; over the whole unknown band the matte's own errors dominate both composites, and the
    # foreground must still not make things worse.
    assert errors["matte right"][0] <= 0.8 * errors["matte right"][1], errors
    assert errors["band"][0] <= errors["band"][1], errors
