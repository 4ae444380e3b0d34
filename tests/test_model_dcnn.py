"""DCNN matting (seed 004): the network on synthetic 5-channel tensors, the model through pymatting.

pymatting compiles with numba on its first call, so only two tiny frames go through the classical
solvers: the packed 64x64 shot (shared by the pack and overfit tests) and the 48x64 frame of `run`.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from models.base import Sample
from models.dcnn.model import DCNN
from models.dcnn.network import DCNNConfig, DCNNNet
from models.excitation import excite
from training.synthetic import make_shot, trimap_from_alpha

# 9x9 analysis, no bias:       5 * 64 * 9 * 9       = 25,920
# four 1x1 remaps with bias:   4 * (64 * 64 + 64)   = 16,640
# 5x5 reconstruction, no bias: 64 * 1 * 5 * 5       =  1,600
PARAMS = 25_920 + 16_640 + 1_600  # = 44,160
# multiply-adds per output pixel; the first four layers run on (H + 4) x (W + 4) (6-pixel border)
GFLOPS_512 = 2 * (516 * 516 * (25_920 + 4 * 64 * 64) + 512 * 512 * 1_600) / 1e9  # = 23.37


def _x(b: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Synthetic input (b, 5, h, w) in [0, 1]: random RGB and two random alphas."""
    return torch.rand(b, 5, h, w, generator=torch.Generator().manual_seed(seed))


def _net(seed: int = 0) -> DCNNNet:
    """The paper's network as it starts: xavier everywhere (the architecture tests need random weights)."""
    torch.manual_seed(seed)
    return DCNNNet(DCNNConfig(passthrough=False)).eval()


@pytest.fixture(scope="module")
def packed():
    """A 64x64 synthetic frame: (packed (64, 64, 5) inputs, prepared sample, true alpha (64, 64))."""
    shot = make_shot(width=64, height=64, frames=1, seed=3)
    trimap = trimap_from_alpha(shot.alpha[0], band=4)
    model = DCNN()
    sample = model.prepare(Sample(image=shot.image[0], trimap=trimap, colour_space="sRGB"))
    return model.pack(sample), sample, shot.alpha[0]


@pytest.mark.parametrize("b,h,w", [(1, 37, 53), (2, 64, 80)])
def test_shape_and_range(b, h, w):
    with torch.no_grad():
        pha = _net()(_x(b, h, w))
    assert pha.shape == (b, 1, h, w)
    assert pha.min() >= 0 and pha.max() <= 1


def test_parameter_count_and_gflops():
    assert sum(p.numel() for p in DCNNNet().parameters()) == PARAMS
    model = DCNN()
    assert model.params() == PARAMS
    assert model.gflops_512() == pytest.approx(GFLOPS_512, rel=1e-3)


def test_rgb_normalised_by_magnitude():
    """Scaling a pixel's RGB leaves the output unchanged: the network sees I / |I| (paper eq. 2)."""
    x = _x(1, 37, 53)
    x[:, :3] = 0.2 + 0.8 * x[:, :3]
    darker = x.clone()
    darker[:, :3] *= 0.5
    net = _net()
    with torch.no_grad():
        torch.testing.assert_close(net(darker), net(x), atol=1e-5, rtol=0)


def test_receptive_field_is_13_pixels():
    """Changing input (20, 20) changes outputs within 6 pixels of it only (paper: 27 -> 15 patches)."""
    net, x = _net(), _x(1, 41, 41)
    with torch.no_grad():  # non-negative reconstruction weights: outputs inside (0, 1), none clamped
        net.reconstruction.weight.abs_().mul_(0.05)
    changed = x.clone()
    changed[:, :, 20, 20] = 1 - changed[:, :, 20, 20]
    with torch.no_grad():
        rows, cols = torch.nonzero(net(changed)[0, 0] != net(x)[0, 0], as_tuple=True)
    assert rows.numel() > 0
    assert (rows - 20).abs().max() == 6 and (cols - 20).abs().max() == 6


def test_gradients_reach_every_parameter():
    net = _net().train()
    net(_x(2, 37, 53)).mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_starts_as_the_mean_of_its_inputs_and_learns_beyond_it():
    """Untrained, the default network outputs (closed-form + KNN) / 2 exactly; one Adam step later every
    parameter has a gradient, so the 62 random channels join in."""
    torch.manual_seed(0)
    net, x = DCNNNet(), _x(2, 37, 53)
    with torch.no_grad():
        torch.testing.assert_close(net(x), x[:, 3:4] / 2 + x[:, 4:5] / 2, atol=1e-6, rtol=0)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    true = torch.rand(2, 1, 37, 53, generator=torch.Generator().manual_seed(1))
    for _ in range(2):
        opt.zero_grad()
        (net(x) - true).square().mean().backward()
        opt.step()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_torchscript_matches_eager():
    net = _net()
    scripted = DCNN().torchscript(net)
    with torch.no_grad():
        for h, w in [(37, 53), (64, 80)]:
            x = _x(2, h, w)
            torch.testing.assert_close(scripted(x), net(x), atol=1e-5, rtol=0)


def test_pack_gives_rgb_and_two_alphas(packed):
    x, sample, _ = packed
    assert x.shape == (64, 64, 5) and x.dtype == np.float32
    assert x.min() >= 0 and x.max() <= 1
    np.testing.assert_array_equal(x[..., :3], sample.image)
    known = sample.trimap != 0.5
    for c in (3, 4):  # both solvers keep the trimap's known pixels (up to their soft constraint)
        np.testing.assert_allclose(x[..., c][known], sample.trimap[known], atol=0.05)


def test_overfits_one_frame(packed):
    x_np, _, true_pha = packed
    x = torch.from_numpy(x_np).permute(2, 0, 1)[None]
    true = torch.from_numpy(true_pha)[None, None]
    net = _net().train()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = (net(x) - true).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 3, losses


def test_runs_with_saved_weights(weights_dir):
    model = DCNN()
    assert not model.weights_ready()
    save_file(_net().state_dict(), str(weights_dir / "dcnn.safetensors"))
    assert model.weights_ready()
    model.load("cpu")

    shot = make_shot(width=64, height=48, frames=1, seed=5)
    image = np.rint(shot.image[0] * 255).astype(np.uint8)
    trimap = trimap_from_alpha(shot.alpha[0], band=3)
    (pha,) = model.run([model.prepare(Sample(image=image, trimap=trimap))])
    assert pha.shape == (48, 64) and pha.dtype == np.float32
    assert pha.min() >= 0 and pha.max() <= 1
    np.testing.assert_array_equal(pha[trimap == 255], 1)
    np.testing.assert_array_equal(pha[trimap == 0], 0)


def test_excitation_plugs_into_dcnn():
    """Seed 000's excitation layer in a second network of ours, without changing its code."""
    torch.manual_seed(0)
    net = DCNNNet(DCNNConfig()).eval()
    x = torch.rand(1, 5, 40, 48)
    plain = net(x)
    layer = excite(net, "remap.0")
    assert torch.equal(net(x), plain)  # no map: the network is unchanged
    ones, ramp = torch.ones(1, 1, 40, 48), torch.linspace(0, 1, 48).expand(1, 1, 40, 48)
    layer.exc = ones
    assert torch.allclose(net(x), plain, atol=1e-6)  # E = 1: F_in * E = F_in
    layer.exc = ramp
    excited = net(x)
    assert not torch.allclose(excited, plain, atol=1e-4)  # E changes the output
    excited.sum().backward()
    assert layer.excitation.gamma.grad is not None and layer.excitation.gamma.grad != 0
    layer.exc = None
    scripted = torch.jit.script(net)
    assert torch.allclose(scripted(x), plain, atol=1e-5)
