"""The torch device a training run uses (`--device auto|cpu|cuda|cuda:N`), its mixed-precision dtype,
and the name its weights card records.

auto is CUDA when a CUDA GPU is usable, else the CPU. Under torchrun (WORLD_SIZE > 1) every process
takes one GPU: auto and cuda mean cuda:LOCAL_RANK, and an explicit cuda:N is refused (all the ranks
would share it). A device that cannot be used is refused before any work, saying what to do.
"""
from __future__ import annotations

import contextlib
import os
import platform
import re

import torch

SPEC = re.compile(r"cuda(?::(\d+))?")


def resolve(spec: str = "auto") -> torch.device:
    """The device `spec` names here. Raises ValueError with what is wrong and what to do."""
    spec = (spec or "auto").strip().lower()
    torchrun = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        spec = "cuda"
    m = SPEC.fullmatch(spec)
    if m is None:
        raise ValueError(f"--device {spec!r}: use auto, cpu, cuda or cuda:N")
    if torchrun and m[1] is not None:
        raise ValueError(f"{spec} asked under torchrun: every process takes cuda:LOCAL_RANK, so give "
                         f"--device cuda (or auto) and choose the GPUs with CUDA_VISIBLE_DEVICES")
    if torch.version.cuda is None:
        raise ValueError(f"{spec} asked, this torch build has no CUDA (torch {torch.__version__}): install a CUDA "
                         f"build of torch (python install.py on the GPU machine) or use --device cpu")
    visible = torch.cuda.device_count()
    if visible == 0:
        raise ValueError(f"{spec} asked, no CUDA GPU is visible (is the driver loaded? is CUDA_VISIBLE_DEVICES "
                         f"empty?): use --device cpu")
    index = int(os.environ.get("LOCAL_RANK", "0")) if torchrun else int(m[1] or 0)
    if index >= visible:
        asked = f"cuda:{index}" + (" (torchrun's LOCAL_RANK)" if torchrun else "")
        raise ValueError(f"{asked} asked, {visible} GPU{'s' if visible != 1 else ''} visible "
                         f"(cuda:0{'' if visible == 1 else f' to cuda:{visible - 1}'}): pick one of those"
                         + (" or start fewer processes per node" if torchrun else ""))
    return torch.device("cuda", index)


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype of mixed precision on `device`: bfloat16 where the GPU has it (no loss
    scaling needed), else float16 (with a GradScaler); None on the CPU (float32 training)."""
    if device.type != "cuda":
        return None
    with torch.cuda.device(device):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def precision(dtype: torch.dtype | None) -> str:
    """What a weights card records: "fp32", or "bf16 mixed" / "fp16 mixed" (float32 weights, autocast)."""
    return "fp32" if dtype is None else {torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype] + " mixed"


def name(device: torch.device) -> str:
    """The hardware that runs on `device`: the GPU's name, or the CPU's model and the threads torch uses."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or "cpu"
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    return f"{cpu} ({torch.get_num_threads()} threads)"
