"""Several foreground sources as one (`mattebox train --data A --data B`): the items of each in turn,
each source holding out its own validation split (alphamatting's last photos, composition1k's held
objects), and the terms of every source that states them."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class JoinedForegrounds:
    """parts: foreground sources (PhotoForegrounds, Composition1kForegrounds, ...), each with `names`,
    `licence`, `held_out`, `subset`, `len` and `get(i) -> (fgr (H, W, 3) float32 in [0, 1], pha (H, W)
    float32 in [0, 1])`. Item i is part k's item i - (items of parts before k)."""

    def __init__(self, parts: Sequence):
        if not parts:
            raise ValueError("no foreground sources to join")
        self.parts = list(parts)
        self.names = [n for p in self.parts for n in p.names]
        self.licence = "; ".join(dict.fromkeys(p.licence for p in self.parts if p.licence))

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)

    def get(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        for p in self.parts:
            if i < len(p):
                return p.get(i)
            i -= len(p)
        raise IndexError(i)

    def split(self, given: Sequence[str] | None = None) -> tuple[JoinedForegrounds, JoinedForegrounds]:
        """(train, validation): each part split by its own rule, or by the `given` names it holds
        (--val-names; a name no part holds is a ValueError)."""
        if given:
            unknown = set(given) - set(self.names)
            if unknown:
                raise ValueError(f"--val-names: no foreground named {', '.join(sorted(unknown))}")
        train, val = [], []
        for p in self.parts:
            mine = [n for n in given if n in p.names] if given else None
            held = p.held_out(mine) if (mine or not given) else ()
            train.append(p.subset([n for n in p.names if n not in held]))
            if held:
                val.append(p.subset(list(held)))
        return JoinedForegrounds(train), JoinedForegrounds(val)
