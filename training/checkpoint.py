"""Training checkpoints in safetensors, written atomically (temp file + rename).

One file holds everything `--resume` needs to continue exactly where a killed run stopped: the
network ("model.*"), the optimiser's tensors ("optim.<param>.<name>"), torch's RNG state ("rng"),
and as JSON metadata the optimiser's hyper-parameters, the step and anything else the trainer keeps.
"""
from __future__ import annotations

import json
import os
import tempfile

import torch
from safetensors.torch import load_file, safe_open, save_file
from torch import nn


def _atomic(path: str, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".ckpt-", suffix=".safetensors", dir=folder)
    os.close(fd)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=meta)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def save_weights(path: str, net: nn.Module, meta: dict | None = None) -> None:
    """The network alone, the file the registry serves (models/weights/<name>.safetensors)."""
    _atomic(path, dict(net.state_dict()), {"mattebox": json.dumps(meta or {})})


def save(path: str, net: nn.Module, opt: torch.optim.Optimizer, state: dict) -> None:
    """A resumable checkpoint. `state`: JSON-able trainer state (step, history, ...)."""
    tensors = {f"model.{k}": v for k, v in net.state_dict().items()}
    opt_state = opt.state_dict()
    for idx, slots in opt_state["state"].items():
        for name, value in slots.items():
            tensors[f"optim.{idx}.{name}"] = value if torch.is_tensor(value) else torch.tensor(value)
    tensors["rng"] = torch.get_rng_state()
    _atomic(path, tensors, {"param_groups": json.dumps(opt_state["param_groups"]), "trainer": json.dumps(state)})


def load(path: str, net: nn.Module, opt: torch.optim.Optimizer) -> dict:
    """Restore network, optimiser and RNG from `save`; returns the trainer state."""
    tensors = load_file(path)
    with safe_open(path, "pt") as f:
        meta = f.metadata()
    net.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    slots: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            slots.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": slots, "param_groups": json.loads(meta["param_groups"])})
    torch.set_rng_state(tensors["rng"])
    return json.loads(meta["trainer"])
