"""Where training foregrounds (colour + alpha) and backgrounds come from.

Every source is indexable: len(source) items, source.get(i) for item i, identical on every call.
Arrays are float32, display-referred sRGB in [0, 1]:
  foreground: fgr (H, W, 3) colour and pha (H, W) alpha
  background: (H, W, 3)
Synthetic sources render procedurally (training/synthetic.py) and cache what they rendered; photo
sources read folders of files (the development data under ../shared/data, never copied here).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
from pymatting import estimate_foreground_ml

from training.data.files import read_matte, read_srgb
from training.synthetic import make_background, make_shot

PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg")


class Foregrounds(Protocol):
    def __len__(self) -> int: ...

    def get(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """fgr (H, W, 3) and pha (H, W), float32 in [0, 1]."""
        ...


class Backgrounds(Protocol):
    def __len__(self) -> int: ...

    def get(self, i: int) -> np.ndarray:
        """(H, W, 3) float32 in [0, 1]."""
        ...


class SyntheticForegrounds:
    """n procedural subjects with exact foreground colour: item i is the single frame of
    make_shot(width, height, seed=s_i), s_i drawn from (seed, i). Rendered on first use, then cached."""

    def __init__(self, n: int, width: int = 512, height: int = 384, seed: int = 0):
        self.n, self.width, self.height, self.seed = n, width, height, seed
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return self.n

    def get(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if i not in self._cache:
            shot = make_shot(self.width, self.height, frames=1, seed=_sub_seed(self.seed, i))
            self._cache[i] = shot.foreground[0], shot.alpha[0]
        return self._cache[i]


class SyntheticBackgrounds:
    """n procedural size x size backgrounds (training.synthetic.make_background), cached on first use."""

    def __init__(self, n: int, size: int = 320, seed: int = 0):
        self.n, self.size, self.seed = n, size, seed
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return self.n

    def get(self, i: int) -> np.ndarray:
        if i not in self._cache:
            rng = np.random.default_rng(_sub_seed(self.seed, i))
            self._cache[i] = make_background(self.size, self.size, rng)
        return self._cache[i]


class PhotoForegrounds:
    """Photographs with ground-truth alpha in an alphamatting.com-style folder: input/NAME.png (RGB) and
    gt/NAME.png (alpha, grey or R=G=B). The foreground colour is estimated from image and alpha
    (pymatting's estimate_foreground_ml) on first use of an image, then cached in memory.

    names: the image names (file stems, e.g. "GT01") to use, for a train/validation split; default
    all of input/ that have a gt/ file. `self.names` lists them, sorted.
    """

    #: what one item is made of, and the folder's layout, for messages
    pair, layout = "input/gt pair", "input/*.png with a matching gt/*.png"
    #: the data's terms when the folder's own documentation states them ("" = not known here)
    licence = ""

    def __init__(self, folder: str | Path, names: Sequence[str] | None = None):
        self.folder = Path(folder)
        found = self.find()
        if names is not None:
            missing = sorted(set(names) - set(found))
            if missing:
                raise ValueError(f"{self.folder}: no {self.pair} for {', '.join(missing)}")
            found = {n: found[n] for n in names}
        if not found:
            raise ValueError(f"{self.folder}: no {self.layout}")
        self.names = sorted(found)
        self.files = found
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def find(self) -> dict[str, tuple[Path, Path]]:
        """Every item of the folder: name -> (image file, alpha file)."""
        return {p.stem: (p, self.folder / "gt" / p.name) for p in (self.folder / "input").glob("*.png")
                if (self.folder / "gt" / p.name).is_file()}

    def held_out(self, given: Sequence[str] | None = None) -> tuple[str, ...]:
        """The validation split: the names given (--val-names), else the default one (`held_out`)."""
        return tuple(given) if given else held_out(self.names)

    def subset(self, names: Sequence[str]) -> PhotoForegrounds:
        """The same source over some of its names (ValueError for names it lacks)."""
        return type(self)(self.folder, names)

    def __len__(self) -> int:
        return len(self.names)

    def get(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if i not in self._cache:
            image, alpha = self.files[self.names[i]]
            src = read_srgb(image)
            pha = read_matte(alpha)
            if pha.shape != src.shape[:2]:
                raise ValueError(f"{self.folder}: {alpha.relative_to(self.folder)} is not the size of "
                                 f"{image.relative_to(self.folder)}")
            fgr = np.clip(estimate_foreground_ml(src, pha), 0, 1).astype(np.float32)
            self._cache[i] = fgr, pha
        return self._cache[i]


def foreground_folder(folder: str | Path, names: Sequence[str] | None = None) -> PhotoForegrounds:
    """The foregrounds of a --data folder, by its layout: composition1k's (crops/, full/ of
    NAME_image.png + NAME_alpha.png: training.data.composition1k), else alphamatting's (input/, gt/)."""
    from training.data.composition1k import Composition1kForegrounds, is_composition1k

    if is_composition1k(folder):
        return Composition1kForegrounds(folder, names)
    return PhotoForegrounds(folder, names)


def held_out(names: Sequence[str]) -> tuple[str, ...]:
    """The validation split of a photo folder's foreground names, as `mattebox train` and
    `mattebox eval --suite` take it by default: the last 4 of the sorted names."""
    return tuple(sorted(names)[-4:])


class PhotoBackgrounds:
    """Every .png / .jpg / .jpeg under a folder, recursively, in sorted path order; read on each get."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.paths = sorted(p for p in self.folder.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES)
        if not self.paths:
            raise ValueError(f"{self.folder}: no {' / '.join(PHOTO_SUFFIXES)} files")

    def __len__(self) -> int:
        return len(self.paths)

    def get(self, i: int) -> np.ndarray:
        return read_srgb(self.paths[i])


def _sub_seed(seed: int, i: int) -> int:
    """An int seed for item i of a source seeded `seed`, independent across (seed, i) pairs."""
    return int(np.random.SeedSequence([seed, i]).generate_state(1)[0])
