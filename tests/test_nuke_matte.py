"""The Nuke plugin end to end: the Nuke double's node graph -> the MatteboxMatte node -> the real `mattebox`
client in a subprocess -> a real server (path mode) -> alpha EXRs on disk -> the node's internal Read,
and the node's output is the Source with that alpha."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from models import images
from plugin.host import config

sys.path.insert(0, str(Path(__file__).parent / "nuke_double"))
import harness  # noqa: E402  (puts the Nuke double first on sys.path)
import nuke  # noqa: E402
from shots import write_shot  # noqa: E402

import host_files  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent / "nuke"))
from nuke_checks import press  # noqa: E402  (also run under each Nuke release: tests/nuke/session.py)

from plugin.nuke import actions, cache, catalog, job, pixels  # noqa: E402
from plugin.nuke import colour as ncolour  # noqa: E402
from plugin.nuke import finetune as mfinetune  # noqa: E402
from plugin.nuke import matte as mmatte  # noqa: E402

MATTEBOX = str(Path(sys.executable).with_name("mattebox"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def shot(tmp_path_factory):
    return write_shot(tmp_path_factory.mktemp("nuke_shot"))


@pytest.fixture(scope="module")
def listed(server):
    """The server's models, fetched once for the module (a node made by _quiet_create lists them)."""
    return catalog.fetch(config.Config(client=MATTEBOX, server=server.address))


@pytest.fixture
def comp(tmp_path, monkeypatch, server, listed):
    """A saved script comp.nk in tmp_path, plugin settings pointing at the test server."""
    monkeypatch.setenv("MATTEBOX_CONFIG", str(tmp_path / "client.json"))
    config.save(config.Config(client=MATTEBOX, server=server.address, start_server=False))
    harness.new_script(tmp_path / "comp.nk", 1, 4)
    return tmp_path


def read(path, first=1, last=4):
    return nuke.nodes.Read(file=str(path), first=first, last=last)


def matte_node(model, source, plate=None, trimap=None):
    """A MatteboxMatte node listing the server's models, wired up, with `model` chosen."""
    node = _quiet_create()
    for index, upstream in ((0, source), (1, plate), (2, trimap)):
        if upstream is not None:
            node.setInput(index, upstream)
    node["model"].setValue(model)
    return node


def _quiet_create():
    """A node whose model list comes from the list already fetched (no server call)."""
    from plugin.nuke import node as mnode

    group = mnode.create()
    mnode.set_models(group, catalog.cached(group["server"].value()))
    return group


def alpha_of(path) -> np.ndarray:
    return images.read(path).pixels[..., 0]


def test_nuke_node_mattes_reads_by_path_and_reruns_only_stale_frames(comp, shot, direct):
    node = actions.create()
    harness.pump(lambda: "models on" in node["status"].value(), 60)
    assert {"difference", "closed_form", "knn", "null"} <= set(node["model"].values())
    assert "difference (needs Source, Plate)" in node["models_info"].value()
    src, plate = read(shot / "src.####.exr"), read(shot / "plate.exr")
    node.setInput(0, src)
    node.setInput(1, plate)
    node["model"].setValue("difference")

    task = press(node, "matte")
    assert node["status"].value() == "4 frames matted with difference (0 were up to date)", node["status"].value()
    assert harness.renders() == [] and harness.messages() == []  # plain Reads: handed over by path, no render
    folder = comp / "mattebox" / node.name()
    alpha_read = node.node("MatteboxAlpha")
    assert alpha_read["file"].value() == str(folder / "alpha.####.exr")
    assert (alpha_read["first"].value(), alpha_read["last"].value()) == (1, 4)
    plate_px = images.read(shot / "plate.exr", 3).pixels
    for f in (1, 4):
        src_px = images.read(shot / f"src.{f:04d}.exr", 3).pixels
        want = direct("difference", src_px, background=plate_px, colour_space="scene_linear")
        got = alpha_of(folder / f"alpha.{f:04d}.exr")
        np.testing.assert_array_equal(got, want)
        out = harness.pixels(node, f)  # the node's output: the Source with the new alpha
        np.testing.assert_array_equal(out[..., 3], got.astype(np.float32))
        np.testing.assert_allclose(out[..., :3], src_px, rtol=1e-3)
    node["premultiply"].setValue(True)
    out = harness.pixels(node, 1)
    np.testing.assert_allclose(out[..., :3], harness.pixels(src, 1)[..., :3] * out[..., 3:], rtol=1e-3)
    assert task.percent == 100

    stamp = os.stat(folder / "alpha.0002.exr").st_mtime_ns
    press(node, "matte")
    assert node["status"].value() == "all 4 frames are up to date (difference)"
    assert os.stat(folder / "alpha.0002.exr").st_mtime_ns == stamp

    shutil.copy(shot / "src.0001.exr", comp / "src.0003.exr")  # frame 3 of the shot is replaced
    for f in (1, 2, 4):
        shutil.copy(shot / f"src.{f:04d}.exr", comp / f"src.{f:04d}.exr")
    src["file"].setValue(str(comp / "src.####.exr"))
    press(node, "matte")  # every frame's input file name changed: all stale
    assert node["status"].value().startswith("4 frames matted")
    shutil.copy(shot / "src.0003.exr", comp / "src.0003.exr")
    press(node, "matte")
    assert node["status"].value() == "1 frames matted with difference (3 were up to date)"
    np.testing.assert_array_equal(alpha_of(folder / "alpha.0003.exr"), direct(
        "difference", images.read(shot / "src.0003.exr", 3).pixels, background=plate_px, colour_space="scene_linear"))
    node["steps"].setValue(1)  # a changed setting makes every frame stale
    press(node, "matte")
    assert node["status"].value().startswith("4 frames matted")


def test_nuke_node_renders_a_source_that_is_not_a_read(comp, shot, direct):
    src = read(shot / "src.####.exr")
    grade = nuke.nodes.Grade(multiply=0.5)
    grade.setInput(0, src)
    node = matte_node("closed_form", grade, trimap=read(shot / "tri.####.png"))
    node["frames"].setValue("2-3")
    press(node, "matte")
    assert node["status"].value() == "2 frames matted with closed_form (0 were up to date)", node["status"].value()
    folder = comp / "mattebox" / node.name()
    assert harness.renders() == [(str(folder / "inputs" / "source.####.exr"), 2, 3)]
    assert not any(n.Class() == "Write" for n in node.nodes())  # the internal Write is gone again
    for f in (2, 3):
        rendered = images.read(folder / "inputs" / f"source.{f:04d}.exr", 3).pixels
        np.testing.assert_allclose(rendered, images.read(shot / f"src.{f:04d}.exr", 3).pixels * 0.5, rtol=2e-3)
        tri = images.read(shot / f"tri.{f:04d}.png", 1).pixels[..., 0]
        want = direct("closed_form", rendered, trimap=tri, colour_space="scene_linear")
        np.testing.assert_array_equal(alpha_of(folder / f"alpha.{f:04d}.exr"), want)
    grade["multiply"].setValue(0.6)  # an upstream knob changed: the frames are stale
    press(node, "matte")
    assert node["status"].value().startswith("2 frames matted")


def test_nuke_node_refuses_before_anything_runs(comp, shot):
    node = matte_node("closed_form", read(shot / "src.####.exr"), plate=read(shot / "plate.exr"))
    press(node, "matte")
    assert node["status"].value() == ("closed_form needs the Trimap input: connect it, or pick a model that "
                                      "does not need it")
    assert harness.messages() and "Trimap" in harness.messages()[-1]
    assert not (comp / "mattebox").exists() and harness.renders() == []

    node.setInput(0, None)
    press(node, "matte")
    assert node["status"].value() == "connect the Source input (the shot to matte)"
    press(node, "cancel")
    assert node["status"].value() == "no job is running for this node"
    nuke.root()["name"].setValue("")
    node.setInput(0, read(shot / "src.####.exr"))
    press(node, "matte")
    assert node["status"].value().startswith("save the script first")


def test_nuke_node_says_when_the_server_is_down(comp, shot):
    node = matte_node("difference", read(shot / "src.####.exr"), plate=read(shot / "plate.exr"))
    node["server"].setValue(f"127.0.0.1:{free_port()}")
    press(node, "matte")
    status = node["status"].value()
    assert status.startswith(f"no Mattebox server answers at {node['server'].value()}: start one with `mattebox serve`")
    assert harness.messages() == [f"Mattebox {node.name()}: {status}"]
    assert not (comp / "mattebox" / node.name() / "alpha.0001.exr").exists()
    actions.refresh(node).join(10)
    harness.run_queued()
    assert node["status"].value() == status


def test_nuke_node_reports_a_missing_frame_and_keeps_the_others(comp, shot, direct):
    for f in (1, 2, 4):
        shutil.copy(shot / f"src.{f:04d}.exr", comp / f"src.{f:04d}.exr")
    node = matte_node("difference", read(comp / "src.####.exr"), plate=read(shot / "plate.exr"))
    press(node, "matte")
    status = node["status"].value()
    assert status.startswith("3 of 4 frames done; 1 failed (frame 3: ") and "src.0003.exr" in status, status
    assert "press Matte to redo only the missing frames" in status and harness.messages()
    folder = comp / "mattebox" / node.name()
    assert sorted(p.name for p in folder.glob("alpha.*.exr")) == ["alpha.0001.exr", "alpha.0002.exr", "alpha.0004.exr"]
    shutil.copy(shot / "src.0003.exr", comp / "src.0003.exr")
    press(node, "matte")
    assert node["status"].value() == "1 frames matted with difference (3 were up to date)"


def test_nuke_node_cancel_keeps_finished_frames(comp, tmp_path):
    big = write_shot(tmp_path / "big", frames=12, width=320, height=240, seed=5)
    node = matte_node("closed_form", read(big / "src.####.exr", 1, 12), trimap=read(big / "tri.####.png", 1, 12))
    node["matte"].execute()
    task = job.find(node.fullName())
    harness.pump(lambda: task.percent > 0 or not task._thread.is_alive(), 60)
    harness.cancel_progress()  # the user presses cancel on Nuke's progress bar
    harness.finish(task)
    status = node["status"].value()
    done = int(status.split()[1])
    assert status == f"cancelled: {done} of 12 frames done and kept; press Matte to do the rest"
    assert 1 <= done < 12
    folder = tmp_path / "mattebox" / node.name()
    # the server may finish one more frame as the cancel reaches it: on disk but not recorded, so redone next run
    assert len(json.loads((folder / cache.MANIFEST).read_text())) == done <= len(list(folder.glob("alpha.*.exr")))
    assert node.node("MatteboxAlpha")["disable"].value() is False  # the finished frames are shown
    assert harness.messages() == []


def test_nuke_finetune_button_runs_a_server_side_finetune(comp, shot, weights_dir):
    # weights_dir: no bgm weights, for the server's fine-tune process too
    node = matte_node("bgm", read(shot / "src.####.exr"), plate=read(shot / "plate.exr"))
    press(node, "finetune")
    assert node["status"].value() == "connect the GT input (the finished mattes)"
    node.setInput(3, read(shot / "gt.####.png"))
    node["finetune_steps"].setValue(3)
    plan = mfinetune.Plan(node)
    assert plan.args() == ["finetune", "--remote", "--model", "bgm", "--name", f"bgm_{node.name().lower()}",
                           "--input", str(shot / "src.####.exr"), "--mattes", str(shot / "gt.####.png"),
                           "--train-frames=2,3", "--frames=1-4", "--steps", "3", "--held-frames=1,4",
                           "--background", str(shot / "plate.exr")]
    node["gt_frames"].setValue("2-3")
    assert "--train-frames=2,3" in mfinetune.Plan(node).args()
    node["gt_frames"].setValue("")
    task = press(node, "finetune")  # a bgm without trained weights: the server says so
    assert task.kind == "fine-tune" and task.job.command[1:3] == ["finetune", "--remote"]
    assert node["status"].value().startswith("fine-tune failed: ") and "no trained weights" in node["status"].value()


def test_nuke_farm_button_writes_a_template_openjd_accepts(comp, shot):
    openjd = shutil.which("openjd", path=str(Path(sys.executable).parent))
    node = matte_node("difference", read(shot / "src.####.exr"), plate=read(shot / "plate.exr"))
    node["farm_chunk"].setValue(2)
    node["farm"].execute()
    template = comp / f"comp.{node.name()}.matte.json"
    params = json.loads((comp / f"comp.{node.name()}.matte.params.json").read_text())
    assert str(template) in node["status"].value()
    assert params == {"Input": str(shot / "src.####.exr"), "Background": str(shot / "plate.exr"),
                      "Output": str(comp / "mattebox" / node.name() / "alpha.####.exr"), "AlignPlate": "false"}
    defaults = {p["name"]: p.get("default") for p in json.loads(template.read_text())["parameterDefinitions"]}
    assert (defaults["Model"], defaults["FrameRange"], defaults["ChunkSize"]) == ("difference", "1-4", 2)
    r = subprocess.run([openjd, "check", str(template)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_nuke_finetune_serves_the_new_model_and_lists_it(comp, shot, tmp_path, monkeypatch, make_server):
    """A base model with weights: the fine-tune runs on the server and its model joins the node's list."""
    import torch
    from safetensors.torch import save_file

    from models.registry import Registry

    weights = tmp_path / "weights"
    weights.mkdir()
    monkeypatch.setenv("MATTEBOX_WEIGHTS", str(weights))  # this process and the server's fine-tune process
    torch.manual_seed(0)
    save_file(Registry().model("bgm").build().state_dict(), str(weights / "bgm.safetensors"))
    running = make_server()
    node = matte_node("bgm", read(shot / "src.####.exr"), plate=read(shot / "plate.exr"))
    node["server"].setValue(running.address)
    node.setInput(3, read(shot / "gt.####.png"))
    node["finetune_steps"].setValue(2)
    name = f"bgm_{node.name().lower()}"
    assert name not in node["model"].values()
    task = press(node, "finetune")
    assert node["status"].value().startswith(f"fine-tuned model {name} is served"), node["status"].value()
    assert [step for step, _ in task.losses] == [1, 2]
    assert name in node["model"].values()
    assert (weights / f"{name}.safetensors").exists()


def test_nuke_node_redoes_every_frame_of_a_retrained_model(comp, shot, tmp_path, monkeypatch):
    """The model's digest is part of the cache key: weights re-installed under the same name (`mattebox
    train --install` in the studio folder, which the test server reads) make every frame stale, though no
    knob or input changed."""
    import torch

    from models import store
    from models.registry import Registry

    monkeypatch.setenv("MATTEBOX_WEIGHTS", str(tmp_path / "studio"))
    settings, inputs = {"model": "lightweight"}, {"Source": "src"}
    assert cache.key(settings, inputs, "sha256:aa") != cache.key(settings, inputs, "sha256:bb")

    def install(seed):
        torch.manual_seed(seed)
        store.install("lightweight", Registry().model("lightweight").build().state_dict(), {"model": "lightweight"})

    install(0)
    node = matte_node("lightweight", read(shot / "src.####.exr"))
    press(node, "matte")
    assert node["status"].value() == "4 frames matted with lightweight (0 were up to date)", node["status"].value()
    press(node, "matte")
    assert node["status"].value() == "all 4 frames are up to date (lightweight)"
    folder = comp / "mattebox" / node.name()
    before = alpha_of(folder / "alpha.0001.exr")
    install(1)
    press(node, "matte")
    assert node["status"].value() == "4 frames matted with lightweight (0 were up to date)", node["status"].value()
    assert np.abs(alpha_of(folder / "alpha.0001.exr").astype(np.float32) - before).max() > 0.01


# -- studio material: matte channels, colour spaces, hand-held plates, the unmixed foreground -----------


def matte_args(node, first=1, last=4):
    """The `mattebox matte` arguments a Matte press would run for frames first-last (no job)."""
    return mmatte.Plan(node).args(first, last)


def flag(args, name):
    """The value after `name` in args (None when absent)."""
    return args[args.index(name) + 1] if name in args else None


def test_nuke_trimap_channel_is_the_channel_the_server_reads(comp, shot, direct):
    """An RGBA roto EXR as Nuke writes it whose red is NOT the matte (an inverted trimap there, the
    trimap in alpha): auto reads alpha, a picked channel is read by path (--matte-channel) or, for an
    input Nuke renders, written as the alpha."""
    tri = {f: images.read(shot / f"tri.{f:04d}.png", 1).pixels[..., 0] for f in (1, 2)}
    for f, t in tri.items():
        t = t.astype(np.float32) / 255
        host_files.rgba_roto_exr(comp / f"roto.{f:04d}.exr", t, red=1 - t)
    roto = read(comp / "roto.####.exr", 1, 2)
    node = matte_node("closed_form", read(shot / "src.####.exr", 1, 2), trimap=roto)
    folder = comp / "mattebox" / node.name()
    src = {f: images.read(shot / f"src.{f:04d}.exr", 3).pixels for f in (1, 2)}
    assert flag(matte_args(node, 1, 2), "--matte-channel") is None  # auto: the server's rule, alpha first
    press(node, "matte")
    assert node["status"].value() == "2 frames matted with closed_form (0 were up to date)", node["status"].value()
    for f in (1, 2):
        np.testing.assert_array_equal(alpha_of(folder / f"alpha.{f:04d}.exr"),
                                      direct("closed_form", src[f], trimap=tri[f], colour_space="scene_linear"))
    inverted = {f: direct("closed_form", src[f], trimap=255 - tri[f], colour_space="scene_linear") for f in (1, 2)}

    node["trimap_channel"].setValue("red")  # the channel is part of the cache key: every frame is redone
    assert flag(matte_args(node, 1, 2), "--matte-channel") == "R"
    press(node, "matte")
    assert node["status"].value().startswith("2 frames matted"), node["status"].value()
    for f in (1, 2):
        np.testing.assert_array_equal(alpha_of(folder / f"alpha.{f:04d}.exr"), inverted[f])

    dot = nuke.nodes.Dot()  # not a Read: rendered, red copied into the alpha the Write writes
    dot.setInput(0, roto)
    node.setInput(2, dot)
    plan = mmatte.Plan(node)
    assert plan.feeds["Trimap"].render and flag(plan.args(1, 2), "--matte-channel") == "A"
    press(node, "matte")
    assert harness.renders()[-1] == (str(folder / "inputs" / "trimap.####.exr"), 1, 2)
    written = images.read(folder / "inputs" / "trimap.0001.exr")
    assert written.channels == ("A",)
    np.testing.assert_allclose(written.pixels[..., 0], 1 - tri[1].astype(np.float32) / 255, atol=1e-3)
    for f in (1, 2):
        np.testing.assert_array_equal(alpha_of(folder / f"alpha.{f:04d}.exr"), inverted[f])
    node["trimap_channel"].setValue("luminance")  # rendered as RGB, read as Y (the luminance)
    plan = mmatte.Plan(node)
    assert (plan.feeds["Trimap"].write_channels, flag(plan.args(1, 2), "--matte-channel")) == ("rgb", "Y")


def test_nuke_gt_channel_goes_to_the_finetune(comp, shot):
    node = matte_node("bgm", read(shot / "src.####.exr"), plate=read(shot / "plate.exr"))
    gt = read(shot / "gt.####.png")
    node.setInput(3, gt)
    node["gt_channel"].setValue("green")
    assert flag(mfinetune.Plan(node).args(), "--matte-channel") == "G"
    dot = nuke.nodes.Dot()
    dot.setInput(0, gt)
    node.setInput(3, dot)
    node["gt_frames"].setValue("2")
    plan = mfinetune.Plan(node)
    assert flag(plan.args(), "--matte-channel") == "A" and plan.feeds["GT"].render
    assert pixels.render_all(node.fullName(), plan.feeds, [2]) == ""
    written = images.read(comp / "mattebox" / node.name() / "inputs" / "gt.0002.exr")
    np.testing.assert_allclose(written.pixels[..., 0], images.read(shot / "gt.0002.png", 1).pixels[..., 0] / 255,
                               atol=1e-3)  # the grey GT file's green, written as alpha


def test_nuke_read_colorspace_reaches_the_server(comp, shot, direct):
    """A Read's colorspace knob in Nuke's names becomes --colour-space in the server's OpenColorIO
    names; a space the server lacks (a camera log) is rendered by Nuke into the working space."""
    from models import colour as server_colour

    assert {n for n in set(ncolour._LOOKUP.values()) if n != ncolour.WORKING
            if not server_colour._known(n)} == set()  # every name the plugin sends, the server knows
    for f in (1, 2):
        linear = images.read(shot / f"src.{f:04d}.exr", 3).pixels
        images.write_rgb(comp / f"cct.{f:04d}.exr", server_colour.convert(linear, "scene_linear", "ACEScct"))
    images.write_rgb(comp / "plate_cct.exr", server_colour.convert(images.read(shot / "plate.exr", 3).pixels,
                                                                   "scene_linear", "ACEScct"))
    src, plate = read(comp / "cct.####.exr", 1, 2), read(comp / "plate_cct.exr")
    src["colorspace"].setValue("ACES - ACEScct")
    plate["colorspace"].setValue("ACES/ACEScct")
    node = matte_node("difference", src, plate=plate)
    node["frames"].setValue("1-2")
    assert flag(matte_args(node), "--colour-space") == "ACEScct"
    press(node, "matte")
    assert node["status"].value() == "2 frames matted with difference (0 were up to date)", node["status"].value()
    assert harness.renders() == []
    plate_px = images.read(comp / "plate_cct.exr", 3).pixels
    for f in (1, 2):
        np.testing.assert_array_equal(alpha_of(comp / "mattebox" / node.name() / f"alpha.{f:04d}.exr"), direct(
            "difference", images.read(comp / f"cct.{f:04d}.exr", 3).pixels, background=plate_px, colour_space="ACEScct"))

    src["colorspace"].setValue("AlexaV3LogC")  # the server has no such space: Nuke renders it (and so the plate)
    plan = mmatte.Plan(node)
    assert plan.feeds["Source"].render and plan.feeds["Plate"].render
    assert flag(plan.args(1, 2), "--colour-space") == "scene_linear"
    src["colorspace"].setValue("default (linear)")
    plate["colorspace"].setValue("default")
    plate["file"].setValue(str(shot / "tri.0001.png"))  # a PNG: Nuke's 8-bit default, sRGB
    plan = mmatte.Plan(node)
    assert not plan.feeds["Source"].render and plan.feeds["Plate"].render  # made one space: the working space
    assert flag(plan.args(1, 2), "--colour-space") == "scene_linear"
    plate["file"].setValue(str(comp / "plate_cct.exr"))
    src["colorspace"].setValue("default")
    assert flag(matte_args(node), "--colour-space") is None  # Nuke's defaults for EXRs: the server's rule
    src["raw"].setValue(True)
    nuke.root()["workingSpaceLUT"].setValue("ACES - ACEScg")
    assert flag(matte_args(node), "--colour-space") == "ACEScg"  # raw: the working space
    nuke.root()["workingSpaceLUT"].setValue("linear")
    src["raw"].setValue(False)
    node["colour_space"].setValue("ACEScct")  # the node's own knob names the files' space
    plan = mmatte.Plan(node)
    assert flag(plan.args(1, 2), "--colour-space") == "ACEScct" and not plan.feeds["Source"].render
    dpx = read(comp / "scan.####.dpx")
    dpx["colorspace"].setValue("Cineon")
    assert ncolour.read_space(dpx, nuke.root()) == "Cineon"
    dpx["colorspace"].setValue("default")  # a log file's default in Nuke: Cineon
    assert ncolour.read_space(dpx, nuke.root()) == "Cineon"


def test_nuke_unmixed_output_writes_and_shows_the_foreground(comp, shot):
    """Output mode unmixed RGBA: the job also writes the foreground into the cache folder and the node
    outputs foreground * alpha with alpha; a missing foreground file makes its frame stale."""
    node = matte_node("difference", read(shot / "src.####.exr", 1, 2), plate=read(shot / "plate.exr"))
    folder = comp / "mattebox" / node.name()
    node["output_mode"].setValue("unmixed RGBA (premultiplied)")
    assert flag(matte_args(node, 1, 2), "--foreground") == str(folder / "foreground.####.exr")
    press(node, "matte")
    assert node["status"].value() == "2 frames matted with difference (0 were up to date)", node["status"].value()
    for f in (1, 2):
        fg = images.read(folder / f"foreground.{f:04d}.exr", 3).pixels.astype(np.float32)
        alpha = alpha_of(folder / f"alpha.{f:04d}.exr").astype(np.float32)
        out = harness.pixels(node, f)
        np.testing.assert_array_equal(out[..., 3], alpha)
        np.testing.assert_allclose(out[..., :3], fg * alpha[..., None], rtol=1e-3, atol=1e-6)
    node["output_mode"].setValue("source with alpha")  # the Switch follows the knob
    np.testing.assert_allclose(harness.pixels(node, 1)[..., :3], images.read(shot / "src.0001.exr", 3).pixels,
                               rtol=1e-3)
    (folder / "foreground.0002.exr").unlink()
    node["output_mode"].setValue("unmixed RGBA (premultiplied)")
    press(node, "matte")
    assert node["status"].value() == "1 frames matted with difference (1 were up to date)", node["status"].value()


def test_nuke_align_plate_names_the_frames_it_could_not_align(comp, shot):
    """align plate: --align-plate when a Plate is connected (it is part of the cache key), and a frame
    whose plate cannot be aligned (here a plate with no features at all) is named in the status."""
    node = matte_node("difference", read(shot / "src.####.exr", 1, 2), plate=read(shot / "plate.exr"))
    node["frames"].setValue("1-2")
    node["align_plate"].setValue(True)
    assert "--align-plate" in matte_args(node, 1, 2)
    node.setInput(1, None)
    assert "--align-plate" not in matte_args(node, 1, 2)  # nothing to align
    flat = comp / "flat.exr"
    images.write_rgb(flat, np.full((64, 80, 3), 0.18, np.float32))
    node.setInput(1, read(flat))
    press(node, "matte")
    status = node["status"].value()
    assert status.startswith("2 frames matted with difference (0 were up to date)\nnote: the clean plate could not "
                             "be aligned on frames 1, 2 (") and "they were matted with the plate as given" in status, status
    assert harness.messages() == []  # a warning, not a failure


def test_nuke_negative_frame_ranges_and_keys_off_the_main_thread(comp, shot, monkeypatch):
    for f, neg in zip((1, 2, 3), (-2, -1, 0)):
        shutil.copy(shot / f"src.{f:04d}.exr", comp / f"src.{neg:04d}.exr")
    assert (comp / "src.-002.exr").exists()
    src = read(comp / "src.####.exr", -2, 0)
    node = matte_node("difference", src, plate=read(shot / "plate.exr"))
    threads = {"walk": set(), "knobs": set()}
    walk, knobs = pixels.describe, pixels.node_info
    monkeypatch.setattr(pixels, "describe", lambda *a: threads["walk"].add(threading.current_thread()) or walk(*a))
    monkeypatch.setattr(pixels, "node_info", lambda *a: threads["knobs"].add(threading.current_thread()) or knobs(*a))
    assert mmatte.Plan(node).keys is None  # a Matte press reads no files on the main thread
    press(node, "matte")
    assert node["status"].value() == "3 frames matted with difference (0 were up to date)", node["status"].value()
    main = threading.main_thread()
    assert threads["walk"] and main not in threads["walk"] and threads["knobs"] == {main}
    folder = comp / "mattebox" / node.name()
    assert sorted(p.name for p in folder.glob("alpha.*.exr")) == ["alpha.-001.exr", "alpha.-002.exr", "alpha.0000.exr"]
    assert harness.pixels(node, -2)[..., 3].max() > 0.5
    node["frames"].setValue("-2--1")
    press(node, "matte")
    assert node["status"].value() == "all 2 frames are up to date (difference)"
    node["frames"].setValue("-1--2")
    press(node, "matte")
    assert node["status"].value().startswith("frame range '-1--2' is not A-B")
    node["gt_frames"].setValue("-3--1,2")
    assert mfinetune.gt_frames(node, -5, 5) == [-3, -2, -1, 2]


def test_nuke_status_shows_the_jobs_notices(comp, shot, make_server, tmp_path):
    """A server on this machine that may not read the shot's folder: the pixels go by shared memory and
    the status says so."""
    refusing = make_server(allow_roots=[str(tmp_path / "elsewhere")])
    node = matte_node("difference", read(shot / "src.####.exr", 1, 2), plate=read(shot / "plate.exr"))
    node["server"].setValue(refusing.address)
    node["frames"].setValue("1-2")
    press(node, "matte")
    status = node["status"].value()
    assert status.startswith("2 frames matted with difference (0 were up to date)\nnote: ") and "shared memory" in status
    assert (comp / "mattebox" / node.name() / "alpha.0002.exr").exists()
