"""Composition-1k foregrounds (Adobe Deep Image Matting test set, Xu et al., CVPR 2017) as a `--data`
source: composites with their ground-truth alpha, held out by object.

Layout (../shared/data/composition1k/, see its README): crops/NAME_image.png + crops/NAME_alpha.png
(320x320 crops centred on the unknown region, several per object) and full/NAME_image.png +
full/NAME_alpha.png (whole composites). Item names are the NAMEs ("fdk_0000", "fmm_0003").

These are composites, not photographs: there is no clean foreground. Its colour is estimated from the
composite and the alpha exactly as for the alphamatting photographs (PhotoForegrounds:
pymatting's estimate_foreground_ml), and the training composites put it over new backgrounds.

Objects. The files do not say which crops show the same object, and validating on crops of an object
that is also trained on would flatter the model. Items are grouped by what their object looks like:
the colour distribution of the pixels where alpha >= 0.9 (the object itself, whatever the background),
a CIELAB histogram of 8 x 8 x 8 bins, square-rooted (Hellinger distance), clustered by k-means into
one group per PER_OBJECT items (the folder holds about 8 crops per object), seeded (OpenCV's RNG, as
training.data.patches does). A group is an "object": crops of one object fall together, and so do
look-alike objects (two white furs, the lace and the net), which only makes the validation harder;
a crop that shows an unusual part of its object can land in another group. (Exact shared foreground
colours, the other cue, link too few crops here: most are cut at other scales.)
The split holds out about one group in HOLD_OUT, chosen by a hash of the group's first item name (at
least one group: the one of the lowest hash).

Licence: the Adobe Deep Image Matting dataset licence, non-commercial research use; weights trained on
it carry that restriction, and `mattebox train` records LICENCE on their card.
"""
from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from models import images, pixels
from training.data.sources import PhotoForegrounds

SUBFOLDERS = ("crops", "full")
LICENCE = ("Adobe Deep Image Matting dataset licence (Composition-1k foregrounds, Xu et al., CVPR 2017): "
           "non-commercial research use only; these weights carry that restriction")
PER_OBJECT = 8  # items per object, for the number of groups
HOLD_OUT = 8  # about one group in HOLD_OUT is held out for validation
BINS = 8  # histogram bins per CIELAB axis


def is_composition1k(folder: str | Path) -> bool:
    """Whether a folder has the composition1k layout (crops/ or full/ holding NAME_image.png files)."""
    return any(next((Path(folder) / sub).glob("*_image.png"), None) is not None for sub in SUBFOLDERS)


class Composition1kForegrounds(PhotoForegrounds):
    """Foregrounds (estimated colour, ground-truth alpha) of a composition1k folder; `objects` maps
    every item name of the folder to its object (the object's first item name), worked out on first use.
    names: the items to use (default all); held_out(): the object-level validation split."""

    pair, layout = "NAME_image.png/NAME_alpha.png pair", "crops/ or full/ NAME_image.png with NAME_alpha.png"
    licence = LICENCE

    def __init__(self, folder: str | Path, names: Sequence[str] | None = None,
                 objects: dict[str, str] | None = None):
        super().__init__(folder, names)
        self._objects = objects

    def find(self) -> dict[str, tuple[Path, Path]]:
        found = {}
        for sub in SUBFOLDERS:
            for image in sorted((self.folder / sub).glob("*_image.png")):
                alpha = image.with_name(image.name[: -len("_image.png")] + "_alpha.png")
                if alpha.is_file():
                    found[image.name[: -len("_image.png")]] = (image, alpha)
        return found

    @property
    def objects(self) -> dict[str, str]:
        if self._objects is None:
            self._objects = group_objects(self.find())
        return self._objects

    def held_out(self, given: Sequence[str] | None = None) -> tuple[str, ...]:
        """The validation items: every item of the objects of `given` (--val-names: any item names of
        those objects), else of about one object in HOLD_OUT (see the module docstring)."""
        if given:
            unknown = sorted(set(given) - set(self.objects))
            if unknown:
                raise ValueError(f"{self.folder}: no {self.pair} for {', '.join(unknown)}")
            chosen = {self.objects[n] for n in given}
        else:
            groups = sorted(set(self.objects.values()), key=lambda o: zlib.crc32(o.encode()))
            if len(groups) < 2:
                raise ValueError(f"{self.folder}: its items make one object group, which cannot be held out "
                                 f"from itself; give --val-names")
            chosen = {o for o in groups if zlib.crc32(o.encode()) % HOLD_OUT == 0} or {groups[0]}
        return tuple(sorted(n for n in self.names if self.objects[n] in chosen))

    def subset(self, names: Sequence[str]) -> Composition1kForegrounds:
        return Composition1kForegrounds(self.folder, names, self._objects)


def group_objects(files: dict[str, tuple[Path, Path]]) -> dict[str, str]:
    """name -> object (its group's first name, sorted) for items {name: (image file, alpha file)},
    grouped by the look of their object (module docstring). Deterministic."""
    import cv2

    names = sorted(files)
    looks = np.float32([_look(*files[n]) for n in names])
    k = max(1, round(len(names) / PER_OBJECT))
    cv2.setRNGSeed(0)
    _, labels, _ = cv2.kmeans(looks, k, None, (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 100, 1e-4), 5,
                              cv2.KMEANS_PP_CENTERS)
    first: dict[int, str] = {}
    for n, label in zip(names, labels[:, 0]):
        first.setdefault(int(label), n)
    return {n: first[int(label)] for n, label in zip(names, labels[:, 0])}


def _look(image: Path, alpha: Path) -> np.ndarray:
    """(BINS^3,) float32: the square-rooted, normalised CIELAB histogram of the composite's object
    pixels (alpha >= 0.9; alpha > 0.5 where fewer than 200 are; the whole image where none is)."""
    import cv2

    rgb = np.rint(pixels.to_unit_float(images.read(image, 3).pixels) * 255).astype(np.uint8)
    pha = pixels.to_unit_float(images.read(alpha, 1).pixels[..., 0])
    if pha.shape != rgb.shape[:2]:
        raise ValueError(f"{alpha} is not the size of {image}")
    mask = pha >= 0.9
    if mask.sum() < 200:
        mask = pha > 0.5
    if not mask.any():
        mask[:] = True
    lab = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2LAB)
    hist = cv2.calcHist([lab], [0, 1, 2], mask.astype(np.uint8), [BINS] * 3, [0, 256] * 3).ravel()
    return np.sqrt(hist / hist.sum())
