"""Which device a model runs on."""
from __future__ import annotations

from functools import lru_cache


def accelerator() -> str:
    """The best torch device here: "cuda:0" when a CUDA GPU is usable, else "cpu"."""
    return _found()[0]


def accelerators() -> list[str]:
    """Every device a server runs networks on: each visible CUDA GPU ("cuda:0", "cuda:1", ...; the
    environment's CUDA_VISIBLE_DEVICES decides which are visible), or ["cpu"] when there is none."""
    return list(_found())


@lru_cache(maxsize=1)
def _found() -> tuple[str, ...]:
    try:
        import torch
    except ImportError:
        return ("cpu",)
    if not torch.cuda.is_available():
        return ("cpu",)
    return tuple(f"cuda:{i}" for i in range(torch.cuda.device_count()))
