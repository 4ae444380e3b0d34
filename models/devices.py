"""Which device a model runs on."""
from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def accelerator() -> str:
    """The best torch device here: "cuda:0" when a CUDA GPU is usable, else "cpu"."""
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda:0" if torch.cuda.is_available() else "cpu"
