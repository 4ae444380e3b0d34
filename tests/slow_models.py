"""Test-only models that hold their frames until a test opens their gate, so that tests can see what
overtakes what without clocks. Served through Registry(catalogue=GATED) (tests/ is on sys.path)."""
from __future__ import annotations

import threading

import numpy as np

from models.base import MattingModel, Sample
from models.catalogue import MODELS

#: the shipped catalogue plus the gated models
GATED = {**MODELS, "slow_cpu": "slow_models:SlowCPU", "slow_net": "slow_models:SlowNet"}


class Gate:
    """started: set when a frame reaches the model's run; open: set by the test to let runs finish;
    prepared: how many frames the model prepared (the CPU stage's work), with `changed` notified."""

    def __init__(self):
        self.started = threading.Event()
        self.open = threading.Event()
        self.prepared = 0
        self.changed = threading.Condition()

    def wait_prepared(self, n: int, timeout: float = 30) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: self.prepared >= n, timeout)


class _Gated(MattingModel):
    gate = Gate()  # replaced by each test (tests/test_pipeline.py's `gates` fixture)

    def prepare(self, sample: Sample) -> Sample:
        out = super().prepare(sample)
        with self.gate.changed:
            self.gate.prepared += 1
            self.gate.changed.notify_all()
        return out

    def run(self, batch: list[Sample]) -> list[np.ndarray]:
        """(H, W) float32 zeros per sample, once the gate is open."""
        self.gate.started.set()
        if not self.gate.open.wait(60):
            raise TimeoutError("the test never opened the gate")
        return [np.zeros(s.image.shape[:2], np.float32) for s in batch]


class SlowCPU(_Gated):
    name = "slow_cpu"
    description = "Test model: a CPU model that runs as long as the test wants."
    runs_on = "cpu"


class SlowNet(_Gated):
    name = "slow_net"
    description = "Test model: a device model (a network's place) that runs as long as the test wants."
    runs_on = "accelerator"
