"""Training data for Mattebox's models: composites by the Deep Image Matting rule and a studio's own
shot, as items of display-referred sRGB float32 tensors (see sample.py for the item's keys and shapes).

  sources.py    where foregrounds and backgrounds come from (synthetic or photo folders)
  augment.py    augmentation presets and the foreground / background crops
  composite.py  CompositeDataset: every foreground over many backgrounds
  shot.py       ShotData / ShotDataset: frames of a real shot with ground-truth mattes
  plate.py      clean-plate mismatch; trimap.py random-dilation trimaps
"""
from training.data.augment import DIM_AUGMENT, SEED003_AUGMENT, Augment
from training.data.composite import CompositeDataset
from training.data.geometry import Affine
from training.data.jitter import Jitter
from training.data.plate import PlatePerturb
from training.data.sample import KEYS
from training.data.shot import ShotData, ShotDataset
from training.data.sources import (Backgrounds, Foregrounds, PhotoBackgrounds, PhotoForegrounds,
                                   SyntheticBackgrounds, SyntheticForegrounds)
from training.data.trimap import random_trimap

__all__ = ["DIM_AUGMENT", "KEYS", "SEED003_AUGMENT", "Affine", "Augment", "Backgrounds", "CompositeDataset",
           "Foregrounds", "Jitter", "PhotoBackgrounds", "PhotoForegrounds", "PlatePerturb", "ShotData",
           "ShotDataset", "SyntheticBackgrounds", "SyntheticForegrounds", "random_trimap"]
