"""MSIA-matte (models.msia): shapes, gradients, TorchScript, presets, a tiny overfit, serving."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from models.base import Sample
from models.msia.assembly import InformationAssembly
from models.msia.config import PRESETS
from models.msia.model import MSIA, MSIANet
from models.msia.resnext import PRESETS as RESNEXT
from models.msia.resnext import ResNeXt
from training.synthetic import make_shot


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return MSIANet(PRESETS["cpu"]).eval()


@pytest.mark.parametrize("h, w", [(37, 53), (64, 80), (1, 1)])
def test_any_size_batch_two_gives_alpha_in_unit_range(net, h, w):
    x = torch.rand(2, 3, h, w)
    with torch.no_grad():
        pha = net(x)
        again = net(x)
    assert pha.shape == (2, 1, h, w)
    assert pha.dtype == torch.float32
    assert 0 <= pha.min() and pha.max() <= 1
    assert torch.equal(pha, again)  # deterministic in eval mode


def test_batch_items_are_independent_in_eval(net):
    x = torch.rand(2, 3, 37, 53)
    with torch.no_grad():
        assert torch.allclose(net(x)[1:], net(x[1:]), atol=1e-6)


@pytest.mark.parametrize("output_stride", [8, 32])
def test_other_output_strides(output_stride):
    cfg = replace(PRESETS["cpu"], backbone=replace(PRESETS["cpu"].backbone, output_stride=output_stride))
    net = MSIANet(cfg).eval()
    with torch.no_grad():
        low, high = net.backbone(torch.rand(1, 3, 64, 96))
        assert low.shape[-2:] == (16, 24)
        assert high.shape[-2:] == (64 // output_stride, 96 // output_stride)
        assert net(torch.rand(1, 3, 37, 53)).shape == (1, 1, 37, 53)


def test_forward_train_returns_the_supervised_alpha(net):
    x = torch.rand(1, 3, 37, 53)
    with torch.no_grad():
        out = net.forward_train(x)
        assert set(out) == {"pha"}
        assert torch.equal(out["pha"], net(x))


def test_gradients_reach_every_parameter():
    torch.manual_seed(1)
    net = MSIANet(PRESETS["cpu"]).train()
    pha = net(torch.rand(2, 3, 64, 80))
    (pha - torch.rand_like(pha)).abs().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name


def test_torchscript_matches_eager(net):
    scripted = torch.jit.script(net)
    for h, w in [(37, 53), (64, 80)]:
        x = torch.rand(2, 3, h, w)
        with torch.no_grad():
            torch.testing.assert_close(scripted(x), net(x), atol=1e-5, rtol=0)


def test_assembly_weights_are_per_image_and_normalised():
    torch.manual_seed(2)
    ia = InformationAssembly(aspp=4, sed=6)
    aspp, sed = torch.rand(3, 4, 2, 3), torch.rand(3, 6, 4, 6)
    out = ia(aspp, sed)
    assert out.shape == (3, 10, 4, 6)
    # recover the weights: F_sed's share is an exact per-image multiple of F_sed
    w_sed = (out[:, 4:] / sed).flatten(1)
    assert torch.allclose(w_sed, w_sed[:, :1].expand_as(w_sed), atol=1e-5)
    up = torch.nn.functional.interpolate(aspp, size=(4, 6), mode="bilinear", align_corners=False)
    w_aspp = (out[:, :4] / up).flatten(1)[:, 0]
    assert torch.allclose(w_aspp + w_sed[:, 0], torch.ones(3), atol=1e-5)
    assert (w_aspp > 0).all() and (w_sed > 0).all()


def test_model_reports_size_and_cost():
    model = MSIA()
    assert model.name == "msia" and model.inputs == ("image",)
    assert 1e6 < model.params() < 3e6
    assert 1 < model.gflops_512() < 10


def test_published_backbones_have_their_known_size():
    assert count(ResNeXt(RESNEXT["resnext50_32x4d"])) == pytest.approx(22.98e6, rel=0.01)
    assert count(ResNeXt(RESNEXT["resnext101_32x8d"])) == pytest.approx(86.74e6, rel=0.01)
    full = MSIANet(PRESETS["resnext50_32x4d"])  # builds; too slow to run here
    assert full.traces.ini[0][0].out_channels == 64 and full.traces.sed[-1][0].out_channels == 256


def test_overfits_one_composite():
    torch.manual_seed(3)
    shot = make_shot(width=64, height=64, frames=1, seed=5)
    x = torch.from_numpy(shot.image[0]).permute(2, 0, 1)[None]
    true_pha = torch.from_numpy(shot.alpha[0])[None, None]
    net = MSIANet(PRESETS["cpu"]).train()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = (net(x) - true_pha).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 4, losses


def test_runs_as_a_registry_model_with_saved_weights(weights_dir):
    model = MSIA()
    assert not model.weights_ready()
    save_file(model.build().state_dict(), str(weights_dir / "msia.safetensors"))
    assert model.weights_ready()
    model.load("cpu")
    image = (np.random.default_rng(0).random((37, 53, 3)) * 255).astype(np.uint8)
    (pha,) = model.run([model.prepare(Sample(image=image))])
    assert pha.shape == (37, 53) and pha.dtype == np.float32
    assert 0 <= pha.min() and pha.max() <= 1
