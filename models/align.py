"""Aligning a hand-held clean plate to the image: ORB features, RANSAC, then a robust dense refinement.

A plate shot on a hand-held camera is a few pixels (and a fraction of a degree) off the take.
`estimate` finds the homography that maps plate pixels onto the image from the background alone:

1. Both frames become grey, downscaled so the long side is at most `max_side` (speed). ORB features
   are matched (Hamming distance, ratio test) and RANSAC fits a rotation + scale + translation: the
   foreground has no counterpart in the plate, so its matches are outliers. (A RANSAC homography,
   8 parameters, extrapolated to the corners by up to 60 px when the background matches crowd into
   one part of the frame; the 4-parameter fit stays within a few px.)
2. A coarse-to-fine Gauss-Newton fit of the full homography plus a grey gain and offset (the plate's
   exposure drift) refines it to sub-pixel accuracy, with Tukey weights on the residual: where the
   warped plate still differs strongly from the image (the foreground) the weight is 0, so the
   foreground is masked out at every iteration. This replaces cv2.findTransformECC, which on the
   validation composites diverged (10 to 400 px) whenever a thresholded difference mask let part of
   a large foreground through; ECC has no robust weighting.

An alignment is refused (ok=False, with a message saying what to do) when there are too few inliers,
when the refined homography disagrees with the feature matches, when it is degenerate (a flip or a
collapse), or when it moves a frame corner by more than `max_shift` of the frame diagonal: far beyond
a hand-held wobble, not the same set-up.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np

#: the long side frames are matched at (pixels)
MAX_SIDE = 1024
#: fewest RANSAC inliers of a trustworthy fit
MIN_INLIERS = 20
#: largest corner displacement accepted, as a fraction of the frame diagonal
MAX_SHIFT = 0.05
#: RANSAC reprojection threshold at the matching size (pixels)
RANSAC_PX = 2.0
#: ORB features per frame (2000 left 1 of 32 composites with too few background matches when the
#: foreground took most of them), and Lowe's ratio test
FEATURES, RATIO = 4000, 0.8
#: dense refinement: coarsest pyramid level's long side (px), Gauss-Newton steps per level, pixels
#: used per step (the strongest image gradients), Tukey constant at the start and its least value
#: (grey levels in [0, 1]); a level stops when no pixel moves more than STOP_PX
COARSEST, STEPS, PIXELS, TUKEY, TUKEY_MIN, STOP_PX = 96, 12, 40000, 0.15, 0.02, 0.005
_ADVICE = "check that the plate is a sharp plate of this set-up, or matte without --align-plate"


@dataclass(frozen=True)
class Alignment:
    """ok: False when there is no trustworthy alignment (callers matte with the plate as given and
    report `message`); inliers: feature matches the final homography agrees with; shift_px: the largest displacement of
    a frame corner under the homography (image pixels); message: why it failed, or a one-line summary;
    homography: (3, 3) float64 mapping plate pixel coordinates to image pixel coordinates (pixel
    centres at integers, cv2's convention), None when not ok."""

    ok: bool
    inliers: int
    shift_px: float
    message: str
    homography: np.ndarray | None


def estimate(image: np.ndarray, plate: np.ndarray, max_side: int = MAX_SIDE,
             max_shift: float = MAX_SHIFT) -> Alignment:
    """The homography that maps `plate` onto `image`.

    image, plate: (H, W, 3) float32 in [0, 1], display-referred (what models see), of one size.
    max_side: long side the frames are matched at; max_shift: see MAX_SHIFT.
    Raises ValueError when the two are not (H, W, 3) arrays of one shape.
    """
    if image.shape != plate.shape or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image and plate must be (H, W, 3) of one shape, got {image.shape} and {plate.shape}")
    start = time.perf_counter()
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    src, ref = _grey(plate, scale), _grey(image, scale)
    fit = _features(src, ref)
    if isinstance(fit, str):
        return _refused(fit)
    sim, a, b = fit
    hom = _refine(ref, src, sim)
    inliers = int(np.sum(np.linalg.norm(_project(hom, a) - b, axis=1) < RANSAC_PX))
    if inliers < MIN_INLIERS:
        return _refused(f"the dense fit disagrees with the feature matches ({inliers} of {len(a)} agree): the "
                        f"plate may not show the image's background; {_ADVICE}", inliers)
    hom = _rescale(hom, scale)
    shift = corner_shift(hom, h, w)
    if not _proper(hom, h, w):
        return _refused(f"the plate-to-image homography is degenerate (flipped or collapsed); {_ADVICE}",
                        inliers, shift)
    if shift > max_shift * float(np.hypot(h, w)):
        return _refused(f"the plate would move {shift:.0f} px (more than {max_shift:.0%} of the frame "
                        f"diagonal): not a hand-held wobble; {_ADVICE}", inliers, shift)
    ms = (time.perf_counter() - start) * 1000
    return Alignment(True, inliers, shift, f"plate aligned: {inliers} inliers, shift {shift:.2f} px "
                                           f"({ms:.0f} ms)", hom)


def warp(plate: np.ndarray, alignment: Alignment) -> np.ndarray:
    """(H, W, C) float plate -> (H, W, C) float32 resampled onto the image grid (bilinear, border
    replicated); the plate unchanged (as float32) when not alignment.ok."""
    plate = np.asarray(plate, dtype=np.float32)
    if not alignment.ok:
        return plate
    h, w = plate.shape[:2]
    chunks = [plate[..., i:i + 4] for i in range(0, plate.shape[2], 4)]  # cv2 warps up to 4 channels
    out = [cv2.warpPerspective(c, alignment.homography, (w, h), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE).reshape(h, w, -1) for c in chunks]
    return np.concatenate(out, axis=2)


def corner_shift(hom: np.ndarray, height: int, width: int) -> float:
    """The largest distance (pixels) a corner of a height x width frame moves under (3, 3) `hom`."""
    corners = _corners(height, width)
    return float(np.max(np.linalg.norm(_project(hom, corners) - corners, axis=1)))


def _grey(img: np.ndarray, scale: float) -> np.ndarray:
    """(H, W, 3) float in [0, 1] -> (h, w) float32 grey in [0, 1], area-downscaled by `scale` (<= 1)."""
    grey = cv2.cvtColor(np.clip(img, 0, 1).astype(np.float32, copy=False), cv2.COLOR_RGB2GRAY)
    if scale < 1:
        size = (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    return grey


def _features(src: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | str:
    """RANSAC rotation + scale + translation from ORB matches of src (plate) to ref (image), both
    (h, w) float32 grey: ((3, 3) float64, its inliers' (N, 2) float64 points in src and in ref), or
    the reason there is none."""
    orb = cv2.ORB_create(nfeatures=FEATURES, fastThreshold=3)  # low: smooth plates still yield corners
    kp_src, des_src = orb.detectAndCompute(np.rint(src * 255).astype(np.uint8), None)
    kp_ref, des_ref = orb.detectAndCompute(np.rint(ref * 255).astype(np.uint8), None)
    if des_src is None or des_ref is None or min(len(kp_src), len(kp_ref)) < MIN_INLIERS:
        return (f"too few features ({0 if des_src is None else len(kp_src)} in the plate): a flat or "
                f"blurred plate cannot be aligned; {_ADVICE}")
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(des_src, des_ref, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < RATIO * p[1].distance]
    if len(good) < MIN_INLIERS:
        return f"only {len(good)} features match between plate and image; {_ADVICE}"
    a = np.float64([kp_src[m.queryIdx].pt for m in good])
    b = np.float64([kp_ref[m.trainIdx].pt for m in good])
    sim, keep = cv2.estimateAffinePartial2D(a, b, method=cv2.RANSAC, ransacReprojThreshold=RANSAC_PX,
                                            maxIters=4000, confidence=0.999)
    keep = np.zeros(len(a), bool) if keep is None else keep.ravel() > 0
    if sim is None or keep.sum() < MIN_INLIERS:
        return f"only {keep.sum()} consistent matches between plate and image (need {MIN_INLIERS}); {_ADVICE}"
    return np.vstack([sim, [0.0, 0.0, 1.0]]), a[keep], b[keep]


def _refine(ref: np.ndarray, src: np.ndarray, hom: np.ndarray) -> np.ndarray:
    """hom (3, 3) src -> ref refined: coarse to fine over an image pyramid of ref (image) and src
    (plate), both (h, w) float32 grey in [0, 1]. At each level, Gauss-Newton steps fit the homography
    and a grey gain and offset; residuals beyond the Tukey constant (the foreground) weigh nothing,
    and the constant shrinks to 4.685 robust sigmas of the weighted residuals (never below TUKEY_MIN).
    The coarsest level fits an affine map only: perspective is poorly determined there, where the
    foreground may cover most of a small frame (it moved corners by up to 3 px on the composites)."""
    levels = [(ref, src)]
    while max(levels[-1][0].shape) >= 2 * COARSEST:
        levels.append((cv2.pyrDown(levels[-1][0]), cv2.pyrDown(levels[-1][1])))
    photo, tukey = np.array([1.0, 0.0]), TUKEY
    for level in range(len(levels) - 1, -1, -1):
        r, p = levels[level]
        to_level = _scaling(2.0 ** -level)
        h_level = to_level @ hom @ np.linalg.inv(to_level)
        h_level, photo, tukey = _gauss_newton(r, p, h_level, photo, tukey, affine=level == len(levels) - 1)
        hom = np.linalg.inv(to_level) @ h_level @ to_level
        hom /= hom[2, 2]
    return hom


def _gauss_newton(ref: np.ndarray, src: np.ndarray, hom: np.ndarray, photo: np.ndarray,
                  tukey: float, affine: bool = False) -> tuple[np.ndarray, np.ndarray, float]:
    """Up to STEPS robust Gauss-Newton steps at one level: ref(x) ~ gain * src(hom^-1 x) + offset
    (affine: the perspective terms stay as they are).

    The update composes on the left, hom <- (I + D) hom, D a homography increment in coordinates
    centred on the frame and scaled to [-1, 1], so the 8 + 2 unknowns are of one magnitude."""
    h, w = ref.shape
    s = max(h, w) / 2
    centre = np.array([[1 / s, 0, -(w - 1) / 2 / s], [0, 1 / s, -(h - 1) / 2 / s], [0, 0, 1]])
    gy, gx = np.gradient(ref)
    strength = np.hypot(gx, gy).ravel()
    idx = np.argsort(strength)[-PIXELS:] if strength.size > PIXELS else np.arange(strength.size)
    y, x = np.divmod(idx, w)
    x, y = ((x - (w - 1) / 2) / s).astype(np.float32), ((y - (h - 1) / 2) / s).astype(np.float32)
    target = ref.ravel()[idx]
    ones = np.ones(h * w, np.uint8).reshape(h, w)
    for _ in range(STEPS):
        warped = cv2.warpPerspective(src, hom, (w, h), flags=cv2.INTER_LINEAR)
        valid = cv2.erode(cv2.warpPerspective(ones, hom, (w, h), flags=cv2.INTER_NEAREST), np.ones((3, 3)))
        wy, wx = np.gradient(warped)
        gx, gy, v = wx.ravel()[idx] * s, wy.ravel()[idx] * s, warped.ravel()[idx]
        err = target - (photo[0] * v + photo[1])
        u = err / tukey
        weight = np.where(np.abs(u) < 1, (1 - u * u) ** 2, 0).astype(np.float32) * valid.ravel()[idx]
        if np.count_nonzero(weight) < 10 * MIN_INLIERS:
            break
        root = np.sqrt(weight)
        jac = np.empty((len(v), 10), np.float32)  # rows scaled by sqrt(weight): A = J^T J is one syrk
        for i, col in enumerate((gx * x, gx * y, gx, gy * x, gy * y, gy)):
            jac[:, i] = -photo[0] * col * root
        radial = (gx * x + gy * y) * root
        jac[:, 6], jac[:, 7] = photo[0] * x * radial, photo[0] * y * radial
        if affine:
            jac[:, 6:8] = 0
        jac[:, 8], jac[:, 9] = v * root, root
        step = np.linalg.solve(jac.T @ jac + 1e-6 * np.eye(10), jac.T @ (err * root))
        inc = np.append(step[:8], 0.0).reshape(3, 3)
        hom = np.linalg.inv(centre) @ (np.eye(3) + inc) @ centre @ hom
        hom /= hom[2, 2]
        photo = photo + step[8:]
        kept = np.abs(err[weight > 0])
        tukey = min(tukey, max(4.685 * 1.4826 * float(np.median(kept)), TUKEY_MIN))
        if np.abs(step[:8]).max() * s < STOP_PX:
            break
    return hom, photo, tukey


def _scaling(scale: float) -> np.ndarray:
    """(3, 3) map of pixel coordinates of a frame to those of the frame resized by `scale` (pixel
    centres: x_small = scale (x + 0.5) - 0.5)."""
    return np.array([[scale, 0, 0.5 * scale - 0.5], [0, scale, 0.5 * scale - 0.5], [0, 0, 1]])


def _rescale(hom: np.ndarray, scale: float) -> np.ndarray:
    """A homography between frames downscaled by `scale` -> the same one at full size."""
    full = np.linalg.inv(_scaling(scale)) @ hom @ _scaling(scale)
    return full / full[2, 2]


def _proper(hom: np.ndarray, height: int, width: int) -> bool:
    """Whether hom keeps the frame a convex, unflipped quadrilateral of 0.5x to 2x its area."""
    q = _project(hom, _corners(height, width))
    edges = np.roll(q, -1, axis=0) - q
    turns = edges[:, 0] * np.roll(edges, -1, axis=0)[:, 1] - edges[:, 1] * np.roll(edges, -1, axis=0)[:, 0]
    area = 0.5 * np.sum(q[:, 0] * np.roll(q[:, 1], -1) - np.roll(q[:, 0], -1) * q[:, 1])
    full = (height - 1) * (width - 1)
    return bool(np.all(turns > 0) and 0.5 * full < area < 2 * full)


def _corners(height: int, width: int) -> np.ndarray:
    """(4, 2) float64 corner pixel centres, clockwise on screen (y down)."""
    return np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], dtype=np.float64)


def _project(hom: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """(N, 2) points through (3, 3) hom."""
    p = np.hstack([pts, np.ones((len(pts), 1))]) @ hom.T
    return p[:, :2] / p[:, 2:]


def _refused(message: str, inliers: int = 0, shift: float = 0.0) -> Alignment:
    return Alignment(False, inliers, shift, message, None)
