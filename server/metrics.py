"""What the server counts, as Prometheus metrics (`mattebox serve --metrics-port N` serves them at
/metrics). One set per process, in the module's own registry, so that every part of the server
counts into the same place without passing objects around:

- FRAMES{model, status}: frames answered, status "ok", "error" or "cancelled"
- INFERENCE{model}: seconds a model's run took for one batch (histogram)
- BATCH{model}: frames per device batch (histogram)
- QUEUE_DEPTH: frames waiting for a device worker or the CPU stage
- BYTES_IN_FLIGHT: bytes of frames the server holds for calls in progress (streams, regions, jobs)
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry()

FRAMES = Counter("mattebox_frames", "frames answered, by model and status (ok, error, cancelled)",
                 ["model", "status"], registry=REGISTRY)
INFERENCE = Histogram("mattebox_inference_seconds", "seconds one model run took (one batch)", ["model"],
                      buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120),
                      registry=REGISTRY)
BATCH = Histogram("mattebox_batch_size", "frames in one device batch", ["model"],
                  buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32), registry=REGISTRY)
QUEUE_DEPTH = Gauge("mattebox_queue_depth", "frames waiting for a device worker or the CPU stage",
                    registry=REGISTRY)
BYTES_IN_FLIGHT = Gauge("mattebox_bytes_in_flight", "bytes of frames held for calls in progress",
                        registry=REGISTRY)
