"""Validation composites: held-out photographed foregrounds over held-out background photos.

Each foreground (image + ground-truth alpha of the alphamatting layout: input/, gt/, trimapN/) goes
over `per_fg` backgrounds drawn without replacement, deterministically from (seed, foreground name),
so the set does not change when other foregrounds are added or removed. The Deep Image Matting rule
makes the image: I = alpha F + (1 - alpha) B, with F estimated from the photograph (PhotoForegrounds)
and B a background photo resized (keeping its aspect) and cropped to cover the foreground.

Besides I, a composite carries what each kind of model is given:
  trimap: the dataset's own trimap of the foreground (trimap1 or trimap2), uint8 0 / 128 / 255; it
          also defines the unknown region every model is scored on
  plate:  the clean plate a re-shoot would give: B perturbed by training.data.plate (PlatePerturb
          defaults), seeded per composite
"""
from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from models.pixels import trimap_levels
from training.data.crop import cover
from training.data.files import read_matte, read_srgb
from training.data.plate import PlatePerturb, perturb_plate
from training.data.sources import PHOTO_SUFFIXES, PhotoForegrounds, held_out

TRIMAP_SETS = ("trimap1", "trimap2")


@dataclass(frozen=True)
class Composite:
    """One validation composite; colour arrays (H, W, 3) float32 sRGB in [0, 1], alpha (H, W)
    float32 in [0, 1], trimap (H, W) uint8 in {0, 128, 255}."""

    foreground: str  # the foreground's name, e.g. "GT23"
    background: str  # the background photo's path
    image: np.ndarray  # I = alpha F + (1 - alpha) B
    alpha: np.ndarray  # ground truth
    fgr: np.ndarray  # F
    bgr: np.ndarray  # B
    trimap: np.ndarray
    plate: np.ndarray


@dataclass(frozen=True)
class ValidationSet:
    """data: alphamatting-layout folder. names: held-out foreground names. backgrounds: folders of
    background photos (searched recursively). per_fg: backgrounds per foreground. trimap_set: which
    dataset trimaps. max_side: shrink each foreground so its long side is at most this (0 = as is)."""

    data: Path
    names: tuple[str, ...]
    backgrounds: tuple[Path, ...]
    per_fg: int = 5
    seed: int = 0
    trimap_set: str = "trimap1"
    max_side: int = 0

    def __post_init__(self):
        if self.trimap_set not in TRIMAP_SETS:
            raise ValueError(f"trimap set must be one of {', '.join(TRIMAP_SETS)}, got {self.trimap_set!r}")
        if self.per_fg < 1:
            raise ValueError(f"need at least one background per foreground, got {self.per_fg}")
        missing = [n for n in self.names if not (self.data / self.trimap_set / f"{n}.png").is_file()]
        if missing:
            raise ValueError(f"{self.data}: no {self.trimap_set}/ file for {', '.join(missing)}; "
                             f"pick --trimap-set or --val-names that exist")

    def background_paths(self) -> list[Path]:
        """Every background photo of the folders, sorted; raises ValueError when there are fewer than
        per_fg."""
        paths = []
        for folder in self.backgrounds:
            if not folder.is_dir():
                raise ValueError(f"background folder {folder} does not exist")
            paths += [p for p in folder.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES]
        paths = sorted(set(paths))
        if len(paths) < self.per_fg:
            raise ValueError(f"{len(paths)} background photos in {', '.join(map(str, self.backgrounds))}, "
                             f"fewer than --per-fg {self.per_fg}")
        return paths

    def pairs(self) -> list[tuple[str, Path]]:
        """(foreground name, background path) of every composite, foreground-major."""
        paths = self.background_paths()
        out = []
        for name in self.names:
            rng = np.random.default_rng([self.seed, zlib.crc32(name.encode())])
            out += [(name, paths[int(i)]) for i in rng.choice(len(paths), self.per_fg, replace=False)]
        return out

    def __len__(self) -> int:
        return len(self.names) * self.per_fg

    def __iter__(self) -> Iterator[Composite]:
        """The composites in pairs() order; each foreground's F is estimated once (one at a time)."""
        PhotoForegrounds(self.data, self.names)  # every name has its input/gt pair, before any work
        current, layers = None, None
        for name, bg_path in self.pairs():
            if name != current:
                fgr, pha = PhotoForegrounds(self.data, [name]).get(0)
                tri = np.rint(trimap_levels(read_matte(self.data / self.trimap_set / f"{name}.png")) * 255)
                tri = tri.astype(np.uint8)
                if tri.shape != pha.shape:
                    raise ValueError(f"{self.data}: {self.trimap_set}/{name}.png is not the size of gt/{name}.png")
                current, layers = name, shrink(fgr, pha, tri, self.max_side)
            rng = np.random.default_rng([self.seed, zlib.crc32(name.encode()), zlib.crc32(bg_path.name.encode())])
            yield composite(name, str(bg_path), *layers, read_srgb(bg_path), rng)


def composite(name: str, bg_name: str, fgr: np.ndarray, pha: np.ndarray, tri: np.ndarray, bg: np.ndarray,
              rng: np.random.Generator, plate: PlatePerturb = PlatePerturb()) -> Composite:
    """The composite of foreground (fgr, pha, trimap tri) over background photo bg, which is resized
    and cropped (randomly, from rng) to cover it; the plate is perturbed from the same crop."""
    bgr = np.ascontiguousarray(cover(bg, pha.shape, rng), dtype=np.float32)
    a = pha[..., None]
    image = np.clip(a * fgr + (1 - a) * bgr, 0, 1)  # the clip only removes rounding above 1
    return Composite(name, bg_name, image, pha, fgr, bgr, tri, perturb_plate(bgr, rng, plate))


def shrink(fgr: np.ndarray, pha: np.ndarray, tri: np.ndarray, max_side: int) -> tuple[np.ndarray, ...]:
    """Foreground, alpha and trimap scaled so the long side is at most max_side (0: unchanged): area
    averaging for colour and alpha, nearest for the trimap (it keeps its three levels)."""
    h, w = pha.shape
    if not max_side or max(h, w) <= max_side:
        return fgr, pha, tri
    f = max_side / max(h, w)
    size = (max(1, round(w * f)), max(1, round(h * f)))
    return (cv2.resize(fgr, size, interpolation=cv2.INTER_AREA),
            np.clip(cv2.resize(pha, size, interpolation=cv2.INTER_AREA), 0, 1),
            cv2.resize(tri, size, interpolation=cv2.INTER_NEAREST))


def held_out_names(data: Path, names: Sequence[str] | None = None) -> tuple[str, ...]:
    """The validation foregrounds: `names`, or those `mattebox train` holds out by default."""
    return tuple(names) if names else held_out(PhotoForegrounds(data).names)
