"""Shots on disk for the Nuke tests: scene-linear EXR frames, a still clean plate, trimaps, mattes."""
import numpy as np

from conftest import write_pixels
from models import colour, images
from models.colour import SCENE_LINEAR, SRGB
from training.synthetic import make_shot, trimap_from_alpha


def write_shot(folder, frames=4, width=80, height=64, seed=11):
    """src.####.exr, plate.exr, tri.####.png and gt.####.png (the exact alpha) for frames 1..frames."""
    folder.mkdir(parents=True, exist_ok=True)
    s = make_shot(width=width, height=height, frames=frames, first=1, seed=seed)
    for i in range(frames):
        images.write_rgb(folder / f"src.{i + 1:04d}.exr", colour.convert(s.image[i], SRGB, SCENE_LINEAR))
        write_pixels(folder / f"tri.{i + 1:04d}.png", trimap_from_alpha(s.alpha[i], band=3)[..., None])
        write_pixels(folder / f"gt.{i + 1:04d}.png", (s.alpha[i][..., None] * 255).round().astype(np.uint8))
    images.write_rgb(folder / "plate.exr", colour.convert(s.plate, SRGB, SCENE_LINEAR))
    return folder
