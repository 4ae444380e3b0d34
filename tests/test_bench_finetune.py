"""`mattebox bench finetune`: the shot it makes is a shot (a subject moving over a still background, the
composite rule holding), and a run scores the fine-tune against its base without touching the user's
weights folders. The run needs the held-out photographs of ../shared/data (skipped where absent)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from plugin.cli.bench_finetune import FIRST, FRAMES, HELD, TRAIN, sway
from plugin.cli.main import main
from training.benchmark.composites import Composite

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "alphamatting"


def _composite() -> Composite:
    """A 60 x 80 disc of red foreground over a textured background; the plate is the background."""
    h, w = 60, 80
    yy, xx = np.mgrid[:h, :w]
    alpha = np.clip(12 - np.hypot(yy - 30, xx - 40), 0, 1).astype(np.float32)
    fgr = np.zeros((h, w, 3), np.float32)
    fgr[..., 0] = 0.9
    bgr = np.random.default_rng(1).uniform(0.2, 0.6, (h, w, 3)).astype(np.float32)
    image = alpha[..., None] * fgr + (1 - alpha[..., None]) * bgr
    return Composite("disc", "bg.png", image, alpha, fgr, bgr, np.full((h, w), 128, np.uint8), bgr)


def test_the_shot_sways_over_a_still_background():
    c = _composite()
    frames = sway(c, np.random.default_rng(0))
    assert len(frames) == FRAMES
    alphas = np.stack([a for _, a in frames])
    assert np.abs(np.diff(alphas, axis=0)).max() > 0.5  # the subject moves from frame to frame
    assert alphas.sum(axis=(1, 2)).std() < 0.05 * alphas.sum(axis=(1, 2)).mean()  # and keeps its size
    for src, pha in frames:
        assert src.shape == (60, 80, 3) and src.dtype == np.float32 and 0 <= src.min() and src.max() <= 1
        far = pha == 0
        assert np.abs(src[far] - c.bgr[far]).mean() < 0.02  # the background stays put, up to grain
        solid = pha == 1
        assert np.abs(src[solid] - c.fgr[solid]).mean() < 0.02
    # 3 roto'd frames (2 trained on, 1 held back); the other 9 are the scored ones
    assert len(set(TRAIN + HELD)) == 3 and all(FIRST <= f < FIRST + FRAMES for f in TRAIN + HELD)


@pytest.mark.skipif(not PHOTOS.is_dir(), reason=f"no held-out photographs at {PHOTOS}")
def test_a_run_scores_base_and_fine_tune_and_leaves_the_users_weights_alone(tmp_path, monkeypatch, capsys):
    user = tmp_path / "studio-weights"
    user.mkdir()
    monkeypatch.setenv("MATTEBOX_WEIGHTS", str(user))
    assert main(["bench", "finetune", "--models", "lightweight", "--foregrounds", "GT24", "--max-side", "96",
                 "--steps", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert list(user.iterdir()) == []  # the fine-tune went into the bench's own folder
    (shot,) = result["shots"]
    assert shot["model"] == "lightweight" and shot["foreground"] == "GT24" and shot["steps"] == 2
    base, tuned = shot["base"], shot["tuned"]
    assert base["sad"] > 0 and base["sad_frame"] >= base["sad"]
    assert shot["ratio"] == pytest.approx(tuned["sad"] / base["sad"])
    if not shot["installed"]:
        assert tuned == base  # nothing installed: the base is what is served
    assert result["models"]["lightweight"] == pytest.approx(shot["ratio"])


def test_unknown_model_is_a_clear_error(capsys):
    assert main(["bench", "finetune", "--models", "nosuch"]) == 1
    assert "nosuch" in capsys.readouterr().err
