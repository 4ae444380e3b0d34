"""dtSSD, the temporal stability of RobustVideoMatting's evaluation: hand-computed pairs, and
`mattebox eval` reporting it beside SAD for a sequence (text and --json) and not for one frame."""
from __future__ import annotations

import json

import numpy as np
import pytest

from models import images
from models.metrics import dtssd
from plugin.cli.main import main


def u8(rows) -> np.ndarray:
    return np.array(rows, dtype=np.uint8)


ZERO = u8([[0, 0], [0, 0]])


def test_one_pixel_flickering_by_full_alpha():
    # d = (pred_t - pred_prev) - (true_t - true_prev) = [[1, 0], [0, 0]]: mean of d^2 = 1/4,
    # root = 0.5, x 100 = 50
    assert dtssd(u8([[255, 0], [0, 0]]), ZERO, ZERO, ZERO) == pytest.approx(50.0)


def test_prediction_moving_less_than_the_truth():
    # the prediction rises by 51/255 = 0.2 everywhere; the truth by 0.4 on the top row only:
    # d = [[0.2 - 0.4, 0.2 - 0.4], [0.2, 0.2]] -> d^2 = 0.04 everywhere -> root 0.2 -> 20
    pred_prev, pred_t = ZERO, u8([[51, 51], [51, 51]])
    true_prev, true_t = ZERO, u8([[102, 102], [0, 0]])
    assert dtssd(pred_t, pred_prev, true_t, true_prev) == pytest.approx(20.0, rel=1e-5)


def test_an_error_that_holds_still_is_not_flicker():
    true_prev, true_t = u8([[0, 100], [200, 220]]), u8([[10, 90], [220, 200]])
    # 30 levels too high in both frames: wrong, but steady
    assert dtssd(true_t + 30, true_prev + 30, true_t.copy(), true_prev) == 0.0
    assert dtssd(true_t, true_prev, true_t, true_prev) == 0.0


def test_float_mattes_are_quantised_like_the_other_metrics():
    # 0.5 -> 128/255 after 8-bit quantisation; one of four pixels: 100 * sqrt((128/255)^2 / 4)
    got = dtssd(np.float32([[0.5, 0], [0, 0]]), np.zeros((2, 2), np.float32), np.zeros((2, 2), np.float32),
                np.zeros((2, 2), np.float32))
    assert got == pytest.approx(100 * (128 / 255) / 2, rel=1e-6)


def test_shapes_must_agree():
    with pytest.raises(ValueError, match="one shape"):
        dtssd(ZERO, ZERO, ZERO, u8([[0, 0, 0]]))


def _sequence(folder, preds, trues):
    for f, (p, t) in enumerate(zip(preds, trues), start=1):
        images.write_alpha(folder / f"pred.{f:04d}.png", np.float32(p) / 255)
        images.write_alpha(folder / f"gt.{f:04d}.png", np.float32(t) / 255)
        images.write_alpha(folder / f"tri.{f:04d}.png", np.full((2, 2), 128 / 255, np.float32))
    return [str(folder / f"{k}.####.png") for k in ("pred", "gt", "tri")]


def test_eval_reports_dtssd_per_pair_and_mean(tmp_path, capsys):
    # frames 1 -> 2: the one-pixel flicker of the first test (50); 2 -> 3: nothing moves (0); mean 25
    preds = [ZERO, u8([[255, 0], [0, 0]]), u8([[255, 0], [0, 0]])]
    pred, gt, tri = _sequence(tmp_path, preds, [ZERO, ZERO, ZERO])
    assert main(["eval", "--pred", pred, "--gt", gt, "--trimap", tri, "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert "dtssd" not in got["frames"]["1"]
    assert got["frames"]["2"]["dtssd"] == pytest.approx(50.0)
    assert got["frames"]["3"]["dtssd"] == pytest.approx(0.0)
    assert got["mean"]["dtssd"] == pytest.approx(25.0)
    assert got["mean"]["sad"] == pytest.approx(2 / 3 / 1000, rel=1e-5)  # SAD beside it: 1 px of 1.0 in 2 of 3
    assert main(["eval", "--pred", pred, "--gt", gt, "--trimap", tri]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "dtSSD" in lines[0].split()
    assert lines[1].split()[-1] == "-" and float(lines[2].split()[-1]) == pytest.approx(50.0)
    assert lines[-1].split()[0] == "mean" and float(lines[-1].split()[-1]) == pytest.approx(25.0)


def test_eval_of_one_frame_has_no_dtssd(tmp_path, capsys):
    pred, gt, tri = _sequence(tmp_path, [u8([[255, 0], [0, 0]])], [ZERO])
    assert main(["eval", "--pred", pred, "--gt", gt, "--trimap", tri, "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert "dtssd" not in got["mean"] and "dtssd" not in got["frames"]["1"]
    assert main(["eval", "--pred", pred, "--gt", gt, "--trimap", tri]) == 0
    assert "dtSSD" not in capsys.readouterr().out
