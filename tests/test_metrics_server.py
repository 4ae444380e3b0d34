"""Operating a server: the Prometheus text at /metrics (`mattebox serve --metrics-port`), per-model
readiness through grpc.health.v1, and the start-up checks of --devices and the metrics address."""
from __future__ import annotations

import socket
import subprocess
import sys
import threading
import urllib.request

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from models import store
from models.registry import Registry
from plugin.cli.connect import server_process
from plugin.client.connection import Client
from server.app import ConfigError, ServerConfig, start

Status = health_pb2.HealthCheckResponse


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """/metrics parsed by prometheus_client's own parser: (sample name, sorted labels) -> value."""
    with urllib.request.urlopen(url, timeout=10) as reply:
        assert reply.headers["Content-Type"].startswith("text/plain")
        text = reply.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def health(channel: grpc.Channel, service: str) -> str:
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
    return Status.ServingStatus.Name(reply.status)


def test_serve_metrics_port_counts_a_matted_frame():
    """`mattebox serve --metrics-port N`: a frame matted over gRPC shows in the counters, the inference
    histogram and the queue gauge; GPU memory only where torch sees a GPU."""
    import torch

    rng = np.random.default_rng(0)
    plate = rng.random((48, 64, 3), dtype=np.float32)
    image = plate.copy()
    image[10:30, 20:40] = 1.0
    with server_process("--metrics-port", str(free_port()), "--devices", "cpu") as info:
        url = info["metrics"]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
        ok = ("mattebox_frames_total", (("model", "difference"), ("status", "ok")))
        before = scrape(url).get(ok, 0.0)
        with Client(info["address"]) as c:
            alpha = c.matte("difference", image, background=plate)
        assert alpha.shape == (48, 64) and alpha[20, 30] > 0.5 > alpha[0, 0]
        after = scrape(url)
    assert after[ok] == before + 1
    assert after[("mattebox_inference_seconds_count", (("model", "difference"),))] >= 1
    assert any(name == "mattebox_inference_seconds_bucket" and dict(labels)["model"] == "difference"
               for name, labels in after)
    assert ("mattebox_queue_depth", ()) in after
    gpu = {dict(labels)["kind"] for name, labels in after if name == "mattebox_gpu_memory_bytes"}
    assert gpu == ({"allocated", "reserved", "total"} if torch.cuda.is_available() else set())


def test_health_per_model_follows_the_weights_folders(tmp_path, monkeypatch):
    """Service name = model name: SERVING for a classical model, NOT_SERVING for a network without
    weights; a fine-tune installed while the server runs turns SERVING (pushed to a Watch by the periodic
    reading), and once deleted it is SERVICE_UNKNOWN."""
    monkeypatch.setenv("MATTEBOX_WEIGHTS", str(tmp_path / "studio"))
    monkeypatch.setenv("MATTEBOX_SHIPPED_WEIGHTS", str(tmp_path / "shipped"))
    running = start(ServerConfig(port=0, grace_s=2.0), Registry())
    try:
        channel = grpc.insecure_channel(running.address)
        assert health(channel, "") == "SERVING"
        assert health(channel, "knn") == "SERVING"
        assert health(channel, "lightweight") == "NOT_SERVING"
        with pytest.raises(grpc.RpcError) as err:
            health(channel, "sh010_roto")
        assert err.value.code() == grpc.StatusCode.NOT_FOUND

        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service="sh010_roto"),
                                                          timeout=60)
        assert next(watch).status == Status.SERVICE_UNKNOWN
        net = Registry().model("lightweight").build()
        path = store.install("sh010_roto", net.state_dict(), {"base": "lightweight"})
        assert next(watch).status == Status.SERVING  # no call asked: the periodic reading told the watcher
        watch.cancel()
        assert health(channel, "sh010_roto") == "SERVING"

        path.unlink()
        assert health(channel, "sh010_roto") == "SERVICE_UNKNOWN"
        with Client(running.address) as c:
            assert "sh010_roto" not in [m.name for m in c.models()]
        channel.close()
    finally:
        running.stop()


def test_listing_refreshes_readiness(tmp_path, monkeypatch):
    """A ListModels answer and the health service agree: a fine-tune the listing shows is SERVING."""
    monkeypatch.setenv("MATTEBOX_WEIGHTS", str(tmp_path / "studio"))
    running = start(ServerConfig(port=0, grace_s=2.0, metrics_port=free_port()), Registry())
    try:
        store.install("sh020_fix", Registry().model("lightweight").build().state_dict(), {"base": "lightweight"})
        with Client(running.address) as c:
            assert "sh020_fix" in [m.name for m in c.models()]
        assert scrape(running.metrics.url)[("mattebox_model_ready", (("model", "sh020_fix"),))] == 1
    finally:
        running.stop()


@pytest.mark.parametrize("devices, named", [(["cuda:99"], "'cuda:99'"), (["cpu", "gpu0"], "'gpu0'"),
                                            (["cpu", "cpu"], "name each device once")])
def test_devices_not_on_this_machine_are_refused(devices, named):
    import torch

    with pytest.raises(ConfigError) as err:
        start(ServerConfig(port=0, devices=devices))
    message = str(err.value)
    assert named in message
    if "once" not in named:
        visible = ", ".join(["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())])
        assert f"the devices visible are {visible}" in message


def test_serve_devices_flag_refuses_an_unknown_device():
    done = subprocess.run([sys.executable, "-m", "plugin.cli.main", "serve", "--port", "0", "--devices",
                           "cuda:99"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "mattebox serve: --devices: 'cuda:99' not a device here; the devices visible are cpu" in done.stderr


def test_metrics_off_loopback_need_insecure_metrics():
    """The endpoint has no authentication: another address is refused unless the operator says so."""
    with pytest.raises(ConfigError, match="--insecure-metrics"):
        start(ServerConfig(port=0, metrics_port=free_port(), metrics_host="0.0.0.0"))


@pytest.mark.parametrize("port", [-1, 70000])
def test_metrics_port_out_of_range_is_refused(port):
    with pytest.raises(ConfigError, match=f"--metrics-port {port}: give a port from 1 to 65535"):
        start(ServerConfig(port=0, metrics_port=port))


def test_metrics_port_taken_is_a_config_error_and_the_server_stopped():
    before = set(threading.enumerate())  # other tests' servers may run in this process
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=f"--metrics-port {port}"):
            start(ServerConfig(port=0, metrics_port=port))
    assert not [t for t in set(threading.enumerate()) - before if t.name in ("readiness", "worker-cpu")]
