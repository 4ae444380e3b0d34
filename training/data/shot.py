"""A studio's own shot as training data, for fine-tuning a model on it.

The shot is an image sequence in any format OpenImageIO reads, with ground-truth mattes for some of
its frames and optionally a clean plate (one still or a sequence). Frames are read exactly as the
server reads a job's (models/job_files.py): mattes from their alpha channel (or `matte_channel`),
mattes and plate placed in the image's data window, colour from colour_space, else what the file
says, else float scene-linear and integer sRGB; all of it arrives here as display-referred sRGB in
[0, 1], the way the server feeds the models.
"""
from __future__ import annotations

import numpy as np
import torch
from pymatting import estimate_foreground_ml
from torch.utils.data import Dataset

from models import colour, pixels
from models.base import BACKGROUND, IMAGE, TRIMAP
from models.job_files import JobFiles
from training.data.crop import any_centre, crop, unknown_centre
from training.data.plate import PlatePerturb, perturb_plate
from training.data.sample import as_item, item_rng
from training.data.trimap import random_trimap


class ShotData:
    """input, mattes, background: file patterns ("shot.####.exr", "%04d", "$F4"; a pattern without a
    frame token is one still used for every frame). frames: the frames that have a ground-truth matte.
    background: the clean plate, "" for none. colour_space: the space of input and plate files, ""
    for the server's rule. matte_channel: the mattes' channel ("" = alpha, else the only channel,
    else luminance)."""

    def __init__(self, input: str, mattes: str, frames: list[int], background: str = "",
                 colour_space: str = "", matte_channel: str = ""):
        if not frames:
            raise ValueError("a shot needs at least one frame with a ground-truth matte")
        self.input, self.mattes, self.background = input, mattes, background
        self.frames = sorted(frames)
        self.colour_space = colour.check_space(colour_space) if colour_space else ""
        self.files = JobFiles(input=input, output="", trimap=mattes, background=background,
                              matte_channel=matte_channel, colour_space=self.colour_space,
                              trimap_notes=False)  # soft mattes, not trimaps

    def frame(self, f: int) -> dict[str, np.ndarray | None]:
        """Frame f as float32 numpy in [0, 1]: "src" (H, W, 3) sRGB, "pha" (H, W) ground truth and
        "plate" (H, W, 3) sRGB, or None without a plate. Raises ValueError on files that cannot be
        lined up (see models/job_files.py)."""
        if f not in self.frames:
            raise ValueError(f"frame {f} has no ground-truth matte (frames: {self.frames})")
        got = self.files.read(f)

        def srgb(role: str) -> np.ndarray | None:
            a = got.arrays.get(role)
            return None if a is None else colour.convert(pixels.to_unit_float(a), got.spaces[role], colour.SRGB)

        pha = np.clip(pixels.to_unit_float(got.arrays[TRIMAP]), 0.0, 1.0)
        return {"src": srgb(IMAGE), "pha": pha, "plate": srgb(BACKGROUND)}


class ShotDataset(Dataset):
    """Random size x size crops of some frames of a ShotData; the item dict of sample.py.

    Item i takes frame frames[i % len(frames)], a crop centred on a random unknown pixel with
    probability unknown_p (else anywhere; reflect-padded where the frame is smaller), a horizontal flip
    with probability flip, a random-dilation trimap and a plate perturbed from bgr (plate.py).
      src: the real frame (not a composite: the compositing equation holds only approximately)
      pha: the ground-truth matte
      fgr: foreground colour estimated from src and pha (pymatting estimate_foreground_ml)
      bgr: the clean plate as given; without one, the background estimated along with fgr
    Frames are read and their layers estimated on first use, then kept in memory.
    Deterministic per (seed, epoch, i); call set_epoch(e) before each epoch.
    """

    def __init__(self, shot: ShotData, frames: list[int], size: int = 256, length: int = 64, seed: int = 0,
                 plate: PlatePerturb = PlatePerturb(), unknown_p: float = 0.5, flip: float = 0.5):
        missing = sorted(set(frames) - set(shot.frames))
        if not frames or missing:
            raise ValueError(f"frames must be a non-empty subset of the shot's {shot.frames}; "
                             f"not there: {missing}")
        self.shot, self.frames, self.size, self.length, self.seed = shot, list(frames), size, length, seed
        self.plate, self.unknown_p, self.flip = plate, unknown_p, flip
        self.epoch = 0
        self._layers: dict[int, list[np.ndarray]] = {}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if not 0 <= i < self.length:
            raise IndexError(f"item {i} of {self.length}")
        rng = item_rng(self.seed, self.epoch, i)
        src, pha, fgr, bgr = self._frame_layers(self.frames[i % len(self.frames)])
        centre = unknown_centre(pha, rng) if rng.random() < self.unknown_p else any_centre(pha.shape, rng)
        layers = crop([src, pha, fgr, bgr], centre, self.size)
        if rng.random() < self.flip:
            layers = [a[:, ::-1] for a in layers]
        src, pha, fgr, bgr = (np.ascontiguousarray(a) for a in layers)
        return as_item(src, bgr, perturb_plate(bgr, rng, self.plate), random_trimap(pha, rng), pha, fgr)

    def _frame_layers(self, f: int) -> list[np.ndarray]:
        """[src, pha, fgr, bgr] of frame f, computed once."""
        if f not in self._layers:
            data = self.shot.frame(f)
            src, pha = data["src"], data["pha"]
            fgr, est_bgr = estimate_foreground_ml(src, pha, return_background=True)
            bgr = est_bgr if data["plate"] is None else data["plate"]
            self._layers[f] = [src, pha, np.clip(fgr, 0, 1).astype(np.float32),
                               np.clip(bgr, 0, 1).astype(np.float32)]
        return self._layers[f]
