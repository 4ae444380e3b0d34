"""PNG figures of a training run, drawn with OpenCV: loss and metric curves, contact sheets."""
from __future__ import annotations

import cv2
import numpy as np

W, H, PAD = 480, 200, 36


def curves(path: str, series: dict[str, list[tuple[int, float]]]) -> None:
    """One panel per series (step, value), stacked vertically; axes labelled with their ranges."""
    panels = []
    for name, points in series.items():
        img = np.full((H, W, 3), 255, np.uint8)
        cv2.putText(img, name, (PAD, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        if len(points) >= 1:
            steps, values = np.array(points, dtype=np.float64).T
            lo, hi = float(values.min()), float(values.max())
            x0, x1 = float(steps.min()), float(max(steps.max(), steps.min() + 1))
            span = hi - lo or 1.0
            xs = PAD + (steps - x0) / (x1 - x0) * (W - 2 * PAD)
            ys = H - PAD - (values - lo) / span * (H - 2 * PAD - 10)
            cv2.polylines(img, [np.stack([xs, ys], 1).astype(np.int32)], False, (200, 80, 0), 2, cv2.LINE_AA)
            for text, y in ((f"{hi:.4g}", PAD), (f"{lo:.4g}", H - PAD)):
                cv2.putText(img, text, (2, y), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (90, 90, 90), 1, cv2.LINE_AA)
            cv2.putText(img, f"step {int(x0)}..{int(steps.max())}", (W - 150, H - 8), cv2.FONT_HERSHEY_SIMPLEX,
                        0.35, (90, 90, 90), 1, cv2.LINE_AA)
        cv2.rectangle(img, (PAD, PAD - 6), (W - PAD, H - PAD), (180, 180, 180), 1)
        panels.append(img)
    cv2.imwrite(path, np.concatenate(panels or [np.full((H, W, 3), 255, np.uint8)], 0))


def contact_sheet(path: str, rows: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
    """Rows of (src (H, W, 3) sRGB, predicted alpha (H, W), true alpha (H, W)), all in [0, 1]."""
    lines = [np.concatenate([src, np.repeat(pred[..., None], 3, 2), np.repeat(true[..., None], 3, 2)], 1)
             for src, pred, true in rows]
    sheet = np.rint(np.clip(np.concatenate(lines, 0), 0, 1) * 255).astype(np.uint8)
    cv2.imwrite(path, cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
