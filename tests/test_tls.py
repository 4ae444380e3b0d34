"""TLS: a server with a certificate serves clients that trust its CA, and only those; a token off
loopback needs TLS (or the operator's --insecure-token); client certificates (mutual TLS) from the
client library, the command line and the host settings."""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest

from plugin.client.connection import Client
from server.api import pb, rpc
from server.app import ConfigError, ServerConfig, start

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


# -- a token needs TLS off loopback (issue 14, defect 8) ------------------------------------------------


def _listing(address: str, token: str, **tls) -> pb.ListModelsResponse:
    with Client(address, token=token, **tls) as c:
        return rpc.MattingStub(c.channel).ListModels(pb.ListModelsRequest(), timeout=30, metadata=c.metadata)


def test_token_without_tls_off_loopback_is_refused_unless_insecure_token(cert, caplog):
    with pytest.raises(ConfigError, match="--insecure-token") as err:
        start(ServerConfig(host="0.0.0.0", port=0, token="t0k", grace_s=1))
    assert "TLS" in str(err.value) and "in clear" in str(err.value)
    # said on the command line, the operator gets the server, a warning in its log, and every client is told
    with caplog.at_level(logging.WARNING, logger="mattebox.server"):
        running = start(ServerConfig(host="0.0.0.0", port=0, token="t0k", insecure_token=True, grace_s=1))
    try:
        assert any("without TLS" in r.getMessage() for r in caplog.records)
        reply = _listing(f"127.0.0.1:{running.address.rsplit(':', 1)[1]}", "t0k")
        assert "closed_form" in [m.name for m in reply.models]
        assert [w for w in reply.warnings if "without TLS" in w and "--insecure-token" in w], reply.warnings
        # and `mattebox models` says it, on stderr: --json's stdout stays the list hosts parse
        r = subprocess.run([sys.executable, "-m", "plugin.cli.main", "models", "--json", "--server",
                            f"127.0.0.1:{running.address.rsplit(':', 1)[1]}"], capture_output=True, text=True,
                           timeout=60, env={**os.environ, "MATTEBOX_TOKEN": "t0k"})
        assert r.returncode == 0 and "closed_form" in [m["name"] for m in json.loads(r.stdout)], r.stderr
        assert "WARNING" in r.stderr and "without TLS" in r.stderr, r.stderr
    finally:
        running.stop()
    # with TLS, and on loopback without it, the same token is served with nothing to warn about
    for cfg in (ServerConfig(host="0.0.0.0", port=0, token="t0k", tls_cert=cert[0], tls_key=cert[1], grace_s=1),
                ServerConfig(port=0, token="t0k", grace_s=1)):
        running = start(cfg)
        try:
            port = running.address.rsplit(":", 1)[1]
            tls = {"tls_ca": cert[0]} if cfg.tls_cert else {}
            assert list(_listing(f"127.0.0.1:{port}", "t0k", **tls).warnings) == []
        finally:
            running.stop()


def test_serve_command_refuses_a_clear_token_off_loopback():
    r = subprocess.run([sys.executable, "-m", "plugin.cli.main", "serve", "--host", "0.0.0.0", "--port", "0",
                        "--token", "t0k"], capture_output=True, text=True, timeout=20)
    assert r.returncode == 2 and "--insecure-token" in r.stderr, r.stderr


# -- client certificates (mutual TLS) ------------------------------------------------------------------


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, a server certificate and a client certificate it signed, and a client certificate signed
    by another CA: {name: path}."""
    d = tmp_path_factory.mktemp("pki")
    p = {k: str(d / k) for k in ("ca.pem", "ca.key", "server.pem", "server.key", "client.pem", "client.key",
                                  "rogue-ca.pem", "rogue-ca.key", "rogue.pem", "rogue.key")}
    for ca in ("ca", "rogue-ca"):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN=mattebox test {ca}",
                 "-keyout", p[f"{ca}.key"], "-out", p[f"{ca}.pem"])
    ext = d / "ext.cnf"
    ext.write_text("[server]\nsubjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
                   "[client]\nextendedKeyUsage=clientAuth\n")
    for name, ca, section in (("server", "ca", "server"), ("client", "ca", "client"), ("rogue", "rogue-ca", "client")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", p[f"{name}.key"],
                 "-out", str(d / f"{name}.csr"))
        _openssl("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", p[f"{ca}.pem"], "-CAkey", p[f"{ca}.key"],
                 "-CAcreateserial", "-days", "1", "-extfile", str(ext), "-extensions", section, "-out", p[f"{name}.pem"])
    return p


@pytest.fixture(scope="module")
def mtls(pki):
    running = start(ServerConfig(port=0, tls_cert=pki["server.pem"], tls_key=pki["server.key"],
                                 tls_client_ca=pki["ca.pem"], token="t0k", grace_s=1))
    yield running
    running.stop()


def test_client_certificate_is_required_and_checked(mtls, pki, shot, direct):
    image = np.ascontiguousarray((shot.image[0] * 255).round().astype(np.uint8))
    plate = np.ascontiguousarray((shot.plate * 255).round().astype(np.uint8))
    with Client(mtls.address, token="t0k", tls_ca=pki["ca.pem"], tls_cert=pki["client.pem"],
                tls_key=pki["client.key"]) as c:
        assert c.health() == "SERVING"
        np.testing.assert_array_equal(c.matte("difference", image, background=plate, timeout=30),
                                      direct("difference", image, background=plate))
    for tls in ({"tls_ca": pki["ca.pem"]},  # no certificate
                {"tls_ca": pki["ca.pem"], "tls_cert": pki["rogue.pem"], "tls_key": pki["rogue.key"]}):  # another CA's
        with Client(mtls.address, token="t0k", **tls) as c, pytest.raises(grpc.RpcError) as err:
            c.models(timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(ValueError, match="tls_key"):
        Client(mtls.address, tls_ca=pki["ca.pem"], tls_cert=pki["client.pem"])


def test_command_line_and_host_settings_present_the_certificate(mtls, pki, tmp_path):
    base = [sys.executable, "-m", "plugin.cli.main", "models", "--server", mtls.address, "--tls-ca", pki["ca.pem"],
            "--json"]
    env = dict(os.environ, MATTEBOX_TOKEN="t0k")
    r = subprocess.run(base + ["--tls-cert", pki["client.pem"], "--tls-key", pki["client.key"]], capture_output=True,
                       text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    assert "closed_form" in [m["name"] for m in json.loads(r.stdout)]
    r = subprocess.run(base, capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 1 and "UNAVAILABLE" in r.stderr

    from plugin.host import client, config

    mattebox = str(Path(sys.executable).with_name("mattebox"))
    cfg = config.Config(client=mattebox, server=mtls.address, token="t0k", tls_ca=pki["ca.pem"],
                        tls_cert=pki["client.pem"], tls_key=pki["client.key"])
    assert client._connection(cfg)[-4:] == ["--tls-cert", pki["client.pem"], "--tls-key", pki["client.key"]]
    assert "closed_form" in [m["name"] for m in client.models(cfg)]
    with pytest.raises(client.HostError):
        client.models(config.Config(client=mattebox, server=mtls.address, token="t0k", tls_ca=pki["ca.pem"]),
                      timeout=30)
    # the keys are checked like the others, and saved and loaded back
    file = tmp_path / "client.json"
    config.save(cfg, file)
    assert config.load(file).tls_key == pki["client.key"]
    for bad, says in (({"tls_cert": 5}, "'tls_cert' is 5"), ({"tls_cert": pki["client.pem"]}, "go together")):
        file.write_text(json.dumps(bad))
        with pytest.raises(config.ConfigError, match=says):
            config.load(file)
