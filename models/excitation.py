"""The excitation layer (seed 000): guide a feature map with an alpha-like excitation map.

    hid: (B, C, h, w) feature map F_in of any layer, any range
    exc: (B, 1, H, W) excitation map E in [0, 1] (an alpha matte: GT, pseudo-GT or the model's own
         previous output), any size: it is resized to (h, w) first
    out: (B, C, h, w)   F_out = g * (F_in * E) + (1 - g) * F_in          (paper eqs. 2 and 3)

g is one learnable scalar per excitation layer, initialised to 0.5 (the paper's value).

Choices the paper leaves open:
- Resizing E to the feature map: area interpolation (the mean of E over each feature cell's
  footprint; exact for the integer strides of encoder features, nearest-like when upsampling).
- g is left unconstrained (no clamp or sigmoid): the paper hands it to the optimiser as is.
- E is one channel, broadcast over the C feature channels.

Plugging it into a network (any nn.Module):
- `Excitation` is the bare layer; a network composition can call it explicitly after a layer.
- `Excited(module)` wraps a layer: forward(x, exc) = Excitation(module(x), exc). Called without an
  excitation map it is the wrapped layer unchanged (E = 1 gives F_out = F_in), so a parent whose
  forward still calls `layer(x)` keeps working.
- `excite(net, "name.of.layer")` replaces a named submodule by its `Excited` wrapper in place and
  returns the wrapper; the network's excitation-aware forward then calls that layer as
  `layer(x, exc)`. Everything here compiles with torch.jit.script.
- A network whose forward is not excitation-aware (its code calls `layer(x)`) is excited by setting
  the wrapper's `exc` before calling the network (`wrapper.exc = pha`), and `None` after: the way
  to put excitation into any model of ours without changing its code (tests do it with dcnn).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: the paper's initial excitation intensity g
GAMMA = 0.5


class Excitation(nn.Module):
    """F_out = g * F_in * E + (1 - g) * F_in, with E resized to F_in. Shapes in the module docstring."""

    def __init__(self, gamma: float = GAMMA):
        super().__init__()
        self.gamma = nn.Parameter(torch.tensor(float(gamma)))

    def forward(self, hid: Tensor, exc: Tensor) -> Tensor:
        exc = F.interpolate(exc.to(hid.dtype), size=(hid.shape[-2], hid.shape[-1]), mode="area")
        return self.gamma * (hid * exc) + (1.0 - self.gamma) * hid


class Excited(nn.Module):
    """A layer whose output is excited: forward(x, exc) = Excitation(module(x), exc).

    x: whatever the wrapped module takes (one tensor); exc: (B, 1, H, W) in [0, 1], or None for the
    wrapped module's plain output. Returns the module's (B, C, h, w) output, excited.
    """

    def __init__(self, module: nn.Module, gamma: float = GAMMA):
        super().__init__()
        self.module = module
        self.excitation = Excitation(gamma)
        #: map used when forward gets none (for parents that call `layer(x)`); None: no excitation
        self.exc: Optional[Tensor] = None

    def forward(self, x: Tensor, exc: Optional[Tensor] = None) -> Tensor:
        hid = self.module(x)
        if exc is None:
            exc = self.exc
        if exc is None:
            return hid
        return self.excitation(hid, exc)


def excite(net: nn.Module, layer: str, gamma: float = GAMMA) -> Excited:
    """Replace `net`'s submodule named `layer` (dotted path, as in `net.named_modules()`) by
    `Excited(that submodule)`, in place. Returns the wrapper. Raises AttributeError for an unknown
    name and ValueError for a layer that is already excited."""
    target = net.get_submodule(layer)
    if isinstance(target, Excited):
        raise ValueError(f"layer {layer!r} is already excited")
    parent_name, _, child = layer.rpartition(".")
    wrapper = Excited(target, gamma)
    setattr(net.get_submodule(parent_name), child, wrapper)
    return wrapper
