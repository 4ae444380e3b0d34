"""The contact sheet: rows of validation composites, columns composite, ground truth, then each
model's matte, under a header of labels; written as an 8-bit PNG with OpenCV."""
from __future__ import annotations

import cv2
import numpy as np

from training.benchmark.composites import Composite

HEADER = 28
_GREY = 64


class ContactSheet:
    """Collects the first composite of each of up to `rows` foregrounds (thumbnails only, so memory
    stays small), then writes them. tile: (width, height) box each image is fitted into."""

    def __init__(self, rows: int = 4, tile: tuple[int, int] = (200, 160)):
        self.rows, self.tile = rows, tile
        self.labels: list[str] = []
        self._rows: list[tuple[str, list[np.ndarray]]] = []

    def keep(self, c: Composite, mattes: dict[str, np.ndarray]) -> None:
        """Add c as a row unless its foreground has one already or the sheet is full."""
        if len(self._rows) >= self.rows or any(fg == c.foreground for fg, _ in self._rows):
            return
        if not self.labels:
            self.labels = ["composite", "ground truth", *mattes]
        images = [c.image, c.alpha, *(mattes[label] for label in self.labels[2:])]
        self._rows.append((c.foreground, [self._fit(a) for a in images]))

    def write(self, path: str) -> bool:
        """Write the PNG; False (nothing written) when no row was kept."""
        if not self._rows:
            return False
        w, h = self.tile
        header = np.full((HEADER, w * len(self.labels), 3), 255, np.uint8)
        for i, label in enumerate(self.labels):
            cv2.putText(header, label[:24], (i * w + 4, HEADER - 9), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1,
                        cv2.LINE_AA)
        lines = [header]
        for fg, tiles in self._rows:
            line = np.concatenate(tiles, 1)
            cv2.putText(line, fg, (4, h - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 0), 1, cv2.LINE_AA)
            lines.append(line)
        sheet = np.concatenate(lines, 0)
        if not cv2.imwrite(path, cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write {path}")
        return True

    def _fit(self, img: np.ndarray) -> np.ndarray:
        """(H, W) or (H, W, 3) float in [0, 1] -> (tile h, tile w, 3) uint8 RGB, letterboxed in grey."""
        w, h = self.tile
        rgb = np.repeat(img[..., None], 3, 2) if img.ndim == 2 else img
        f = min(w / rgb.shape[1], h / rgb.shape[0])
        size = (max(1, round(rgb.shape[1] * f)), max(1, round(rgb.shape[0] * f)))
        small = cv2.resize(np.ascontiguousarray(rgb, np.float32), size, interpolation=cv2.INTER_AREA)
        out = np.full((h, w, 3), _GREY, np.uint8)
        y0, x0 = (h - size[1]) // 2, (w - size[0]) // 2
        out[y0:y0 + size[1], x0:x0 + size[0]] = np.rint(np.clip(small, 0, 1) * 255).astype(np.uint8)
        return out
