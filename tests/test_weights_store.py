"""Model identity and the weights search path: $MATTEBOX_WEIGHTS (a studio folder) first, then the shipped
models/weights/; weights installed into the studio folder; a digest per weights file; a re-installed
model served with its new weights by a running server (and listed with its new digest) without a
restart; a deleted fine-tune gone from the list. The shipped folder is only read here."""
from __future__ import annotations

import hashlib
import json
import os

import grpc
import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from models import store
from models.base import Sample
from models.catalogue import MODELS
from models.registry import Registry
from plugin.cli.main import main
from plugin.client.connection import Client

NETWORKS = ("bgm", "bgm_excite", "dcnn", "lightweight", "msia")


@pytest.fixture
def studio(tmp_path, monkeypatch):
    """A studio weights folder, first on the search path (the shipped models stay on it)."""
    folder = tmp_path / "studio"
    monkeypatch.setenv("MATTEBOX_WEIGHTS", str(folder))
    monkeypatch.delenv("MATTEBOX_SHIPPED_WEIGHTS", raising=False)
    return folder


def state(model: str, seed: int) -> dict[str, torch.Tensor]:
    """Random weights for `model`'s network, the same for the same seed."""
    torch.manual_seed(seed)
    return Registry().model(model).build().state_dict()


def image() -> np.ndarray:
    return np.random.default_rng(5).integers(0, 256, (48, 64, 3), dtype=np.uint8)


def in_process(name: str) -> np.ndarray:
    """The alpha a fresh registry in this process computes for image() (what the server must send)."""
    model = Registry().get(name)
    return model.run([model.prepare(Sample(image=image()))])[0]


def test_search_path_puts_the_studio_first_and_keeps_the_shipped_models(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    monkeypatch.delenv("MATTEBOX_SHIPPED_WEIGHTS", raising=False)
    monkeypatch.delenv("MATTEBOX_WEIGHTS", raising=False)
    assert store.folders() == [store.SHIPPED]
    monkeypatch.setenv("MATTEBOX_WEIGHTS", f"{a}{os.pathsep}{b}")
    assert store.folders() == [a, b, store.SHIPPED]
    b.mkdir()
    (b / "x.safetensors").write_bytes(b"b")
    assert store.find("x.safetensors") == b / "x.safetensors"
    a.mkdir()
    (a / "x.safetensors").write_bytes(b"a")
    assert store.find("x.safetensors") == a / "x.safetensors"
    assert store.find("nowhere.safetensors") is None

    registry = Registry()  # the studio folders hide none of the shipped models
    assert set(NETWORKS) <= set(registry.names())
    for name in NETWORKS:
        assert registry.model(name).weights_path() == store.SHIPPED / f"{name}.safetensors"
    shipped = registry.info("dcnn")
    assert shipped.weights and shipped.digest == store.digest(store.SHIPPED / "dcnn.safetensors")
    assert json.loads(shipped.card) == json.loads((store.SHIPPED / "dcnn.json").read_text())
    assert registry.info("closed_form").digest == "" and registry.info("closed_form").card == ""

    store.install("dcnn", state("dcnn", 0), {"model": "dcnn", "steps": 3})  # `train --install` in a studio
    studio = registry.info("dcnn")
    assert studio.digest == store.digest(a / "dcnn.safetensors") != shipped.digest
    assert json.loads(studio.card) == {"model": "dcnn", "steps": 3}  # the card beside the weights served
    assert registry.model("dcnn").weights_path() == a / "dcnn.safetensors"


def test_install_writes_weights_and_card_into_the_studio_folder(studio, tmp_path):
    run = tmp_path / "run" / "dcnn.safetensors"  # what `mattebox train` leaves in its run folder
    run.parent.mkdir()
    from safetensors.torch import save_file

    save_file(state("dcnn", 0), str(run))
    card = {"model": "dcnn", "steps": 5, "validation": {"sad": 1.5}}
    assert store.install("dcnn", run, card) == studio / "dcnn.safetensors"
    assert (studio / "dcnn.safetensors").read_bytes() == run.read_bytes()
    assert json.loads((studio / "dcnn.json").read_text()) == card
    assert sorted(p.name for p in studio.iterdir()) == ["dcnn.json", "dcnn.safetensors"]  # no temporary left
    assert (studio / "dcnn.safetensors").stat().st_mode & 0o777 == 0o644  # a server of another user reads it

    ft_card = {"base": "lightweight", "steps": 2, "held_sad_after": 0.5}  # `mattebox finetune`: a state dict
    weights = state("lightweight", 1)
    path = store.install("lw-shot", weights, ft_card)
    got = load_file(str(path))
    assert got.keys() == weights.keys() and all(torch.equal(got[k], weights[k]) for k in got)
    with safe_open(str(path), "pt") as f:
        assert json.loads(f.metadata()["mattebox"]) == ft_card
    info = Registry().info("lw-shot")
    assert info.weights and json.loads(info.card) == ft_card and info.inputs == ("image",)


def test_digest_follows_the_bytes_of_the_file(tmp_path):
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"one")
    first = store.digest(path)
    assert first == "sha256:" + hashlib.sha256(b"one").hexdigest()
    path.write_bytes(b"two")  # same size, rewritten in place
    assert store.digest(path) == "sha256:" + hashlib.sha256(b"two").hexdigest()
    tmp = tmp_path / "new"
    tmp.write_bytes(b"one")
    os.replace(tmp, path)  # renamed into place, as `install` does
    assert store.digest(path) == first


def test_a_reinstalled_model_is_reloaded_in_a_new_instance(studio):
    """The old instance is left as it was (a frame running on it finishes with the old weights)."""
    store.install("lw-shot", state("lightweight", 0), {"base": "lightweight"})
    registry = Registry()
    old = registry.get("lw-shot")
    assert registry.get("lw-shot") is old and registry.get("lw-shot", "cpu") is old and registry.info("lw-shot").loaded
    store.install("lw-shot", state("lightweight", 1), {"base": "lightweight"})
    assert registry.info("lw-shot").loaded is False  # the listing sees the new file: the old one is not served
    new = registry.get("lw-shot")
    assert new is not old and registry.get("lw-shot") is new
    for net, seed in ((old.net, 0), (new.net, 1)):
        want = state("lightweight", seed)
        assert all(torch.equal(v, want[k]) for k, v in net.state_dict().items())


def test_a_running_server_serves_new_weights_and_drops_a_deleted_finetune(studio, make_server, capsys):
    path = store.install("lw-shot", state("lightweight", 0), {"base": "lightweight", "steps": 7})
    running = make_server(registry=Registry({"lightweight": MODELS["lightweight"]}))  # lists 2 models: fast
    with Client(running.address) as c:
        listed = {m.name: m for m in c.models()}["lw-shot"]
        assert listed.digest == store.digest(path) and json.loads(listed.card)["steps"] == 7
        first = c.matte("lw-shot", image(), timeout=60).astype(np.float32)
        np.testing.assert_allclose(first, in_process("lw-shot"), atol=2e-3)
        assert main(["models", "--json", "--server", running.address]) == 0
        cli = {m["name"]: m for m in json.loads(capsys.readouterr().out)}["lw-shot"]
        assert cli["digest"] == listed.digest and cli["card"]["steps"] == 7
        assert main(["models", "--server", running.address]) == 0
        assert listed.digest[:19] in capsys.readouterr().out  # the text table shows the digest too

        store.install("lw-shot", state("lightweight", 1), {"base": "lightweight", "steps": 9})  # re-run
        relisted = {m.name: m for m in c.models()}["lw-shot"]
        assert relisted.digest == store.digest(path) != listed.digest and json.loads(relisted.card)["steps"] == 9
        second = c.matte("lw-shot", image(), timeout=60).astype(np.float32)
        np.testing.assert_allclose(second, in_process("lw-shot"), atol=2e-3)
        assert np.abs(second - first).max() > 0.01  # the new weights, not the cached network

        path.unlink()
        path.with_suffix(".json").unlink()
        assert "lw-shot" not in [m.name for m in c.models()]
        with pytest.raises(grpc.RpcError) as err:
            c.matte("lw-shot", image(), timeout=60)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND and "unknown model 'lw-shot'" in err.value.details()
        assert c.matte("lightweight", image(), timeout=60).shape == (48, 64)  # the shipped one still serves
