"""The unmixed foreground (models/foreground.py) and the models' own foreground (run_foreground)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from models.base import Sample
from models.bgm.model import BGM, BGMExcite
from models.classical.difference import Difference
from models.foreground import LAMBDA, unmix
from training.synthetic import make_background, make_shot


@pytest.fixture(scope="module")
def shot():
    """A generated frame (soft hair and veil edges) and a new background to composite it over."""
    return make_shot(120, 80, 1, seed=7), make_background(120, 80, np.random.default_rng(8))


def composite_error(fgr: np.ndarray, alpha: np.ndarray, bnew: np.ndarray, truth: np.ndarray,
                    region: np.ndarray) -> float:
    a = alpha[..., None]
    return float(np.abs(a * fgr + (1 - a) * bnew - truth).mean(axis=2)[region].mean())


def test_exact_where_alpha_is_known(shot):
    s, _ = shot
    image, alpha = s.image[0], s.alpha[0]
    fgr = unmix(image, alpha, s.plate)
    assert fgr.shape == image.shape and fgr.dtype == np.float32
    opaque = alpha == 1
    np.testing.assert_allclose(fgr[opaque], image[opaque], atol=1e-6)
    dense = alpha >= 0.9  # a known compositing with its own plate: the solve is the foreground
    np.testing.assert_allclose(fgr[dense], s.foreground[0][dense], atol=0.01)


def test_a_known_compositing_is_unmixed():
    rng = np.random.default_rng(0)
    fgr, bgr = rng.random((32, 48, 3), dtype=np.float32), rng.random((32, 48, 3), dtype=np.float32)
    alpha = rng.uniform(0.0, 1.0, (32, 48)).astype(np.float32)
    image = alpha[..., None] * fgr + (1 - alpha[..., None]) * bgr
    # the exact solve is F; only the prior's share 1 - w, on a difference of at most 1, is left
    share = 1 - alpha ** 2 / (alpha ** 2 + LAMBDA * (1 - alpha) ** 2)
    assert np.all(np.abs(unmix(image, alpha, bgr) - fgr).max(axis=2) <= share + 1e-5)
    dense = alpha > 0.8
    assert np.abs(unmix(image, alpha, bgr) - fgr)[dense].max() < 0.02


def test_beats_the_uncorrected_source_on_soft_edges(shot):
    s, bnew = shot
    image, alpha = s.image[0], s.alpha[0]
    truth = alpha[..., None] * s.foreground[0] + (1 - alpha[..., None]) * bnew
    soft = (alpha > 0.02) & (alpha < 0.98)
    source = composite_error(image, alpha, bnew, truth, soft)
    assert composite_error(unmix(image, alpha, s.plate), alpha, bnew, truth, soft) < 0.3 * source
    assert composite_error(unmix(image, alpha), alpha, bnew, truth, soft) < 0.7 * source


def test_scene_linear_values_stay_above_one(shot):
    s, _ = shot
    linear = 4 * s.image[0] ** 2.2  # highlights above 1, as an EXR holds them
    fgr = unmix(linear, s.alpha[0], 4 * s.plate ** 2.2)
    assert fgr.max() > 1 and fgr.max() <= linear.max() and fgr.min() >= 0


def test_a_given_prior_replaces_the_ml_estimate(shot):
    s, _ = shot
    image, alpha = s.image[0], s.alpha[0]
    head = np.full_like(image, 0.5)
    clear = alpha == 0
    np.testing.assert_allclose(unmix(image, alpha, s.plate, prior=head)[clear], 0.5)
    with pytest.raises(ValueError, match="prior"):
        unmix(image, alpha, s.plate, prior=head[:-1])
    with pytest.raises(ValueError, match="plate"):
        unmix(image, alpha, s.plate[:-1])


@pytest.mark.parametrize("cls", [BGM, BGMExcite])
def test_bgm_returns_its_foreground_head(cls, shot):
    torch.manual_seed(0)
    s, _ = shot
    model = cls()
    model.use(model.build(), "cpu")  # untrained: shape and range do not depend on the weights
    sample = model.prepare(Sample(image=s.image[0][:37, :53], background=s.plate[:37, :53]))
    (alpha, fgr), = model.run_foreground([sample])
    assert alpha.shape == (37, 53) and fgr.shape == (37, 53, 3) and fgr.dtype == np.float32
    assert 0 <= fgr.min() and fgr.max() <= 1
    np.testing.assert_allclose(alpha, model.run([sample])[0], atol=1e-6)  # the same matte as run()


def test_a_model_without_a_head_returns_none(shot):
    s, _ = shot
    model = Difference()
    sample = model.prepare(Sample(image=s.image[0], background=s.plate))
    (alpha, fgr), = model.run_foreground([sample])
    assert fgr is None and np.array_equal(alpha, model.run([sample])[0])
