"""Export a registry model's network to TorchScript or ONNX, checked against the eager network.

The exported module is the network alone, with Nuke CatFileCreator's convention (models/network.py):

    x:     (B, C, H, W) float32 in [0, 1], C = model.channels(): RGB, then the model's extra channels
           (`layout` names them), any H and W
    alpha: (B, 1, H, W) float32 in [0, 1]

What `prepare` and `pack` do before the network (colour conversion, trimap levels, DCNN's classical
alphas) and what `run` does after it (DCNN's pasting of known trimap pixels, BGMExcite's per-request
`steps`: the export runs the default) stay with the host.

Weights are the model's trained ones (models/weights/<name>.safetensors) or a safetensors file given
explicitly; a model without either is refused, as the server refuses it. The written file is loaded
back (torch.jit.load, or onnxruntime) and compared with the eager network on random inputs of two
odd sizes; a file off by more than ATOL is deleted and the export fails.

ONNX: the TorchScript-based exporter (torch.onnx.export(dynamo=False)) is tried first: about a second,
and it handles every network here but bgm_excite (adaptive pooling to a size known only at run time).
Where it fails, or its file does not match the eager network (msia with some weights), the
torch.export-based one (dynamo=True, needs onnxscript; tens of seconds) is tried.
Height, width and batch are dynamic axes in both.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

from models.base import BACKGROUND, TRIMAP
from models.network import NetworkModel
from models.registry import Registry

#: largest absolute difference from the eager network the exported file may show
ATOL = 1e-4
#: (B, H, W) of the parity inputs: odd sizes, so the networks' pad-and-crop is exercised
SIZES = ((1, 67, 93), (2, 41, 58))
ONNX_PACKAGES = ("onnx", "onnxruntime", "onnxscript")


class ExportError(Exception):
    """Why a model could not be exported; the message is meant for the user."""


@dataclass(frozen=True)
class Exported:
    """What was written: `path` holds `model`'s network in `format`, made by `exporter`; its output
    differs from the eager network's by at most `max_abs_diff` on inputs of `sizes` (B, C, H, W)."""

    model: str
    format: str
    path: str
    exporter: str
    channels: int
    layout: str
    sizes: tuple[tuple[int, int, int, int], ...]
    max_abs_diff: float


def network_model(name: str) -> NetworkModel:
    """The registry's model `name`. Raises UnknownModel, or ExportError for a model without a network."""
    registry = Registry()
    model = registry.model(name)
    if not isinstance(model, NetworkModel):
        deep = [n for n in registry.names() if isinstance(registry.model(n), NetworkModel)]
        raise ExportError(f"model {name!r} has no network to export: it is computed in Python on the CPU "
                          f"(a classical solver or a utility); models with a network: {', '.join(deep)}")
    return model


def layout(model: NetworkModel) -> str:
    """The input tensor's channels, in order, as text for the user."""
    if type(model).pack is not NetworkModel.pack:  # the model packs its own channels: its docstring says which
        return type(model).pack.__doc__.strip().splitlines()[0].rsplit("]: ", 1)[-1].rstrip(".")
    names = ["R", "G", "B"]
    if TRIMAP in model.inputs:
        names.append("trimap (0 / 0.5 / 1)")
    if BACKGROUND in model.inputs:
        names += ["plate R", "plate G", "plate B"]
    return ", ".join(names)


def trained_network(model: NetworkModel, weights: str = "") -> nn.Module:
    """model's network in eval mode, with `weights` (a safetensors file) or the model's trained weights."""
    from safetensors.torch import load_file

    path = Path(weights) if weights else model.weights_path()
    if not path.is_file():
        if weights:
            raise ExportError(f"no weights file {weights}")
        raise ExportError(f"model {model.name!r} has no trained weights ({path}); train them first with "
                          f"`mattebox train --model {model.name}`, or name a safetensors file with --weights")
    net = model.build()
    try:
        net.load_state_dict(load_file(str(path)))
    except (RuntimeError, OSError) as err:
        raise ExportError(f"{path} does not hold weights for {model.name!r}: {' '.join(str(err).split())[:300]}") from err
    return net.eval()


def parity(net: nn.Module, run: Callable[[np.ndarray], np.ndarray], channels: int) -> tuple[tuple, float]:
    """Largest |run(x) - net(x)| over random x of each of SIZES. Raises ExportError on a wrong shape.
    Returns (the input shapes, the difference)."""
    gen = torch.Generator().manual_seed(0)
    shapes = tuple((b, channels, h, w) for b, h, w in SIZES)
    diff = 0.0
    for shape in shapes:
        x = torch.rand(shape, generator=gen)
        with torch.no_grad():
            want = net(x).numpy()
        got = run(x.numpy())
        if got.shape != want.shape:
            raise ExportError(f"the exported module returns {got.shape} for input {shape}, not {want.shape}")
        diff = max(diff, float(np.abs(got - want).max()))
    return shapes, diff


def to_torchscript(model: NetworkModel, net: nn.Module, out: str) -> tuple[str, Callable]:
    """Write net as TorchScript; returns (exporter, run) with run: x -> alpha through the saved file."""
    model.torchscript(net).save(out)
    loaded = torch.jit.load(out)

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return loaded(torch.from_numpy(x)).numpy()

    return "torch.jit.script", run


def to_onnx(model: NetworkModel, net: nn.Module, out: str) -> tuple[str, Callable]:
    """Write net as ONNX; returns (exporter, run) with run: x -> alpha through onnxruntime."""
    missing = [p for p in ONNX_PACKAGES if importlib.util.find_spec(p) is None]
    if missing:
        raise ExportError(f"ONNX export needs {', '.join(ONNX_PACKAGES)} ({', '.join(missing)} missing): "
                          f"pip install {' '.join(ONNX_PACKAGES)}")
    import onnxruntime

    x = torch.rand(1, model.channels(), *SIZES[0][1:])
    axes = {0: "batch", 2: "height", 3: "width"}
    dim = torch.export.Dim.DYNAMIC
    exporters = {
        "torch.onnx (TorchScript-based)": dict(dynamo=False, dynamic_axes={"x": axes, "alpha": axes}),
        "torch.onnx (torch.export-based)": dict(dynamo=True, dynamic_shapes={"x": {0: dim, 2: dim, 3: dim}},
                                               external_data=False, verbose=False),
    }
    failed = []
    for exporter, options in exporters.items():  # the first whose file matches the eager network
        try:
            with warnings.catch_warnings(), muted_stdout():
                warnings.filterwarnings("ignore", "You are using the legacy TorchScript-based ONNX export",
                                        DeprecationWarning)
                warnings.filterwarnings("ignore", "Constant folding - Only steps=1", UserWarning)
                torch.onnx.export(net, (x,), out, input_names=["x"], output_names=["alpha"], **options)
            session = onnxruntime.InferenceSession(out, providers=["CPUExecutionProvider"])
        except Exception as err:  # each exporter has its own error types; the next one may manage
            failed.append(f"{exporter}: {type(err).__name__}: {last_line(err)}")
            continue

        def run(x: np.ndarray, session=session) -> np.ndarray:
            return session.run(None, {session.get_inputs()[0].name: x})[0]

        _, diff = parity(net, run, model.channels())
        if diff <= ATOL:
            return exporter, run
        failed.append(f"{exporter}: its file differs from the eager network by {diff:.2e}")
    raise ExportError(f"model {model.name!r} does not export to ONNX:\n  " + "\n  ".join(failed))


@contextlib.contextmanager
def muted_stdout() -> Iterator[None]:
    """File descriptor 1 to the null device: where the TorchScript-based exporter fails, its C++ side
    prints the whole graph (hundreds of lines) to stdout, which would bury the message and break --json."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def last_line(err: Exception) -> str:
    """The telling line of an exporter's error: its exception summary if it has one, else its first line."""
    lines = [s.strip() for s in str(err).splitlines() if s.strip()]
    summary = [s for s in lines if s.startswith("<class ")]
    return (summary[-1] if summary else lines[0] if lines else "")[:300]


WRITERS = {"torchscript": to_torchscript, "onnx": to_onnx}


def export(name: str, fmt: str, out: str, weights: str = "") -> Exported:
    """Write model `name`'s network to `out` in `fmt` and check it. Raises UnknownModel or ExportError."""
    if fmt not in WRITERS:
        raise ExportError(f"unknown format {fmt!r}; formats: {', '.join(WRITERS)}")
    model = network_model(name)
    net = trained_network(model, weights)
    Path(out).resolve().parent.mkdir(parents=True, exist_ok=True)
    try:
        exporter, run = WRITERS[fmt](model, net, out)
        shapes, diff = parity(net, run, model.channels())
        if not diff <= ATOL:
            raise ExportError(f"the exported module differs from the eager network by {diff:.2e} (> {ATOL:g})")
    except ExportError:
        if os.path.exists(out):
            os.remove(out)
        raise
    return Exported(name, fmt, out, exporter, model.channels(), layout(model), shapes, diff)
