"""Alpha matting error metrics: SAD, MSE, gradient and connectivity error.

The four measures of Rhemann et al., "A Perceptually Motivated Online Benchmark for Image Matting"
(CVPR 2009), computed with the conventions of the Deep Image Matting (Xu et al., CVPR 2017) MATLAB
evaluation code, which produced the numbers in the published image-matting tables, so that our
figures can stand beside them. The exact definitions are in the project's METRICS.md spec.

Conventions:

- Mattes are 8-bit, 0..255. Float mattes in [0, 1] are quantised first: rint(clip(x, 0, 1) * 255).
- Only the unknown region U of the trimap counts (value 128; 0.5 for a float trimap, which is
  quantised the same way, so 0.5 and 128/255 both mean unknown).
- Arithmetic is float32, like MATLAB's single precision. This is not cosmetic: 153/255 equals the
  connectivity threshold 0.6 in float32 but falls just below it in float64.
- Reported scale ("paper scale"): SAD, gradient and connectivity divided by 1000, MSE as the mean
  over U. An empty U gives 0.0 for all four (MSE would otherwise be 0/0).

These are trimap-region numbers; they are not comparable with the whole-image MAD/MSE x 1e3 that
video-matting papers report.

Temporal stability (`dtssd`) follows instead the video-matting convention of
RobustVideoMatting's evaluation (Lin et al., WACV 2022; its evaluation/evaluate_lr.py), whole frames,
alpha in [0, 1]:

    dtSSD_t = 100 * sqrt( sum over the N pixels of ((pred_t - pred_t-1) - (true_t - true_t-1))^2 / N )

one figure per pair of consecutive frames (t-1, t); a sequence's figure is their mean. A matte that
flickers where the ground truth holds still, or holds still where it moves, scores high; a matte that
is wrong by the same amount in every frame scores 0 (SAD shows that one). RVM reads 8-bit PNGs, so
mattes are quantised to 8 bits first here too, as for the other metrics. RVM's spreadsheet also counts
a 0 for the first frame in its per-clip mean; we average over the pairs only, so its mean over T frames
is ours times (T - 1) / T.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

#: trimap value of the unknown region, the only pixels the metrics look at
UNKNOWN = 128

_SIGMA = 1.4  # derivative-of-Gaussian scale for the gradient error
_EPS = 0.01  # kernel truncation: half size where the Gaussian falls to eps
_THRESHOLDS = np.arange(0, 11, dtype=np.float32) / np.float32(10)  # 0, 0.1, ..., 1 in float32
_THETA = np.float32(0.15)  # connectivity: distances below theta count as fully connected


def evaluate(pred: np.ndarray, gt: np.ndarray, trimap: np.ndarray) -> dict[str, float]:
    """All four metrics at paper scale.

    pred, gt: (H, W) uint8 in 0..255, or float in [0, 1] (quantised to 8 bits).
    trimap: (H, W) uint8 with 0 / 128 / 255, or float with 0 / 0.5 / 1; unknown = 128 (0.5).
    Returns {"sad": SAD / 1000, "mse": MSE over U, "grad": gradient error / 1000,
    "conn": connectivity error / 1000} as Python floats; all 0.0 when U is empty.
    Raises ValueError when the three are not 2-D arrays of one shape, TypeError on other dtypes.
    """
    arrays = {"pred": np.asarray(pred), "gt": np.asarray(gt), "trimap": np.asarray(trimap)}
    shapes = {name: a.shape for name, a in arrays.items()}
    if len(set(shapes.values())) != 1 or arrays["pred"].ndim != 2 or arrays["pred"].size == 0:
        raise ValueError(f"pred, gt and trimap must be non-empty (H, W) arrays of one shape, got {shapes}")
    p, t, tri = (_to_8bit(a, name) for name, a in arrays.items())
    unknown = tri == UNKNOWN
    return {
        "sad": sad(p, t, unknown) / 1000,
        "mse": mse(p, t, unknown),
        "grad": gradient_error(p, t, unknown) / 1000,
        "conn": connectivity_error(p, t, unknown) / 1000,
    }


def dtssd(pred_t: np.ndarray, pred_prev: np.ndarray, true_t: np.ndarray, true_prev: np.ndarray) -> float:
    """dtSSD of one pair of consecutive frames (RVM's scale: 100 * root mean square, see above).

    Each: (H, W) uint8 0..255 or float in [0, 1] (quantised to 8 bits), all of one shape; the whole
    frame counts. Raises ValueError on shapes that differ or are not 2-D.
    """
    arrays = {"pred_t": pred_t, "pred_prev": pred_prev, "true_t": true_t, "true_prev": true_prev}
    arrays = {name: np.asarray(a) for name, a in arrays.items()}
    shapes = {name: a.shape for name, a in arrays.items()}
    if len(set(shapes.values())) != 1 or arrays["pred_t"].ndim != 2 or arrays["pred_t"].size == 0:
        raise ValueError(f"dtSSD needs four non-empty (H, W) mattes of one shape, got {shapes}")
    p, pp, t, tp = (_to_8bit(a, name) for name, a in arrays.items())
    d = ((p - pp) - (t - tp)) / np.float32(255)  # differences of 8-bit levels: exact in float32
    return float(np.sqrt(np.mean(d * d, dtype=np.float32)) * np.float32(100))


def sad(p: np.ndarray, t: np.ndarray, unknown: np.ndarray) -> float:
    """Sum over U of |p - t| / 255 (unscaled; tables divide by 1000).

    p, t: (H, W) float32 holding 8-bit values 0..255. unknown: (H, W) bool, the region U.
    """
    p, t, unknown = _f32(p), _f32(t), np.asarray(unknown, dtype=bool)
    return float(np.sum(np.abs(p - t)[unknown] / np.float32(255), dtype=np.float32))


def mse(p: np.ndarray, t: np.ndarray, unknown: np.ndarray) -> float:
    """Mean over U of ((p - t) / 255)^2; 0.0 when U is empty.

    p, t: (H, W) float32 holding 8-bit values 0..255. unknown: (H, W) bool, the region U.
    """
    p, t, unknown = _f32(p), _f32(t), np.asarray(unknown, dtype=bool)
    if not unknown.any():
        return 0.0
    d = (p - t)[unknown] / np.float32(255)
    return float(np.mean(d * d, dtype=np.float32))


def gradient_error(p: np.ndarray, t: np.ndarray, unknown: np.ndarray) -> float:
    """Sum over U of (|grad p| - |grad t|)^2 (unscaled; tables divide by 1000).

    p, t: (H, W) float32 holding 8-bit values 0..255. unknown: (H, W) bool, the region U.
    Each matte is first rescaled to [0, 1] by its own min and max (MATLAB mat2gray), then
    differentiated with the derivative-of-Gaussian pair of gaussian_gradient_kernel.
    """
    diff = _gradient_magnitude(_f32(p)) - _gradient_magnitude(_f32(t))
    return float(np.sum(np.square(diff[np.asarray(unknown, dtype=bool)]), dtype=np.float32))


def connectivity_error(p: np.ndarray, t: np.ndarray, unknown: np.ndarray) -> float:
    """Sum over U of |phi_p - phi_t| (unscaled; tables divide by 1000).

    p, t: (H, W) float32 holding 8-bit values 0..255. unknown: (H, W) bool, the region U.
    l is the last threshold (0, 0.1, ..., 1) at which a pixel still belonged to Omega, the largest
    4-connected component of {p >= th and t >= th} (1 if it never left); phi = 1 - d [d >= 0.15]
    with d = alpha - l.
    """
    p, t = _f32(p) / np.float32(255), _f32(t) / np.float32(255)
    level = np.full(p.shape, -1, dtype=np.float32)
    for prev, th in zip(_THRESHOLDS[:-1], _THRESHOLDS[1:]):
        omega = _largest_component((p >= th) & (t >= th))
        if omega is None:
            break  # an empty level is skipped; the sets shrink as th grows, so all later ones are empty too
        level[(level == -1) & ~omega] = prev
    level[level == -1] = 1
    dp, dt = p - level, t - level
    phi_p = 1 - dp * (dp >= _THETA)
    phi_t = 1 - dt * (dt >= _THETA)
    return float(np.sum(np.abs(phi_p - phi_t)[np.asarray(unknown, dtype=bool)], dtype=np.float32))


def gaussian_gradient_kernel(sigma: float = _SIGMA, eps: float = _EPS) -> np.ndarray:
    """hx, the x-derivative-of-Gaussian kernel: (2h+1, 2h+1) float32, unit L2 norm.

    h = ceil(sigma sqrt(-2 ln(sqrt(2 pi) sigma eps))), 4 for the defaults (a 9x9 kernel);
    hx[i, j] = G(u_i) G'(u_j) with u = -h..h, G the normalised Gaussian and G'(x) = -x G(x) / sigma^2.
    The y kernel is hx.T.
    """
    half = math.ceil(sigma * math.sqrt(-2 * math.log(math.sqrt(2 * math.pi) * sigma * eps)))
    u = np.arange(-half, half + 1, dtype=np.float64)
    g = np.exp(-(u**2) / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))
    hx = np.outer(g, -u * g / sigma**2)
    return (hx / np.linalg.norm(hx)).astype(np.float32)


def _to_8bit(x: np.ndarray, name: str) -> np.ndarray:
    """uint8 as is, float in [0, 1] rounded to 0..255; returned as float32."""
    if x.dtype == np.uint8:
        return x.astype(np.float32)
    if np.issubdtype(x.dtype, np.floating):
        if not np.isfinite(x).all():
            raise ValueError(f"{name} contains NaN or infinity")
        return np.rint(np.clip(x, 0, 1) * 255).astype(np.float32)
    raise TypeError(f"{name} must be uint8 (0..255) or float (0..1), got {x.dtype}")


def _f32(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def _mat2gray(x: np.ndarray) -> np.ndarray:
    """Rescale to [0, 1] by the array's own min and max; a constant array becomes all zeros."""
    lo, hi = x.min(), x.max()
    if hi == lo:
        return np.zeros_like(x)
    return (x - lo) / (hi - lo)


_KX = gaussian_gradient_kernel()
# imfilter(..., 'conv') is convolution; filter2D correlates, so it gets the kernels flipped.
_CONV_X = np.ascontiguousarray(_KX[::-1, ::-1])
_CONV_Y = np.ascontiguousarray(_KX.T[::-1, ::-1])


def _gradient_magnitude(x: np.ndarray) -> np.ndarray:
    """(H, W) float32 gradient magnitude of mat2gray(x), borders replicated."""
    img = _mat2gray(x)
    gx = cv2.filter2D(img, -1, _CONV_X, borderType=cv2.BORDER_REPLICATE)
    gy = cv2.filter2D(img, -1, _CONV_Y, borderType=cv2.BORDER_REPLICATE)
    return np.sqrt(gx * gx + gy * gy)


def _largest_component(mask: np.ndarray) -> np.ndarray | None:
    """Largest 4-connected component of the True pixels (bool mask), None if there are none.

    Label 0 (the False pixels) never competes. Ties go to the component met first in column-major
    order, as MATLAB's bwconncomp + max picks.
    """
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=4)
    if n == 1:
        return None
    areas = stats[1:, cv2.CC_STAT_AREA]
    largest = np.flatnonzero(areas == areas.max()) + 1
    scan = labels.ravel(order="F")
    best = scan[np.argmax(np.isin(scan, largest))]
    return labels == best
