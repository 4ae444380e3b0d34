"""The `lightweight` model (seed 003): shapes, ranges, gradients, TorchScript, size, overfitting, serving;
both readings of its OCBlock (block-local octave `lightweight`, octave stream `lightweight_octave`).

The network is trimap-free: x = (B, 3, H, W) RGB in 0..1 -> alpha (B, 1, H, W) in 0..1. Sizes are small
and odd (37x53) so padding to the network's stride and cropping back are exercised.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models.base import IMAGE, Sample
from models.lightweight import Lightweight, LightweightConfig, LightweightNet, LightweightOctave
from models.lightweight.attention import group, ungroup
from models.lightweight.octconv import OctaveBlock, OctaveChain, pack, unpack
from models.registry import Registry
from training.synthetic import make_shot

PAPER_PARAMS = 344_800

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")


pytestmark = pytest.mark.usefixtures("one_thread")


STREAM = [pytest.param(False, id="block-local"), pytest.param(True, id="octave-stream")]


@pytest.fixture(scope="module", params=STREAM)
def net(request):
    torch.manual_seed(0)
    return LightweightNet(LightweightConfig(octave_stream=request.param)).eval()


def test_declaration():
    model = Lightweight()
    assert model.name == "lightweight"
    assert model.inputs == (IMAGE,)
    assert model.weights == "lightweight.safetensors"


@pytest.mark.parametrize("size", [(37, 53), (64, 80)])
def test_shapes_ranges_and_determinism(net, size):
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        pha = net(x)
        again = net(x)
    assert pha.shape == (2, 1, *size)
    assert torch.isfinite(pha).all()
    assert pha.min() >= 0 and pha.max() <= 1
    assert torch.equal(pha, again)


def test_forward_train_outputs(net):
    x = torch.rand(2, 3, 37, 53)
    with torch.no_grad():
        out = net.forward_train(x)
        pha = net(x)
    assert torch.equal(out["pha"], pha)
    assert out["pha_refine"].shape == (2, 1, 37, 53)
    assert 0 <= out["pha_refine"].min() and out["pha_refine"].max() <= 1
    assert [tuple(t.shape) for t in out["tri_logits"]] == [(2, 3, 37, 53)] * 3


@pytest.mark.parametrize("stream", STREAM)
def test_gradients_reach_every_parameter(stream):
    torch.manual_seed(1)
    net = LightweightNet(LightweightConfig(octave_stream=stream)).train()
    x = torch.rand(2, 3, 37, 53)
    out = net.forward_train(x)
    target = torch.randint(0, 3, (2, 37, 53))
    loss = out["pha"].mean() + sum(F.cross_entropy(t, target) for t in out["tri_logits"])
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name


def test_torchscript_parity(net):
    scripted = torch.jit.script(net)
    for size in [(37, 53), (64, 80)]:
        x = torch.rand(2, 3, *size)
        with torch.no_grad():
            torch.testing.assert_close(scripted(x), net(x), atol=1e-5, rtol=0)


def test_attention_groups_are_subsets_and_windows():
    x = torch.arange(2 * 3 * 8 * 12, dtype=torch.float32).reshape(2, 3, 8, 12)
    for dilated in (True, False):
        assert torch.equal(ungroup(group(x, 4, dilated), x, 4, dilated), x)
    subsets = group(x, 4, True)  # (2 * 16, 6, 3): positions sharing (row mod 4, col mod 4)
    assert subsets.shape == (32, 6, 3)
    assert torch.equal(subsets[1], x[0, :, 0::4, 1::4].reshape(3, -1).T)
    windows = group(x, 4, False)  # (2 * 6, 16, 3): 4x4 neighbourhoods
    assert windows.shape == (12, 16, 3)
    assert torch.equal(windows[1], x[0, :, 0:4, 4:8].reshape(3, -1).T)


@pytest.mark.parametrize("model", [Lightweight(), LightweightOctave()], ids=lambda m: m.name)
def test_size_matches_the_paper(model):
    assert abs(model.params() - PAPER_PARAMS) <= 0.05 * PAPER_PARAMS
    assert 0.5 < model.gflops_512() <= 1.0


def test_octave_block_takes_and_returns_high_and_low():
    block = OctaveBlock(8, 8, 24, stride=2, octave=0.5).eval()
    h, l = block(torch.rand(1, 8, 32, 32), torch.rand(1, 8, 16, 16))
    assert h.shape == (1, 12, 16, 16) and l.shape == (1, 12, 8, 8)  # the low part at half resolution
    x = torch.rand(1, 6, 8, 8)
    hi, lo = unpack(x, 2)
    assert hi.shape == (1, 4, 8, 8) and lo.shape == (1, 2, 4, 4)
    assert torch.equal(unpack(pack(hi, lo), 2)[1], lo)  # a packed map gives its low part back exactly


def test_octave_stream_carries_the_low_part_from_block_to_block():
    """In the stream reading each block's (high, low) output is the next block's input, the low part a
    half-resolution tensor; the block-local reading has no OctaveBlock at all."""
    net = LightweightNet(LightweightConfig(octave_stream=True)).eval()
    calls = []
    for chain in (m for m in net.modules() if isinstance(m, OctaveChain)):
        for block in chain.blocks:
            block.register_forward_hook(lambda mod, args, out, chain=chain: calls.append((chain, args, out)))
    with torch.no_grad():
        net(torch.rand(1, 3, 64, 64))
    handed_on = 0
    for (chain, args, out), (next_chain, next_args, _) in zip(calls, calls[1:]):
        assert args[1].shape[2] * 2 == args[0].shape[2]  # every block gets (high, half-resolution low)
        if next_chain is chain:
            assert next_args[0] is out[0] and next_args[1] is out[1]  # the pair itself, not merged back
            handed_on += 1
    # within each chain: SN's encoder levels of 3, 4, 6, 4 blocks, MRN's four of 2, its image branch of 3
    assert handed_on == (3 + 4 + 6 + 4 - 4) + 4 * (2 - 1) + (3 - 1)
    assert not any(isinstance(m, OctaveBlock) for m in LightweightNet().modules())


def test_the_two_readings_keep_their_own_weights():
    assert LightweightOctave().weights == "lightweight_octave.safetensors" != Lightweight().weights
    with pytest.raises(RuntimeError, match="Missing key"):  # one's weights never load into the other
        LightweightNet(LightweightConfig(octave_stream=True)).load_state_dict(LightweightNet().state_dict())


def test_overfits_one_composite():
    torch.manual_seed(2)
    shot = make_shot(width=64, height=64, frames=1, seed=3)
    x = torch.from_numpy(shot.image[0]).permute(2, 0, 1)[None]
    true_pha = torch.from_numpy(shot.alpha[0])[None, None]
    # the composite and its mirror: batch norm in training needs more than one value per channel at
    # SN's deepest octave level (1/64 of 64 px)
    x, true_pha = torch.cat([x, x.flip(3)]), torch.cat([true_pha, true_pha.flip(3)])
    true_tri = torch.full_like(true_pha[:, 0], 2, dtype=torch.long)  # eq. 6: 0 bg, 1 fg, 2 unknown
    true_tri[true_pha[:, 0] == 0] = 0
    true_tri[true_pha[:, 0] == 1] = 1
    net = LightweightNet().train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        out = net.forward_train(x)
        l1 = (out["pha"] - true_pha).abs().mean()
        loss = l1 + sum(F.cross_entropy(t, true_tri) for t in out["tri_logits"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(l1.item())
    assert losses[-1] < losses[0] / 3, losses


def test_runs_through_the_model_contract(weights_dir):
    from safetensors.torch import save_file
    registry = Registry({"lightweight": "models.lightweight.model:Lightweight"})
    assert not registry.info("lightweight").weights
    with pytest.raises(FileNotFoundError):
        registry.get("lightweight")

    model = registry.model("lightweight")
    save_file(model.build().state_dict(), str(weights_dir / model.weights))
    model = registry.get("lightweight")
    image = (np.random.default_rng(0).random((37, 53, 3)) * 255).astype(np.uint8)
    (alpha,) = model.run([model.prepare(Sample(image=image))])
    assert alpha.shape == (37, 53)
    assert alpha.dtype == np.float32
    assert 0 <= alpha.min() and alpha.max() <= 1


def test_the_octave_stream_reading_trains_from_the_command_line(tmp_path):
    """`mattebox train --model lightweight_octave`: the second reading trains on the same recipe and
    writes its own weights file, which loads into its network (and not into the other reading's)."""
    from safetensors.torch import load_file

    from plugin.cli.main import main

    assert main(["train", "--model", "lightweight_octave", "--steps", "2", "--batch", "2", "--crop", "64",
                 "--val-every", "2", "--out", str(tmp_path), "--progress", "json"]) == 0
    state = load_file(tmp_path / "lightweight_octave.safetensors")
    LightweightOctave().build().load_state_dict(state)
    with pytest.raises(RuntimeError):
        Lightweight().build().load_state_dict(state)
