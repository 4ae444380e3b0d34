"""Tests for models.metrics: hand-worked values and an independent gradient reference."""
from __future__ import annotations

import math

import numpy as np
import pytest

from models.metrics import (
    connectivity_error,
    evaluate,
    gaussian_gradient_kernel,
    gradient_error,
    mse,
    sad,
)


def f32(rows) -> np.ndarray:
    return np.array(rows, dtype=np.float32)


def all_unknown(a: np.ndarray) -> np.ndarray:
    return np.ones(a.shape, dtype=bool)


# --- SAD / MSE ---------------------------------------------------------------------------------


def test_sad_and_mse_by_hand():
    pred = np.array([[0, 255], [51, 102]], np.uint8)
    gt = np.array([[0, 0], [102, 0]], np.uint8)
    trimap = np.array([[128, 128], [128, 0]], np.uint8)
    # U = the first three pixels; |P - T| / 255 there = 0, 1, 0.2. The 102-vs-0 pixel is outside U.
    # SAD = 1.2 -> 0.0012 reported; MSE = (0 + 1 + 0.04) / 3.
    m = evaluate(pred, gt, trimap)
    assert m["sad"] == pytest.approx(1.2 / 1000, rel=1e-6)
    assert m["mse"] == pytest.approx(1.04 / 3, rel=1e-6)
    unknown = trimap == 128
    assert sad(pred.astype(np.float32), gt.astype(np.float32), unknown) == pytest.approx(1.2, rel=1e-6)
    assert mse(pred.astype(np.float32), gt.astype(np.float32), unknown) == pytest.approx(1.04 / 3, rel=1e-6)


def test_identical_mattes_give_zero():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 256, (16, 16), dtype=np.uint8)
    trimap = rng.choice(np.array([0, 128, 255], np.uint8), (16, 16))
    m = evaluate(gt, gt.copy(), trimap)
    assert m == {"sad": 0.0, "mse": 0.0, "grad": 0.0, "conn": 0.0}
    assert all(type(v) is float for v in m.values())


def test_difference_outside_unknown_region_gives_zero():
    rng = np.random.default_rng(1)
    gt = rng.integers(0, 256, (24, 24), dtype=np.uint8)
    gt[0, 23], gt[1, 23] = 0, 255  # both mattes span 0..255, so mat2gray is the same for both
    pred = gt.copy()
    pred[18:, 18:] = 255 - gt[18:, 18:]
    trimap = np.full((24, 24), 255, np.uint8)
    trimap[:12, :12] = 128  # 7 px from the changed block: beyond the 9x9 kernel's reach of 4
    assert evaluate(pred, gt, trimap) == {"sad": 0.0, "mse": 0.0, "grad": 0.0, "conn": 0.0}


def test_empty_unknown_region_gives_zero():
    pred = np.full((5, 5), 255, np.uint8)
    gt = np.zeros((5, 5), np.uint8)
    trimap = np.where(np.arange(25).reshape(5, 5) % 2, 0, 255).astype(np.uint8)
    assert evaluate(pred, gt, trimap) == {"sad": 0.0, "mse": 0.0, "grad": 0.0, "conn": 0.0}


# --- Connectivity ------------------------------------------------------------------------------


def test_connectivity_by_hand_largest_component_only():
    t = f32([[255, 255, 0], [255, 0, 255], [0, 0, 166]])
    p = f32([[255, 255, 0], [255, 0, 255], [255, 0, 255]])
    # {p >= th and t >= th}: A = {(0,0), (0,1), (1,0)} and B = {(1,2), (2,2)} for th <= 0.6, A and
    # {(1,2)} above (166/255 = 0.651). 4-connected, A (3 px) is always Omega, so every other pixel
    # gets l = 0 at th = 0.1 and A ends at l = 1 (phi_p = phi_t = 1 there).
    # (2,0): p = 1, t = 0, l = 0: phi_p = 1 - 1 = 0, phi_t = 1         -> 1
    # (2,2): p = 1, t = 166/255, l = 0: phi_p = 0, phi_t = 1 - 166/255 -> 89/255
    # Everything else has p == t. Total 1 + 89/255 = 344/255.
    # Wrong answers this catches:
    #  - label 0 counted: the 4 background px outnumber A, Omega = background, (2,0) keeps l = 1
    #    (phi_p = phi_t = 1), total 89/255;
    #  - 8-connectivity or all components as Omega: (2,2) leaves at th = 0.7, l = 0.6,
    #    phi_p = 0.6, phi_t = 1 (d_t = 0.051 < 0.15), total 1 + 0.4.
    assert connectivity_error(p, t, all_unknown(p)) == pytest.approx(344 / 255, rel=1e-6)
    trimap = np.full((3, 3), 128, np.uint8)
    assert evaluate(p.astype(np.uint8), t.astype(np.uint8), trimap)["conn"] == pytest.approx(
        344 / 255 / 1000, rel=1e-6
    )


def test_connectivity_background_label_never_competes():
    # One row: p = t = 1 on {0, 1} and {5}; background {2, 3, 4} is the biggest label but not a
    # component. Omega = {0, 1}; pixel 4 (p = 1, t = 0, l = 0) gives phi_p = 0, phi_t = 1 -> 1.
    # Omega = background would leave pixel 4 at l = 1 (phi_p = phi_t = 1) and a total of 0.
    t = f32([[255, 255, 0, 0, 0, 255]])
    p = f32([[255, 255, 0, 0, 255, 255]])
    assert connectivity_error(p, t, all_unknown(p)) == pytest.approx(1.0, rel=1e-6)


def test_connectivity_float32_threshold_153_passes_0_6():
    # 153/255 is 0.6 in float32 and passes th = 0.6, so pixel 2 leaves at th = 0.7 with l = 0.6:
    # phi_t = 1 (d_t = 0), phi_p = 1 - 0.4 = 0.6 -> 0.4. The others have p == t.
    # With float64 thresholds (0.6000000000000001) it would leave one level early, l = 0.5:
    # phi_t = 1 (d_t = 0.1 < 0.15), phi_p = 0.5 -> 0.5.
    assert 153 / 255 < np.arange(0, 1.1, 0.1)[6]  # the float64 trap this guards against
    p = f32([[255, 255, 255]])
    t = f32([[255, 255, 153]])
    assert connectivity_error(p, t, all_unknown(p)) == pytest.approx(0.4, abs=1e-6)


def test_connectivity_tie_goes_to_first_component_in_column_major_order():
    t = f32([[0, 255, 166], [0, 0, 0], [255, 255, 0]])
    p = f32([[0, 255, 255], [0, 0, 0], [255, 255, 0]])
    # For th <= 0.6, C1 = {(0,1), (0,2)} and C2 = {(2,0), (2,1)} tie at 2 px. MATLAB's bwconncomp
    # numbers components in column-major order, so C2 (column 0) wins: C1 gets l = 0 and (0,2)
    # gives phi_p = 0, phi_t = 1 - 166/255 -> 89/255. Picking C1 (row-major order) would give
    # (0,2) l = 0.6 and 0.4 instead.
    assert connectivity_error(p, t, all_unknown(p)) == pytest.approx(89 / 255, rel=1e-6)


def test_connectivity_skips_empty_levels():
    # p = 0.6, t = 0.8 everywhere: one component until th = 0.6, nothing from th = 0.7 on. The empty
    # levels are skipped, so no pixel ever leaves Omega: l = 1, d < 0, phi_p = phi_t = 1 -> 0.
    # Treating an empty level as "Omega = {}" would set l = 0.6 and give 0.2 per pixel.
    p = np.full((2, 3), 153, np.float32)
    t = np.full((2, 3), 204, np.float32)
    assert connectivity_error(p, t, all_unknown(p)) == 0.0


# --- Gradient ----------------------------------------------------------------------------------


def test_gradient_kernel_shape_norm_symmetry():
    hx = gaussian_gradient_kernel()
    assert hx.shape == (9, 9) and hx.dtype == np.float32
    assert np.sqrt(np.sum(hx.astype(np.float64) ** 2)) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_array_equal(hx[:, ::-1], -hx)  # odd in x
    np.testing.assert_array_equal(hx[::-1, :], hx)  # even in y
    assert hx[4, 3] > 0 > hx[4, 5]  # G'(u) = -u G(u) / sigma^2: positive left of the centre


def test_gradient_of_constant_mattes_is_zero():
    p = np.full((10, 10), 100, np.float32)
    t = np.full((10, 10), 200, np.float32)
    with np.errstate(all="raise"):
        assert gradient_error(p, t, all_unknown(p)) == 0.0


def reference_gradient_error(p: np.ndarray, t: np.ndarray, unknown: np.ndarray) -> float:
    """Straight from the spec, float64, explicit kernel loops and padding."""
    sigma, eps = 1.4, 0.01
    half = math.ceil(sigma * math.sqrt(-2 * math.log(math.sqrt(2 * math.pi) * sigma * eps)))
    size = 2 * half + 1

    def gauss(x):
        return math.exp(-x * x / (2 * sigma * sigma)) / (sigma * math.sqrt(2 * math.pi))

    hx = np.zeros((size, size))
    for i in range(size):
        for j in range(size):
            hx[i, j] = gauss(i - half) * (-(j - half) * gauss(j - half) / sigma**2)
    hx /= math.sqrt(sum(v * v for v in hx.ravel()))
    hy = hx.T

    def conv_replicate(img, k):
        h, w = img.shape
        padded = np.pad(img, half, mode="edge")
        out = np.zeros_like(img)
        for i in range(size):  # convolution: out[y, x] = sum k[i, j] img[y - (i - half), x - (j - half)]
            for j in range(size):
                out += k[i, j] * padded[2 * half - i : 2 * half - i + h, 2 * half - j : 2 * half - j + w]
        return out

    def magnitude(a):
        a = a.astype(np.float64)
        g = (a - a.min()) / (a.max() - a.min())
        return np.sqrt(conv_replicate(g, hx) ** 2 + conv_replicate(g, hy) ** 2)

    return float(np.sum(((magnitude(p) - magnitude(t)) ** 2)[unknown]))


def test_gradient_matches_independent_reference():
    rng = np.random.default_rng(2)
    t = rng.integers(0, 256, (12, 10)).astype(np.float32)
    p = np.clip(t + rng.normal(0, 40, t.shape), 10, 240).round().astype(np.float32)  # min/max != 0/255
    unknown = rng.random(t.shape) < 0.5
    expected = reference_gradient_error(p, t, unknown)
    assert expected > 0.1
    assert gradient_error(p, t, unknown) == pytest.approx(expected, rel=1e-4)


# --- Input handling ----------------------------------------------------------------------------


def test_float_mattes_equal_their_8bit_quantisation():
    rng = np.random.default_rng(3)
    pred = rng.uniform(-0.2, 1.2, (16, 16))
    gt = rng.uniform(0, 1, (16, 16)).astype(np.float32)
    gt[0, :3] = [0.6, 153 / 255, 0.5]
    trimap = rng.choice(np.array([0, 128, 255], np.uint8), (16, 16))

    def quantise(a):
        return np.rint(np.clip(a, 0, 1) * 255).astype(np.uint8)

    assert evaluate(pred, gt, trimap) == evaluate(quantise(pred), quantise(gt), trimap)


def test_float_trimap_equals_8bit_trimap():
    rng = np.random.default_rng(4)
    pred = rng.integers(0, 256, (16, 16), dtype=np.uint8)
    gt = rng.integers(0, 256, (16, 16), dtype=np.uint8)
    codes = rng.integers(0, 3, (16, 16))
    tri8 = np.array([0, 128, 255], np.uint8)[codes]
    expected = evaluate(pred, gt, tri8)
    assert expected["sad"] > 0
    assert evaluate(pred, gt, np.array([0.0, 0.5, 1.0])[codes]) == expected
    assert evaluate(pred, gt, np.array([0, 128 / 255, 1], np.float32)[codes]) == expected


@pytest.mark.parametrize(
    "shapes",
    [((4, 4), (4, 5), (4, 4)), ((4, 4), (4, 4), (5, 4)), ((4, 4, 1), (4, 4, 1), (4, 4, 1))],
)
def test_bad_shapes_raise_value_error(shapes):
    p, t, tri = (np.zeros(s, np.uint8) for s in shapes)
    with pytest.raises(ValueError, match="shape"):
        evaluate(p, t, tri)


def test_unsupported_dtype_raises_type_error():
    a = np.zeros((4, 4), np.int32)
    with pytest.raises(TypeError, match="uint8"):
        evaluate(a, np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8))
