"""Loss terms the seed papers train with. Every tensor is (B, C, H, W); alphas in [0, 1]."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def l1(pred: Tensor, true: Tensor, weight: Tensor | None = None) -> Tensor:
    """Mean |pred - true|, optionally weighted per pixel (weights broadcast over channels)."""
    err = (pred - true).abs()
    if weight is None:
        return err.mean()
    weight = weight.expand_as(err)
    return (err * weight).sum() / weight.sum().clamp_min(1e-6)


def l2(pred: Tensor, true: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean squared error, optionally over a mask (1 = counted)."""
    err = (pred - true) ** 2
    if mask is None:
        return err.mean()
    mask = mask.expand_as(err)
    return (err * mask).sum() / mask.sum().clamp_min(1.0)


def gradient(a: Tensor) -> tuple[Tensor, Tensor]:
    """Forward differences along x and y, zero-padded to the input size."""
    gx = F.pad(a[..., :, 1:] - a[..., :, :-1], (0, 1, 0, 0))
    gy = F.pad(a[..., 1:, :] - a[..., :-1, :], (0, 0, 0, 1))
    return gx, gy


def gradient_l1(pred: Tensor, true: Tensor, weight: Tensor | None = None) -> Tensor:
    """L1 between the spatial gradients of two alphas (seed 000 eq. 8's gradient term)."""
    (px, py), (tx, ty) = gradient(pred), gradient(true)
    return l1(px, tx, weight) + l1(py, ty, weight)


def composite_l1(pha: Tensor, fgr: Tensor, bgr: Tensor, src: Tensor) -> Tensor:
    """L1 between the image re-composited from predicted alpha and foreground over the true
    background, and the real image."""
    return l1(pha * fgr + (1 - pha) * bgr, src)


def ssim(pred: Tensor, true: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """Mean structural similarity (Wang et al. 2004) with a Gaussian window; values in [-1, 1]."""
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    x = torch.arange(window, dtype=pred.dtype, device=pred.device) - window // 2
    g = torch.exp(-(x ** 2) / (2 * sigma ** 2))
    g = (g / g.sum())
    k = (g[:, None] * g[None, :]).expand(pred.shape[1], 1, window, window)

    def blur(a: Tensor) -> Tensor:
        return F.conv2d(F.pad(a, [window // 2] * 4, mode="replicate"), k, groups=pred.shape[1])

    mp, mt = blur(pred), blur(true)
    vp, vt, cov = blur(pred * pred) - mp ** 2, blur(true * true) - mt ** 2, blur(pred * true) - mp * mt
    return (((2 * mp * mt + c1) * (2 * cov + c2)) / ((mp ** 2 + mt ** 2 + c1) * (vp + vt + c2))).mean()


def trimap_classes(tri: Tensor) -> Tensor:
    """(B, 1, H, W) trimap in {0, 0.5, 1} -> (B, H, W) long class labels 0 background, 1 foreground,
    2 unknown (seed 003's three classes)."""
    labels = torch.full_like(tri[:, 0], 2, dtype=torch.long)
    labels[tri[:, 0] == 0] = 0
    labels[tri[:, 0] == 1] = 1
    return labels


def unknown_weight(tri: Tensor, known: float = 0.1) -> Tensor:
    """Per-pixel weights: 1 in the trimap's unknown region, `known` elsewhere (seed 003)."""
    return torch.where(tri == 0.5, torch.ones_like(tri), torch.full_like(tri, known))
