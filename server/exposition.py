"""The /metrics endpoint (`mattebox serve --metrics-port N`): prometheus_client's HTTP exposition of
server.metrics.REGISTRY, plus the GPU memory torch holds, read at each scrape.

The endpoint has no authentication; server/app.py binds it to loopback unless the operator says
otherwise (--insecure-metrics)."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server
from prometheus_client.core import GaugeMetricFamily

from server.metrics import REGISTRY


class GpuMemory:
    """mattebox_gpu_memory_bytes{device="cuda:N", kind="allocated|reserved|total"}: the bytes torch's
    allocator has handed to tensors, the bytes it holds from the driver, and the GPU's memory. Nothing
    on a machine without CUDA."""

    def collect(self):
        import torch

        if not torch.cuda.is_available():
            return
        family = GaugeMetricFamily("mattebox_gpu_memory_bytes", "GPU memory: allocated to tensors, reserved by "
                                   "torch's allocator, total on the device", labels=["device", "kind"])
        for i in range(torch.cuda.device_count()):
            device = f"cuda:{i}"
            family.add_metric([device, "allocated"], torch.cuda.memory_allocated(i))
            family.add_metric([device, "reserved"], torch.cuda.memory_reserved(i))
            family.add_metric([device, "total"], torch.cuda.get_device_properties(i).total_memory)
        yield family


REGISTRY.register(GpuMemory())


@dataclass
class Endpoint:
    """A started /metrics HTTP server."""

    url: str
    httpd: WSGIServer
    thread: threading.Thread

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


def serve(host: str, port: int) -> Endpoint:
    """Serve REGISTRY's metrics at http://host:port/metrics in a daemon thread. Raises OSError when
    the port cannot be bound."""
    httpd, thread = start_http_server(port, host, REGISTRY)
    shown = f"[{host}]" if ":" in host else host
    return Endpoint(f"http://{shown}:{httpd.server_port}/metrics", httpd, thread)
