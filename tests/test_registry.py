"""The registry as clients see it: every model listed with its declaration, and a network without
trained weights refused with a message that says how to train it (never run on random weights)."""
from __future__ import annotations

import grpc
import numpy as np
import pytest

from models.catalogue import MODELS
from models.network import NetworkModel
from models.registry import Registry
from plugin.client.connection import Client
from server.api import codec
from trained_bgm import trained_like

NETWORKS = [n for n in MODELS if isinstance(Registry().model(n), NetworkModel)]


def test_every_model_is_listed_with_its_declaration(client):
    listed = {m.name: m for m in client.models()}
    assert sorted(listed) == sorted(MODELS)
    for name, m in listed.items():
        assert codec.INPUT_NAMES[m.inputs[0]] == "image", name
        assert m.description and m.device


@pytest.mark.parametrize("name", NETWORKS)
def test_networks_report_parameters_and_flops(name):
    info = Registry().info(name)
    assert info.params > 0 and info.gflops_512 > 0


@pytest.mark.parametrize("name", NETWORKS)
def test_untrained_network_is_refused_with_how_to_train(name, weights_dir, make_server, shot, trimap,
                                                        expect_status):
    running = make_server(registry=Registry())
    image = np.rint(shot.image[0] * 255).astype(np.uint8)
    plate = np.rint(shot.plate * 255).astype(np.uint8)
    with Client(running.address) as c:
        info = {m.name: m for m in c.models()}[name]
        assert info.weights_ready is False
        needs = [codec.INPUT_NAMES[i] for i in info.inputs]
        with expect_status(grpc.StatusCode.FAILED_PRECONDITION, f"mattebox train --model {name}"):
            c.matte(name, image, trimap=trimap if "trimap" in needs else None,
                    background=plate if "background" in needs else None, timeout=60)
        assert c.matte("difference", image, background=plate, timeout=60).shape == image.shape[:2]


def test_steps_option_reaches_the_recursive_model(weights_dir, make_server, shot):
    """MatteOptions.steps (and `mattebox matte --steps`) sets bgm_excite's recursive passes."""
    from safetensors.torch import save_file

    import models.network
    from models.base import Sample
    from models.bgm.model import BGMExcite
    from server.api import pb

    save_file(trained_like(BGMExcite().build()).state_dict(), str(weights_dir / "bgm_excite.safetensors"))
    local = Registry().get("bgm_excite")
    image = np.rint(shot.image[0] * 255).astype(np.uint8)
    plate = np.rint(shot.plate * 255).astype(np.uint8)
    running = make_server(registry=Registry())
    with Client(running.address) as c:
        got = {k: c.matte("bgm_excite", image, background=plate, timeout=60,
                          options=pb.MatteOptions(steps=k, alpha_dtype=pb.FLOAT32)) for k in (0, 1, 2, 3)}
    for k in (1, 2, 3):
        want = local.run([local.prepare(Sample(image, background=plate, steps=k))])[0]
        np.testing.assert_allclose(got[k], want, atol=1e-5)
    np.testing.assert_array_equal(got[0], got[2])  # the default is the paper's s = 2
    assert not np.allclose(got[1], got[3], atol=1e-4)
