"""The training package: every model learns, a killed run resumes to the same weights, fine-tuning
on three frames of a shot improves the others and is served without a restart."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import grpc
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from models import colour, images, metrics, sequence
from models.registry import Registry
from plugin.client.connection import Client
from training.data.composite import CompositeDataset
from training.data.sources import SyntheticBackgrounds, SyntheticForegrounds
from training.finetune import FinetuneConfig, finetune
from training.recipes import recipe
from training.synthetic import make_shot
from training.trainer import TrainConfig, Trainer

pytestmark = pytest.mark.usefixtures("one_thread")


class Fixed(torch.utils.data.Dataset):
    """The first n items of a dataset, made once: the same batch every step, so the loss must fall."""

    def __init__(self, ds, n: int):
        self.items = [ds[i] for i in range(n)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def composites(n: int, size: int, seed: int = 0) -> CompositeDataset:
    return CompositeDataset(SyntheticForegrounds(n, 160, 120, seed=seed), SyntheticBackgrounds(2, size, seed=seed),
                            size=size, seed=seed)


@pytest.mark.parametrize("name,steps,size", [("bgm", 12, 64), ("bgm_excite", 12, 64), ("msia", 12, 64),
                                             ("lightweight", 12, 128)])
def test_each_model_learns(name, steps, size, tmp_path):
    torch.manual_seed(0)
    net = Registry().model(name).build()
    data = Fixed(composites(2, size), 2)
    losses = []
    cfg = TrainConfig(model=name, out=str(tmp_path), steps=steps, batch=2, val_every=steps, save_every=steps,
                      val_items=1)
    Trainer(cfg, net, recipe(name), data, data, on_step=lambda r: losses.append(r.loss)).run()
    assert np.mean(losses[-3:]) < 0.9 * np.mean(losses[:3]), losses
    assert os.path.exists(tmp_path / "checkpoint.safetensors") and os.path.exists(tmp_path / "curves.png")
    assert os.listdir(tmp_path / "sheets")


def test_dcnn_learns_on_class_balanced_patches(tmp_path):
    from training.data.patches import IN, OUT, DCNNPatches

    torch.manual_seed(0)
    images = Fixed(composites(4, 128), 4)
    patches = DCNNPatches(images, n_images=4, per_image=60, length=4)
    item = patches[0]
    assert item["x"].shape == (5, IN, IN) and item["pha"].shape == (1, OUT, OUT)
    assert 1 < len(patches.groups) <= 20
    losses = []
    # 100x the recipe's rate: 12 steps must show the mechanics learn (the network starts at its inputs' mean)
    cfg = TrainConfig(model="dcnn", out=str(tmp_path), steps=12, batch=4, lr=1e-3, val_every=12, save_every=12,
                      val_items=1)
    Trainer(cfg, Registry().model("dcnn").build(), recipe("dcnn"), Fixed(patches, 4), images,
            on_step=lambda r: losses.append(r.loss)).run()
    assert np.mean(losses[-3:]) < 0.9 * np.mean(losses[:3]), losses


def _train(out, *extra) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "plugin.cli.main", "train", "--model", "msia", "--steps", "6",
                             "--batch", "2", "--crop", "64", "--save-every", "1", "--val-every", "100",
                             "--out", str(out), "--progress", "json", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def test_killed_run_resumes_to_the_same_weights(tmp_path):
    whole = _train(tmp_path / "whole")
    assert whole.wait(600) == 0
    killed = _train(tmp_path / "killed")
    for line in killed.stdout:
        if json.loads(line).get("step") == 3:
            killed.send_signal(signal.SIGKILL)
            break
    killed.wait(60)
    assert killed.returncode == -signal.SIGKILL
    resumed = _train(tmp_path / "killed", "--resume")
    steps = [json.loads(line)["step"] for line in resumed.stdout if '"step"' in line]
    assert resumed.wait(600) == 0
    assert steps[0] > 1 and steps[-1] == 6  # continued, did not start over
    a, b = load_file(tmp_path / "whole" / "msia.safetensors"), load_file(tmp_path / "killed" / "msia.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    card = json.loads((tmp_path / "killed" / "msia.json").read_text())
    first = json.loads((tmp_path / "whole" / "msia.json").read_text())
    assert card["steps"] == 6 and card["seconds"] > 0 and card["hardware"]
    assert card["data"]["licence"].startswith("procedural") and first["data"] == card["data"]


def _shot(folder, frames: int = 8):
    """A generated shot on disk: scene-linear EXR frames, a still plate, ground-truth alpha EXRs."""
    shot = make_shot(160, 96, frames, first=1, seed=4)
    pat = {"input": str(folder / "src.####.exr"), "mattes": str(folder / "gt.####.exr"),
           "background": str(folder / "plate.exr")}
    images.write_rgb(pat["background"], colour.convert(shot.plate, colour.SRGB, colour.SCENE_LINEAR))
    for i in range(frames):
        images.write_rgb(sequence.frame_path(pat["input"], i + 1), colour.convert(shot.image[i], colour.SRGB,
                                                                                 colour.SCENE_LINEAR))
        images.write_alpha(sequence.frame_path(pat["mattes"], i + 1), shot.alpha[i])
    return shot, pat


def _sad(client, model, shot, frames) -> float:
    plate = np.rint(shot.plate * 255).astype(np.uint8)
    total = 0.0
    for f in frames:
        pred = client.matte(model, np.rint(shot.image[f - 1] * 255).astype(np.uint8), background=plate, timeout=120)
        tri = np.full(pred.shape, 128, np.uint8)  # whole frame: the subject moves
        total += metrics.evaluate(pred.astype(np.float32), shot.alpha[f - 1], tri)["sad"]
    return total / len(frames)


def test_finetune_bgm_improves_the_shot_and_is_served_without_restart(tmp_path, monkeypatch, make_server):
    monkeypatch.setenv("MATTEBOX_WEIGHTS", str(tmp_path / "weights"))  # the studio folder, first on the path
    # a base model: a short run on procedural composites, installed where the registry looks
    torch.manual_seed(0)
    net = Registry().model("bgm").build()
    cfg = TrainConfig(model="bgm", out=str(tmp_path / "base"), steps=30, batch=4, val_every=30, save_every=30,
                      val_items=1)
    Trainer(cfg, net, recipe("bgm"), composites(8, 96), None).run()
    from training.checkpoint import save_weights

    save_weights(str(tmp_path / "weights" / "bgm.safetensors"), net)

    running = make_server()  # started before the fine-tuned model exists
    shot, pat = _shot(tmp_path / "shot")
    others = [6, 7, 8]
    with Client(running.address) as c:
        assert "bgm-shot" not in [m.name for m in c.models()]
        before = _sad(c, "bgm", shot, others)
        card = finetune(FinetuneConfig(base="bgm", name="bgm-shot", input=pat["input"], mattes=pat["mattes"],
                                       background=pat["background"], train_frames=[1, 2, 3], held_frames=[4, 5],
                                       steps=60, batch=4, crop=96, check_every=15, out=str(tmp_path / "ft")))
        listed = {m.name: m for m in c.models()}
        assert "bgm-shot" in listed and listed["bgm-shot"].weights_ready
        after = _sad(c, "bgm-shot", shot, others)
    assert card["held_sad_after"] < card["held_sad_before"]
    assert after < 0.9 * before, (before, after)


def test_torchrun_two_processes_agree_on_the_weights(tmp_path):
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    r = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "plugin.cli.main", "train",
                        "--model", "msia", "--steps", "4", "--batch", "4", "--crop", "64", "--val-every", "4",
                        "--out", str(tmp_path), "--progress", "json"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    card = json.loads((tmp_path / "msia.json").read_text())
    assert card["processes"] == 2
    digests = card["weights_sha256_per_process"]
    assert len(digests) == 2 and digests[0] == digests[1]
    steps = [json.loads(line)["step"] for line in r.stdout.splitlines() if '"event": "step"' in line]
    assert steps == [1, 2, 3, 4]  # rank 0 reports, once per step


def test_finetune_as_a_server_side_job_streams_progress(tmp_path, monkeypatch, make_server):
    """A host starts the fine-tune on the server and stays free; progress streams back; the model is
    served at the end; a path outside the allowed roots is refused."""
    from safetensors.torch import save_file

    from server.api import pb

    weights = tmp_path / "weights"
    weights.mkdir()
    monkeypatch.setenv("MATTEBOX_WEIGHTS", str(weights))  # this process and the server's child: the studio folder
    torch.manual_seed(0)
    save_file(Registry().model("bgm").build().state_dict(), str(weights / "bgm.safetensors"))
    shot, pat = _shot(tmp_path / "shot", frames=4)
    running = make_server(allow_roots=[str(tmp_path / "shot")])
    req = pb.FinetuneRequest(base="bgm", name="bgm-remote", input=pat["input"], mattes=pat["mattes"],
                             background=pat["background"], train_frames=[1, 2], held_frames=[3], steps=6)
    with Client(running.address) as c:
        kinds = [ev.WhichOneof("event") for ev in c.finetune(req, timeout=600)]
        assert kinds.count("step") == 6 and kinds[-1] == "done", kinds
        assert "bgm-remote" in [m.name for m in c.models()]
        outside = pb.FinetuneRequest(base="bgm", name="x", input="/etc/src.####.exr", mattes=pat["mattes"],
                                     train_frames=[1])
        with pytest.raises(grpc.RpcError) as err:
            list(c.finetune(outside, timeout=60))
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize("name", ["bgm", "msia"])
def test_learning_rate_follows_the_recipes_schedule(name, tmp_path):
    """Each step runs at the recipe's rate times its schedule: the cosine from 1 to LR_FLOOR (msia: the
    paper's poly decay), the same for a fresh and a resumed run since it depends on the step alone."""
    from training.recipes import LR_FLOOR

    rec, steps = recipe(name), 8
    assert rec.lr_factor(0.0) == pytest.approx(1.0)
    assert rec.lr_factor(0.5) == pytest.approx((1 + LR_FLOOR) / 2 if name == "bgm" else 0.5 ** 0.9)
    assert [rec.lr_factor(i / steps) for i in range(steps)] == sorted((rec.lr_factor(i / steps) for i in range(steps)),
                                                                      reverse=True)
    data = Fixed(composites(2, 64), 2)
    cfg = TrainConfig(model=name, out=str(tmp_path), steps=steps, batch=2, val_every=steps, save_every=steps,
                      val_items=1)
    seen = []
    trainer = Trainer(cfg, Registry().model(name).build(), rec, data, data,
                      on_step=lambda r: seen.append(trainer.opt.param_groups[0]["lr"]))
    trainer.run()
    assert seen == pytest.approx([rec.lr * rec.lr_factor(i / steps) for i in range(steps)])


def test_init_continues_from_a_weights_file_and_says_so_on_the_card(tmp_path):
    """--init: a new run starts from an earlier run's weights (0 steps: it leaves them as they were), and
    its card names the file, its digest and that file's own card."""
    first, second = tmp_path / "first", tmp_path / "second"
    common = [sys.executable, "-m", "plugin.cli.main", "train", "--model", "msia", "--batch", "2", "--crop", "64",
              "--val-every", "2", "--progress", "json"]
    r = subprocess.run(common + ["--steps", "2", "--out", str(first)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    r = subprocess.run(common + ["--steps", "1", "--lr", "1e-12", "--out", str(second), "--init", str(first / "msia.safetensors")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    before, after = load_file(str(first / "msia.safetensors")), load_file(str(second / "msia.safetensors"))
    weights = [k for k in before if before[k].is_floating_point() and "running" not in k]
    assert max((before[k] - after[k]).abs().max().item() for k in weights) < 1e-6  # lr 1e-12: the --init weights
    card = json.loads((second / "msia.json").read_text())
    assert card["init"]["weights"] == str(first / "msia.safetensors")
    assert card["init"]["digest"].startswith("sha256:") and card["init"]["card"]["steps"] == 2


def test_time_budget_ends_the_run_validated_and_saved(tmp_path):
    """--minutes: the run stops at the first step past the budget, with a validation, weights and a card
    that says how far it got of the planned steps."""
    r = subprocess.run([sys.executable, "-m", "plugin.cli.main", "train", "--model", "msia", "--steps", "500",
                        "--batch", "2", "--crop", "48", "--val-every", "100", "--minutes", "0.0001",
                        "--out", str(tmp_path), "--progress", "json"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    card = json.loads((tmp_path / "msia.json").read_text())
    assert card["steps"] == 1 and card["planned_steps"] == 500 and card["final"]["validation"]["step"] == 1
    # validated at the start too: the best to beat, and where the learning curve begins
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [0, 1] and card["weights_step"] in (0, 1) and card["validation"]["step"] == card["weights_step"]
    assert (tmp_path / "checkpoint.safetensors").exists() and (tmp_path / "msia.safetensors").exists()
