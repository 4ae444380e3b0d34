"""The rules of fine-tuning a studio relies on: never a model worse than its base on the held-back
frames (and saying so), every network (DCNN on patches of the shot's crops), fine-tunes of fine-tunes,
and a run that survives being stopped: in process, from the command line and over a real server whose
call is dropped. Everything installs into a temporary weights folder ($MATTEBOX_WEIGHTS); the shipped
weights are only read (as bases)."""
from __future__ import annotations

import json
import time

import pytest
import torch
from safetensors.torch import load_file, save_file

from models import colour, images, sequence, store
from models.registry import Registry
from plugin.cli.main import main
from plugin.client.connection import Client
from training.finetune import FinetuneConfig, Stopped, finetune
from training.recipes import BGM, base_of, recipe
from training.synthetic import make_shot

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def shot(tmp_path_factory):
    """A generated 96x64 shot of 6 frames on disk: scene-linear EXRs, a still plate, alpha EXRs."""
    folder = tmp_path_factory.mktemp("shot")
    s = make_shot(96, 64, 6, first=1, seed=4)
    pat = {"input": str(folder / "src.####.exr"), "mattes": str(folder / "gt.####.exr"),
           "background": str(folder / "plate.exr")}
    images.write_rgb(pat["background"], colour.convert(s.plate, colour.SRGB, colour.SCENE_LINEAR))
    for i in range(6):
        images.write_rgb(sequence.frame_path(pat["input"], i + 1),
                         colour.convert(s.image[i], colour.SRGB, colour.SCENE_LINEAR))
        images.write_alpha(sequence.frame_path(pat["mattes"], i + 1), s.alpha[i])
    return folder, pat


@pytest.fixture
def weights(tmp_path, monkeypatch):
    """The install folder of this test (first on the weights search path; the shipped bases after it)."""
    folder = tmp_path / "weights"
    monkeypatch.setenv("MATTEBOX_WEIGHTS", str(folder))
    return folder


def config(pat, tmp_path, **kw) -> FinetuneConfig:
    kw = {"base": "bgm", "name": "sh010", "train_frames": [1, 2, 3], "held_frames": [4], "steps": 4, "batch": 2,
          "crop": 64, "check_every": 2, "out": str(tmp_path / "run"), **kw}
    return FinetuneConfig(input=pat["input"], mattes=pat["mattes"], background=pat["background"], **kw)


def random_weights(model: str, path) -> str:
    """Untrained weights of `model`: a base any fine-tune beats."""
    torch.manual_seed(0)
    save_file(Registry().model(model).build().state_dict(), str(path))
    return str(path)


# -- never worse than the base ----------------------------------------------------------------------


def test_nothing_installed_when_every_step_is_worse_than_the_base(shot, tmp_path, weights):
    _, pat = shot
    scores = []
    result = finetune(config(pat, tmp_path, lr=1.0), on_validate=lambda step, m: scores.append((step, m["sad"])))
    base_sad = scores[0][1]
    assert scores[0][0] == 0 and result["held_sad_before"] == base_sad  # the base scored before any step
    assert all(sad > base_sad for step, sad in scores[1:]) and len(scores) == 3
    assert result["installed"] is False and result["held_sad_after"] == base_sad
    assert result["message"] == f"no step beat the base (SAD {base_sad:.4g}); nothing installed"
    assert result["best_step_sad"] == min(sad for _, sad in scores[1:])
    assert not (weights / "sh010.safetensors").exists() and not (weights / "sh010.json").exists()
    assert "sh010" not in Registry().names()


def test_a_diverging_run_installs_nothing_and_says_why(shot, tmp_path, weights):
    _, pat = shot
    result = finetune(config(pat, tmp_path, base="lightweight", lr=1.0))
    assert result["installed"] is False
    assert result["message"].startswith("no step beat the base") and "diverged" in result["message"]
    assert "--lr" in result["message"] and not list(weights.glob("sh010*"))


def test_the_command_exits_3_with_kept_base_when_nothing_beat_the_base(shot, tmp_path, weights, capsys):
    _, pat = shot
    code = main(["finetune", "--model", "bgm", "--name", "sh010", "--input", pat["input"], "--mattes", pat["mattes"],
                 "--background", pat["background"], "--train-frames", "1,2,3", "--held-frames", "4", "--steps", "4",
                 "--crop", "64", "--batch", "2", "--lr", "1", "--out", str(tmp_path / "run"), "--progress", "json"])
    out, err = capsys.readouterr()
    last = json.loads(out.strip().splitlines()[-1])
    assert code == 3, err
    assert last["event"] == "kept_base" and last["message"].startswith("no step beat the base (SAD ")
    assert last["message"].endswith("nothing installed") and last["message"] in err
    assert not list(weights.glob("sh010*"))


def test_a_step_that_beats_the_base_is_installed_with_its_score(shot, tmp_path, weights):
    _, pat = shot
    result = finetune(config(pat, tmp_path, base_weights=random_weights("bgm", tmp_path / "r.safetensors"), lr=1e-3))
    assert result["installed"] is True and result["held_sad_after"] < result["held_sad_before"]
    card = json.loads((weights / "sh010.json").read_text())
    assert card["held_sad_after"] == result["held_sad_after"] and card["steps"] in (2, 4)
    assert "sh010" in Registry().names()


# -- every network ----------------------------------------------------------------------------------


def test_dcnn_fine_tunes_on_patches_of_the_shots_crops(shot, tmp_path, weights):
    _, pat = shot
    steps, scores = [], []
    result = finetune(config(pat, tmp_path, base="dcnn", crop=48, steps=2), on_step=lambda r: steps.append(r.step),
                      on_validate=lambda step, m: scores.append(step))
    assert steps == [1, 2] and scores == [0, 2]
    assert result["installed"] == (result["held_sad_after"] < result["held_sad_before"])
    items = recipe("dcnn").training_set([{"src": torch.rand(3, 48, 48), "tri": tri_band(48), "pha": torch.rand(1, 48, 48)}], 0)
    assert items[0]["x"].shape == (5, 27, 27) and items[0]["pha"].shape == (1, 15, 15)


def tri_band(size: int) -> torch.Tensor:
    """(1, size, size) trimap: background left, foreground right, an unknown band in the middle."""
    tri = torch.zeros(1, size, size)
    tri[..., size // 2:] = 1
    tri[..., size // 2 - 8:size // 2 + 8] = 0.5
    return tri


def test_a_fine_tune_of_a_fine_tune(shot, tmp_path, weights):
    _, pat = shot
    store.install("sh010", load_file(random_weights("bgm", tmp_path / "r.safetensors")), {"base": "bgm"})
    assert isinstance(recipe("sh010"), BGM)
    result = finetune(config(pat, tmp_path, base="sh010", name="sh010-v2", lr=1e-3))
    assert result["installed"] is True
    card = json.loads((weights / "sh010-v2.json").read_text())
    assert card["base"] == "bgm" and card["lineage"] == ["bgm", "sh010"]  # listed as a bgm; its history kept
    assert Registry().model("sh010-v2").inputs == Registry().model("bgm").inputs
    # and one more level, through the new card
    again = finetune(config(pat, tmp_path, base="sh010-v2", name="sh010-v3", lr=1e-3, steps=2))
    if again["installed"]:
        assert json.loads((weights / "sh010-v3.json").read_text())["lineage"] == ["bgm", "sh010", "sh010-v2"]


def test_recipes_follow_chains_of_cards(tmp_path, weights):
    weights.mkdir()
    for name, base in (("a", "msia"), ("b", "a"), ("c", "b"), ("x", "y"), ("y", "x")):
        (weights / f"{name}.safetensors").write_bytes(b"")
        (weights / f"{name}.json").write_text(json.dumps({"base": base}))
    assert base_of("c") == "msia" and base_of("msia") == "msia"
    with pytest.raises(ValueError, match="name each other"):
        recipe("x")
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        recipe("nope")
    with pytest.raises(ValueError, match=r"no training recipe for 'closed_form'"):
        recipe("closed_form")


# -- a stopped run resumes ----------------------------------------------------------------------------


def test_a_stopped_run_resumes_to_the_weights_of_an_unstopped_one(shot, tmp_path, weights):
    _, pat = shot
    start = random_weights("bgm", tmp_path / "r.safetensors")
    whole = finetune(config(pat, tmp_path, name="whole", out=str(tmp_path / "whole"), base_weights=start,
                            lr=1e-3, check_every=4))
    assert whole["installed"]
    steps = []
    cfg = config(pat, tmp_path, name="split", base_weights=start, lr=1e-3, check_every=4)
    with pytest.raises(Stopped) as stopped:
        finetune(cfg, on_step=lambda r: steps.append(r.step), stop=lambda: len(steps) >= 2)
    assert stopped.value.step == 2 and (tmp_path / "run" / "checkpoint.safetensors").exists()
    assert not list(weights.glob("split*"))
    with pytest.raises(ValueError, match="other settings \\(steps\\)"):
        finetune(config(pat, tmp_path, name="split", base_weights=start, lr=1e-3, check_every=4, steps=6),
                 resume=True)
    resumed = []
    result = finetune(cfg, on_step=lambda r: steps.append(r.step), resume=True, on_resumed=resumed.append)
    assert resumed == [2] and steps == [1, 2, 3, 4] and result["resumed_from"] == 2
    a, b = load_file(weights / "whole.safetensors"), load_file(weights / "split.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_dropped_server_call_keeps_the_run_and_the_same_request_resumes_it(shot, tmp_path, weights, monkeypatch,
                                                                             make_server):
    from server.api import pb

    folder, pat = shot
    monkeypatch.setenv("MATTEBOX_RUNS", str(tmp_path / "runs"))  # read by the server at each call
    running = make_server(allow_roots=[str(folder)])
    req = pb.FinetuneRequest(base="bgm", name="sh010-remote", input=pat["input"], mattes=pat["mattes"],
                             background=pat["background"], train_frames=[1, 2, 3], held_frames=[4], steps=5)
    run = tmp_path / "runs" / "sh010-remote"
    with Client(running.address) as c:
        call = c.finetune(req, timeout=600)
        for ev in call:
            if ev.WhichOneof("event") == "step" and ev.step.step == 2:
                call.cancel()  # the artist closes the session: the run stops at its next step
                break
        deadline = time.monotonic() + 120
        while not (run / "checkpoint.safetensors").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (run / "checkpoint.safetensors").exists() and (run / "request.json").exists()
        events = list(c.finetune(req, timeout=600))
    kinds = [ev.WhichOneof("event") for ev in events]
    assert kinds[0] == "notice" and events[0].notice.startswith("resumed from step "), kinds
    start = int(events[0].notice.split()[-1])
    steps = [ev.step.step for ev in events if ev.WhichOneof("event") == "step"]
    assert start >= 2 and steps == list(range(start + 1, 6))  # continued, did not start over
    assert kinds[-1] == "done"
    done = events[-1].done
    assert done.base_kept == (not (weights / "sh010-remote.json").exists())
    assert done.base_kept == done.message.startswith("no step beat the base")
    assert not run.exists()  # a run that ended leaves no folder
