"""Hand-held plate alignment (models/align.py) on generated shots: a known homography is recovered,
aligning a warped plate restores the difference key, and untrustworthy plates are refused."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from models import align, metrics
from models.classical.difference import difference_key
from training.synthetic import make_shot, trimap_from_alpha

W, H, MARGIN = 240, 160, 16


@pytest.fixture(scope="module")
def frame():
    """A generated frame with MARGIN px of extra plate around it (what a hand-held camera sees
    beyond the take's frame): (image, alpha, plate) of the frame, and the wider plate."""
    shot = make_shot(W + 2 * MARGIN, H + 2 * MARGIN, 1, seed=5)
    crop = (slice(MARGIN, MARGIN + H), slice(MARGIN, MARGIN + W))
    return shot.image[0][crop], shot.alpha[0][crop], shot.plate[crop], shot.plate


def hand_held(wide: np.ndarray, hom: np.ndarray) -> np.ndarray:
    """The plate a camera moved by `hom` (its pixels -> the take's pixels) sees, from the wide plate."""
    offset = np.array([[1, 0, MARGIN], [0, 1, MARGIN], [0, 0, 1]], dtype=np.float64)
    return cv2.warpPerspective(wide, offset @ hom, (W, H), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)


def wobble(degrees: float, dx: float, dy: float, tilt: float = 0.0) -> np.ndarray:
    """A hand-held move: rotation about the frame centre, shift (px), a little perspective."""
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    cx, cy = (W - 1) / 2, (H - 1) / 2
    hom = np.array([[c, -s, cx + dx - c * cx + s * cy], [s, c, cy + dy - s * cx - c * cy], [tilt, -tilt, 1.0]])
    return hom / hom[2, 2]


def corner_error(a: np.ndarray, b: np.ndarray) -> float:
    corners = np.array([[0, 0, 1], [W - 1, 0, 1], [W - 1, H - 1, 1], [0, H - 1, 1]], dtype=np.float64)
    pa, pb = corners @ a.T, corners @ b.T
    return float(np.max(np.linalg.norm(pa[:, :2] / pa[:, 2:] - pb[:, :2] / pb[:, 2:], axis=1)))


def test_recovers_a_known_homography(frame):
    image, _, _, wide = frame
    true = wobble(0.7, 3.3, -2.4, tilt=2e-5)
    result = align.estimate(image, hand_held(wide, true))
    assert result.ok, result.message
    assert corner_error(result.homography, true) < 0.5
    assert result.shift_px == pytest.approx(align.corner_shift(true, H, W), abs=0.5)
    assert result.inliers >= align.MIN_INLIERS and "aligned" in result.message


def test_alignment_brings_the_difference_key_back(frame):
    image, alpha, plate, wide = frame
    trimap = trimap_from_alpha(alpha, band=6)
    hand = hand_held(wide, wobble(-0.6, -2.7, 3.1))

    def sad(p: np.ndarray) -> float:
        return metrics.evaluate(difference_key(image, p), alpha, trimap)["sad"]

    aligned = align.warp(hand, align.estimate(image, hand))
    assert sad(hand) > 1.3 * sad(plate)
    assert sad(aligned) < 1.1 * sad(plate)


def test_a_locked_off_plate_gives_the_identity(frame):
    image, _, plate, _ = frame
    drift = np.clip(0.92 * plate + 0.01 * np.random.default_rng(0).standard_normal(plate.shape), 0, 1)
    result = align.estimate(image, drift.astype(np.float32))
    assert result.ok, result.message
    assert result.shift_px < 0.1  # grain and exposure drift leave a few hundredths of a pixel
    assert corner_error(result.homography, np.eye(3)) == pytest.approx(result.shift_px)


def test_a_flat_plate_is_refused(frame):
    image = frame[0]
    flat = np.full_like(image, 0.5)
    result = align.estimate(image, flat)
    assert not result.ok and result.homography is None
    assert "features" in result.message and "--align-plate" in result.message
    assert np.array_equal(align.warp(flat, result), flat)


def test_a_move_far_beyond_a_wobble_is_refused(frame):
    image, _, plate, _ = frame
    shifted = np.ascontiguousarray(np.roll(plate, 24, axis=1))  # 24 px: over 5 % of the diagonal
    result = align.estimate(image, shifted)
    assert not result.ok and "hand-held" in result.message
    assert result.shift_px > 0.05 * np.hypot(W, H)


def test_warp_keeps_shape_and_any_channel_count(frame):
    image, _, _, wide = frame
    result = align.estimate(image, hand_held(wide, wobble(0.3, 1.5, 1.0)))
    planes = np.random.default_rng(1).random((H, W, 5))
    out = align.warp(planes, result)
    assert out.shape == (H, W, 5) and out.dtype == np.float32
    assert np.abs(out - planes).max() > 0  # resampled
    with pytest.raises(ValueError):
        align.estimate(image, image[:-1])
