"""Tests for the procedural shot generator in training.synthetic."""

import numpy as np
import pytest

from training.synthetic import Shot, make_background, make_shot, trimap_from_alpha

W, H, N = 320, 180, 6


@pytest.fixture(scope="module")
def shot() -> Shot:
    return make_shot(width=W, height=H, frames=N, first=1001, seed=7)


def test_shapes_dtypes_ranges(shot):
    assert shot.image.shape == (N, H, W, 3)
    assert shot.foreground.shape == (N, H, W, 3)
    assert shot.alpha.shape == (N, H, W)
    assert shot.plate.shape == (H, W, 3)
    assert shot.first == 1001
    for name in ("image", "foreground", "alpha", "plate"):
        array = getattr(shot, name)
        assert array.dtype == np.float32, name
        assert np.isfinite(array).all(), name
        assert array.min() >= 0.0 and array.max() <= 1.0, name


def test_same_seed_same_shot_other_seed_differs(shot):
    again = make_shot(width=W, height=H, frames=N, first=1001, seed=7)
    other = make_shot(width=W, height=H, frames=N, first=1001, seed=8)
    for name in ("image", "foreground", "alpha", "plate"):
        assert np.array_equal(getattr(shot, name), getattr(again, name)), name
    assert not np.array_equal(shot.plate, other.plate)
    assert not np.array_equal(shot.alpha, other.alpha)
    assert not np.array_equal(shot.image, other.image)


def test_composite_equation(shot):
    a = shot.alpha[..., None]
    expected = a * shot.foreground + (1 - a) * shot.plate
    np.testing.assert_allclose(shot.image, expected, rtol=0, atol=1e-6)


def test_plate_shows_where_alpha_is_zero(shot):
    clear = shot.alpha == 0
    plate = np.broadcast_to(shot.plate, shot.image.shape)
    assert np.array_equal(shot.image[clear], plate[clear])


def test_subject_moves(shot):
    def centroid(alpha):
        ys, xs = np.mgrid[0:H, 0:W]
        return np.array([(alpha * xs).sum(), (alpha * ys).sum()]) / alpha.sum()

    shift = np.linalg.norm(centroid(shot.alpha[0]) - centroid(shot.alpha[-1]))
    assert shift > 0.05 * H
    # Smooth motion: every frame differs from the previous one, by a small step.
    steps = [np.linalg.norm(centroid(shot.alpha[i + 1]) - centroid(shot.alpha[i]))
             for i in range(N - 1)]
    assert min(steps) > 0 and max(steps) < 0.1 * H


def test_alpha_has_solid_clear_and_fractional_regions(shot):
    for alpha in shot.alpha:
        fractional = (alpha > 0.05) & (alpha < 0.95)
        assert fractional.mean() > 0.005
        assert (alpha == 1).mean() > 0.02
        assert (alpha == 0).mean() > 0.5
        # The veil: a sizeable semi-transparent area.
        assert ((alpha > 0.3) & (alpha < 0.6)).mean() > 0.01
    # The frame border far from the subject is exactly clear.
    assert (shot.alpha[:, :, :3] == 0).all() and (shot.alpha[:, :, -3:] == 0).all()


def test_foreground_is_textured_and_differs_from_plate(shot):
    solid = shot.alpha[0] == 1
    fg = shot.foreground[0][solid]
    assert fg.std(axis=0).min() > 0.02
    assert np.abs(fg - shot.plate[solid]).mean() > 0.1


def test_background_is_textured():
    rng = np.random.default_rng(3)
    bg = make_background(200, 120, rng)
    assert bg.shape == (120, 200, 3) and bg.dtype == np.float32
    assert bg.min() >= 0 and bg.max() <= 1
    assert bg.std(axis=(0, 1)).min() > 0.03
    assert np.abs(np.diff(bg, axis=1)).mean() > 0.002


def test_trimap(shot):
    for alpha in shot.alpha:
        trimap = trimap_from_alpha(alpha, band=5)
        assert trimap.shape == alpha.shape and trimap.dtype == np.uint8
        assert set(np.unique(trimap)) <= {0, 128, 255}
        fractional = (alpha > 0) & (alpha < 1)
        assert (trimap[fractional] == 128).all()
        assert (alpha[trimap == 255] == 1).all()
        assert (alpha[trimap == 0] == 0).all()
        assert (trimap == 255).any() and (trimap == 0).any()


def test_trimap_band_and_hard_edges():
    alpha = np.zeros((40, 40), np.float32)
    alpha[10:30, 10:30] = 1  # a hard edge with no fractional pixels
    trimap = trimap_from_alpha(alpha, band=3)
    assert trimap[20, 20] == 255 and trimap[0, 0] == 0
    assert trimap[20, 10] == 128 and trimap[20, 9] == 128
    assert trimap[20, 6] == 128 and trimap[20, 5] == 0
    assert trimap[20, 13] == 128 and trimap[20, 14] == 255
    wider = trimap_from_alpha(alpha, band=6)
    assert (wider == 128).sum() > (trimap == 128).sum()


def test_full_hd_single_frame():
    shot = make_shot(width=1920, height=1080, frames=1, seed=1)
    assert shot.image.shape == (1, 1080, 1920, 3)
    assert ((shot.alpha > 0.05) & (shot.alpha < 0.95)).mean() > 0.005
    a = shot.alpha[..., None]
    np.testing.assert_allclose(shot.image, a * shot.foreground + (1 - a) * shot.plate,
                               rtol=0, atol=1e-6)
