"""Tests for Background Matting ("bgm"), its excited recursive version ("bgm_excite", seed 000) and the
generic excitation layer (models/excitation.py)."""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from models.base import Sample
from models.bgm.generator import FULL, BGMConfig
from models.bgm.model import BGM, BGMExcite
from models.bgm.network import BGMExciteNet, BGMNet, pad, split
from models.bgm.resblock import ResBlock
from models.bgm.segmentation import soft_segmentation
from models.classical.difference import difference_key
from models.excitation import Excitation, Excited, excite
from trained_bgm import trained_like
from training.synthetic import make_shot

SIZES = [(37, 53), (64, 80)]


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def shot():
    return make_shot(width=64, height=64, frames=1, seed=3)


def shot_input(shot) -> torch.Tensor:
    """The shot's first frame and plate as the network input: (1, 6, 64, 64) in [0, 1]."""
    x = np.concatenate([shot.image[0], shot.plate], axis=2)
    return torch.from_numpy(x).permute(2, 0, 1)[None].contiguous()


def nets() -> list[nn.Module]:
    return [trained_like(BGMNet()).eval(), trained_like(BGMExciteNet()).eval()]


# -- shapes, ranges, determinism, export ------------------------------------------------------------


@pytest.mark.parametrize("h,w", SIZES + [(5, 3)])
def test_shapes_and_ranges(h, w):
    x = torch.rand(2, 6, h, w)
    for net in nets():
        with torch.no_grad():
            pha = net(x)
            out = net.forward_train(x) if isinstance(net, BGMNet) else net.forward_train(x, torch.rand(2, 1, h, w))
        assert pha.shape == (2, 1, h, w) and out["pha"].shape == (2, 1, h, w) and out["fgr"].shape == (2, 3, h, w)
        for t in (pha, out["pha"], out["fgr"]):
            assert torch.isfinite(t).all() and t.min() >= 0 and t.max() <= 1


def test_deterministic_in_eval():
    x = torch.rand(1, 6, 37, 53)
    for net in nets():
        with torch.no_grad():
            assert torch.equal(net(x), net(x))


def test_torchscript_parity():
    for net in nets():
        scripted = torch.jit.script(net)
        for h, w in SIZES:
            x = torch.rand(1, 6, h, w)
            with torch.no_grad():
                torch.testing.assert_close(scripted(x), net(x), atol=1e-5, rtol=0)
                if isinstance(net, BGMExciteNet):
                    torch.testing.assert_close(scripted.forward_steps(x, 1), net.forward_steps(x, 1), atol=1e-5, rtol=0)


def test_segmentation_is_the_difference_key(shot):
    src = torch.from_numpy(shot.image[0]).permute(2, 0, 1)[None]
    bgr = torch.from_numpy(shot.plate).permute(2, 0, 1)[None]
    seg = soft_segmentation(src, bgr)[0, 0].numpy()
    want = difference_key(shot.image[0], shot.plate)
    np.testing.assert_allclose(seg, want, atol=1e-5)
    assert want.max() > 0.9 and want.min() < 0.1  # the shot has both subject and background


# -- training -----------------------------------------------------------------------------------------


def test_untrained_residual_head_returns_the_plate_key():
    """Started at zero, the residual alpha head gives S on every path (one pass, s passes, training);
    the published head (residual=False) does not."""
    x = torch.rand(2, 6, 37, 53)
    seg = split(pad(x))[2][:, :, :37, :53]
    with torch.no_grad():
        torch.testing.assert_close(BGMNet().eval()(x), seg, atol=1e-6, rtol=0)
        excited = BGMExciteNet().eval()
        for steps in (1, 2, 3):
            torch.testing.assert_close(excited.forward_steps(x, steps), seg, atol=1e-6, rtol=0)
        torch.testing.assert_close(excited.forward_train(x, torch.rand(2, 1, 37, 53))["pha"], seg, atol=1e-6, rtol=0)
        published = BGMNet(BGMConfig(residual=False)).eval()(x)
    assert (published - seg).abs().mean() > 0.05


def test_gradients_reach_every_parameter():
    x = torch.rand(2, 6, 37, 53)
    for net in nets():
        net.train()
        out = net.forward_train(x) if isinstance(net, BGMNet) else net.forward_train(x, torch.rand(2, 1, 37, 53))
        (out["pha"].mean() + out["fgr"].mean()).backward()
        for name, p in net.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("excited", [False, True])
def test_overfits_one_composite(shot, excited):
    x = shot_input(shot)
    true_pha = torch.from_numpy(shot.alpha[0])[None, None]
    net = BGMExciteNet() if excited else BGMNet()
    exc = split(x)[2]  # the pseudo-GT (stage 3 of the curriculum)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    losses = []
    for _ in range(40):
        out = net.forward_train(x, exc) if excited else net.forward_train(x)
        loss = (out["pha"] - true_pha).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert min(losses[-3:]) < losses[0] / 2  # losses[0] is the plate key's own error (the head starts at S)


# -- the registry models ------------------------------------------------------------------------------


def test_params_and_gflops():
    bgm, excited = BGM(), BGMExcite()
    assert bgm.params() == sum(p.numel() for p in BGMNet().parameters())
    assert excited.params() == bgm.params() + 1  # the excitation intensity g
    assert 3e5 < bgm.params() < 1e6
    assert 10 < bgm.gflops_512() < 100
    # two recursive passes repeat the trunk and alpha head, but skip the foreground head
    assert bgm.gflops_512() < excited.gflops_512() < 2 * bgm.gflops_512()


def test_full_size_is_the_published_one():
    with torch.device("meta"):
        full = sum(p.numel() for p in BGMNet(FULL).parameters())
    # the published 17.9 M includes the unused motion-cue encoder and its branch (0.43 M)
    assert full == pytest.approx(17.9e6, rel=0.03)


def loaded(cls, weights_dir):
    model = cls()
    assert not model.weights_ready()
    save_file(trained_like(model.build()).state_dict(), str(weights_dir / model.weights))
    assert model.weights_ready()
    model.load("cpu")
    return model


@pytest.mark.parametrize("cls", [BGM, BGMExcite])
def test_runs_through_the_model_class(cls, weights_dir, shot):
    model = loaded(cls, weights_dir)
    image = np.rint(shot.image[0, :37, :43] * 255).astype(np.uint8)
    plate = np.rint(shot.plate[:37, :43] * 255).astype(np.uint8)
    (alpha,) = model.run([model.prepare(Sample(image=image, background=plate))])
    assert alpha.shape == (37, 43) and alpha.dtype == np.float32
    assert alpha.min() >= 0 and alpha.max() <= 1


def test_sample_steps_are_honoured(weights_dir, shot):
    model = loaded(BGMExcite, weights_dir)
    sample = model.prepare(Sample(image=shot.image[0, :32, :40], background=shot.plate[:32, :40]))
    x = torch.from_numpy(model.pack(sample)).permute(2, 0, 1)[None]
    with torch.no_grad():
        want = {s: model.net.forward_steps(x, s)[0, 0].numpy() for s in (1, 2, 3)}
    got = {s: model.run([replace(sample, steps=s)])[0] for s in (0, 1, 2, 3)}
    for s in (1, 2, 3):
        np.testing.assert_allclose(got[s], want[s], atol=1e-6)
    np.testing.assert_array_equal(got[0], got[2])  # 0 = the default, two passes
    assert not np.allclose(got[1], got[3])
    with pytest.raises(ValueError):
        model.run([replace(sample, steps=-1)])


# -- excitation and recursive inference ---------------------------------------------------------------


def test_gamma_is_learnable_from_one_half():
    net = trained_like(BGMExciteNet())
    gamma = net.gen.first.excitation.gamma
    assert isinstance(gamma, nn.Parameter) and gamma.requires_grad and gamma.item() == 0.5
    assert any(p is gamma for p in net.parameters())
    out = net.forward_train(torch.rand(1, 6, 37, 53), torch.rand(1, 1, 37, 53))
    out["pha"].mean().backward()
    assert gamma.grad is not None and gamma.grad.abs() > 0


def test_excitation_map_changes_the_output():
    net = trained_like(BGMExciteNet()).train()  # batch statistics: an untrained net's eval output is nearly flat
    x = torch.rand(1, 6, 37, 53)
    with torch.no_grad():
        zeros = net.forward_train(x, torch.zeros(1, 1, 37, 53))["pha"]
        ones = net.forward_train(x, torch.ones(1, 1, 37, 53))["pha"]
    assert (zeros - ones).abs().mean() > 1e-2


def test_excitation_formula():
    layer = Excitation()
    hid = torch.randn(2, 4, 5, 6)
    exc = torch.rand(2, 1, 20, 24)
    with torch.no_grad():
        layer.gamma.fill_(0.3)
        small = torch.nn.functional.avg_pool2d(exc, 4)  # area resize by the integer factor
        torch.testing.assert_close(layer(hid, exc), 0.3 * hid * small + 0.7 * hid)
        torch.testing.assert_close(layer(hid, torch.ones(2, 1, 20, 24)), hid)  # E = 1 is no excitation


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_recursion_feeds_alpha_back(steps):
    """Pass 1 is excited by S; pass k + 1 by pass k's alpha; the output is the last pass's alpha."""
    net = BGMExciteNet().eval()
    x = torch.rand(2, 6, 37, 53)
    excs, phas = [], []
    hooks = [net.gen.first.register_forward_hook(lambda m, args, out: excs.append(args[1])),
             net.gen.pha_head.register_forward_hook(lambda m, args, out: phas.append(out))]
    with torch.no_grad():
        pha = net.forward_steps(x, steps)
    for h in hooks:
        h.remove()
    assert len(excs) == len(phas) == steps
    torch.testing.assert_close(excs[0], split(pad(x))[2])
    for k in range(steps - 1):
        assert torch.equal(excs[k + 1], phas[k])
    assert torch.equal(pha, phas[-1][:, :, :37, :53])


def test_recursion_equals_explicit_passes():
    """At a size needing no padding, s passes equal s calls of forward_train chained by hand."""
    net = BGMExciteNet().eval()
    x = torch.rand(1, 6, 32, 40)
    with torch.no_grad():
        exc = split(x)[2]
        for steps in (1, 2, 3):
            exc = net.forward_train(x, exc)["pha"]
            torch.testing.assert_close(net.forward_steps(x, steps), exc, atol=1e-6, rtol=0)
        torch.testing.assert_close(net(x), net.forward_steps(x, 2))


# -- the generic excitation wrapper ---------------------------------------------------------------------


def tiny_net() -> nn.Sequential:
    """A second, different network: a small nn.Sequential that knows nothing of excitation."""
    return nn.Sequential(OrderedDict(
        stem=nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()),
        body=nn.Sequential(nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU()),
        head=nn.Sequential(nn.Upsample(scale_factor=2.0), nn.Conv2d(8, 1, 3, padding=1), nn.Sigmoid()),
    ))


def test_excite_a_second_network_by_name():
    net = tiny_net()
    body = net.body
    x, exc = torch.rand(2, 3, 16, 20), torch.rand(2, 1, 16, 20)
    plain = net(x)

    layer = excite(net, "body")
    assert net.body is layer and isinstance(layer, Excited) and layer.module is body

    def excited_forward(x, exc):  # the one change the network's forward needs
        return net.head(net.body(net.stem(x), exc))

    torch.testing.assert_close(net(x), plain)  # the unchanged forward passes no map: no excitation
    torch.testing.assert_close(excited_forward(x, torch.ones_like(exc)), plain)  # E = 1: no excitation
    out = excited_forward(x, exc)
    assert not torch.allclose(out, plain)
    out.mean().backward()
    assert layer.excitation.gamma.grad is not None and layer.excitation.gamma.grad.abs() > 0
    torch.testing.assert_close(torch.jit.script(net)(x), plain)  # still exports
    with pytest.raises(ValueError):
        excite(net, "body")
    with pytest.raises(AttributeError):
        excite(net, "no.such.layer")


def test_excite_bgm_by_name():
    """bgm_excite is bgm with `excite(generator, "first")`: same weights layout under `first.module`."""
    gen = BGMNet().gen
    block = gen.first
    layer = excite(gen, "first")
    assert isinstance(block, ResBlock) and gen.first is layer and layer.module is block
    bgm_keys = {k.replace("gen.first.", "gen.first.module.") for k in BGMNet().state_dict()}
    assert set(BGMExciteNet().state_dict()) == bgm_keys | {"gen.first.excitation.gamma"}
    nested = excite(BGMNet().gen, "rest.0")  # any named layer, at any depth
    assert isinstance(nested.module, ResBlock)


def test_config_is_narrow_by_default():
    assert BGMConfig() == BGMConfig(ngf=16, blocks=4, head_blocks=1)
    with pytest.raises(ValueError):
        BGMNet(BGMConfig(blocks=0))
