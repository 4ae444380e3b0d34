"""TLS: a server with a certificate serves clients that trust its CA, and only those."""
from __future__ import annotations

import shutil
import subprocess

import grpc
import pytest

from plugin.client.connection import Client
from server.app import ServerConfig, start

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a cert")


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")], check=True, capture_output=True)
    return str(d / "cert.pem"), str(d / "key.pem")


def test_tls_server_with_token_serves_a_trusting_client_only(cert):
    running = start(ServerConfig(port=0, tls_cert=cert[0], tls_key=cert[1], token="t0k", grace_s=1))
    try:
        with Client(running.address, token="t0k", tls_ca=cert[0]) as c:
            assert c.health() == "SERVING"
            assert "closed_form" in [m.name for m in c.models()]
        with Client(running.address, token="t0k") as plain, pytest.raises(grpc.RpcError) as err:
            plain.models(timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        running.stop()
