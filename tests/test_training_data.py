"""Tests for the training data package (training/data): composites, trimaps, plates, a studio's shot.

Synthetic sources only, except one test on the development photographs that is skipped where
../shared/data is missing (they are never copied into the repository).
"""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from models import colour, images
from models.colour import SCENE_LINEAR, SRGB
from training.data import (DIM_AUGMENT, KEYS, SEED003_AUGMENT, CompositeDataset, PhotoBackgrounds,
                           PhotoForegrounds, PlatePerturb, ShotData, ShotDataset, SyntheticBackgrounds,
                           SyntheticForegrounds, random_trimap)
from training.synthetic import make_shot

SIZE = 96
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CHANNELS = {"src": 3, "bgr": 3, "plate": 3, "tri": 1, "pha": 1, "fgr": 3}
PRESETS = {"dim": DIM_AUGMENT, "seed003": SEED003_AUGMENT}


def sources():
    return SyntheticForegrounds(3, width=160, height=128, seed=1), SyntheticBackgrounds(4, size=80, seed=2)


@pytest.fixture(scope="module")
def items():
    """Every item of one epoch, per augmentation preset, at SIZE x SIZE."""
    fgs, bgs = sources()
    out = {}
    for name, aug in PRESETS.items():
        ds = CompositeDataset(fgs, bgs, size=SIZE, seed=5, augment=aug)
        out[name] = [ds[i] for i in range(len(ds))]
    return out


@pytest.fixture(params=list(PRESETS))
def preset_items(request, items):
    return items[request.param]


# -- composites ---------------------------------------------------------------------------------------


def test_items_keys_shapes_dtypes_ranges(preset_items):
    assert len(preset_items) == 3 * 4
    for item in preset_items:
        assert tuple(item) == KEYS
        for key, t in item.items():
            assert t.shape == (CHANNELS[key], SIZE, SIZE), key
            assert t.dtype == torch.float32, key
            assert torch.isfinite(t).all() and t.min() >= 0 and t.max() <= 1, key


def test_composite_equation_holds(preset_items):
    for item in preset_items:
        pha, fgr, bgr = item["pha"], item["fgr"], item["bgr"]
        torch.testing.assert_close(item["src"], pha * fgr + (1 - pha) * bgr, rtol=0, atol=1e-5)


def test_crops_are_centred_on_the_unknown_region(preset_items):
    for item in preset_items:
        pha = item["pha"]
        assert ((pha > 0) & (pha < 1)).any()
        assert (pha == 0).any() or (pha == 1).any()


def test_item_trimaps_agree_with_ground_truth(preset_items):
    for item in preset_items:
        check_trimap(item["tri"][0].numpy(), item["pha"][0].numpy())


def test_plate_is_a_perturbed_background(preset_items):
    diffs = [float((item["plate"] - item["bgr"]).abs().mean()) for item in preset_items]
    assert min(diffs) > 0
    assert np.mean(diffs) < 0.1 and max(diffs) < 0.25


def test_plate_without_perturbation_is_the_background():
    fgs, bgs = sources()
    still = PlatePerturb(affine_p=0.0, jitter_p=0.0, gamma_std=0.0, noise_p=0.0)
    ds = CompositeDataset(fgs, bgs, size=SIZE, augment=replace(DIM_AUGMENT, plate=still))
    item = ds[1]
    assert torch.equal(item["plate"], item["bgr"])


def test_deterministic_per_seed_epoch_and_index(items):
    fgs, bgs = sources()  # fresh sources: nothing cached is shared with the fixture
    ds = CompositeDataset(fgs, bgs, size=SIZE, seed=5, augment=DIM_AUGMENT)
    for i in (0, 7):
        for key in KEYS:
            assert torch.equal(ds[i][key], items["dim"][i][key]), key
    ds.set_epoch(1)
    assert not torch.equal(ds[0]["src"], items["dim"][0]["src"])
    ds.set_epoch(0)
    assert torch.equal(ds[0]["src"], items["dim"][0]["src"])
    other = CompositeDataset(fgs, bgs, size=SIZE, seed=6, augment=DIM_AUGMENT)
    assert not torch.equal(other[0]["src"], items["dim"][0]["src"])


def test_length_and_index_bounds():
    fgs, bgs = sources()
    ds = CompositeDataset(fgs, bgs, size=SIZE, length=5)
    assert len(ds) == 5
    with pytest.raises(IndexError):
        ds[5]


def test_dataloader_batches_fast_enough():
    """A DataLoader without workers stacks items into (B, C, H, W); a 320x320 synthetic item takes
    well under 50 ms (bound loosely here: the test machine may be busy)."""
    fgs, bgs = SyntheticForegrounds(2, seed=3), SyntheticBackgrounds(2, size=320, seed=4)
    ds = CompositeDataset(fgs, bgs, length=8)
    for i in range(len(ds)):  # render the sources once, outside the timing
        fgs.get(i % 2), bgs.get(i % 2)
    loader = DataLoader(ds, batch_size=4, num_workers=0)
    t0 = time.perf_counter()
    batches = list(loader)
    per_item = (time.perf_counter() - t0) / len(ds)
    assert [tuple(b["src"].shape) for b in batches] == [(4, 3, 320, 320)] * 2
    assert batches[0]["tri"].shape == (4, 1, 320, 320)
    assert per_item < 0.1, f"{per_item * 1000:.0f} ms per item"


# -- trimaps ------------------------------------------------------------------------------------------


def check_trimap(tri: np.ndarray, pha: np.ndarray) -> None:
    assert tri.dtype == np.float32 and tri.shape == pha.shape
    assert set(np.unique(tri)) <= {0.0, 0.5, 1.0}
    assert (tri[(pha > 0) & (pha < 1)] == 0.5).all()
    assert (pha[tri == 1] == 1).all()
    assert (pha[tri == 0] == 0).all()


def test_random_trimap_band():
    pha = make_shot(96, 80, frames=1, seed=3).alpha[0]
    rng = np.random.default_rng(0)
    exact = random_trimap(pha, rng, 0, 0)
    np.testing.assert_array_equal(exact == 0.5, (pha > 0) & (pha < 1))
    unknown = []
    for band in (1, 4, 12):
        tri = random_trimap(pha, rng, band, band)
        check_trimap(tri, pha)
        unknown.append(int((tri == 0.5).sum()))
    assert unknown[0] > (exact == 0.5).sum() and unknown[0] < unknown[1] < unknown[2]
    with pytest.raises(ValueError):
        random_trimap(pha, rng, 5, 2)


# -- a studio's shot ----------------------------------------------------------------------------------

FRAMES = [1001, 1002, 1003]


@pytest.fixture(scope="module")
def shot_files(tmp_path_factory):
    """A small synthetic shot on disk: scene-linear half EXR frames and plate, 8-bit PNG mattes."""
    folder = tmp_path_factory.mktemp("shot")
    shot = make_shot(80, 64, frames=len(FRAMES), first=FRAMES[0], seed=9)
    for k, f in enumerate(FRAMES):
        images.write_rgb(folder / f"src.{f:04d}.exr", colour.convert(shot.image[k], SRGB, SCENE_LINEAR))
        images.write_alpha(folder / f"matte.{f:04d}.png", shot.alpha[k])
    images.write_rgb(folder / "plate.exr", colour.convert(shot.plate, SRGB, SCENE_LINEAR))
    images.write_rgb(folder / "tagged.exr", shot.plate)  # sRGB values in a float file
    patterns = {"input": str(folder / "src.####.exr"), "mattes": str(folder / "matte.%04d.png"),
                "background": str(folder / "plate.exr"), "tagged": str(folder / "tagged.exr")}
    return shot, patterns


def test_shot_data_reads_scene_linear_exr_as_srgb(shot_files):
    shot, pat = shot_files
    data = ShotData(pat["input"], pat["mattes"], FRAMES, background=pat["background"])
    for k, f in enumerate(FRAMES):
        frame = data.frame(f)
        assert frame["src"].shape == (64, 80, 3) and frame["src"].dtype == np.float32
        assert frame["pha"].shape == (64, 80) and frame["pha"].dtype == np.float32
        np.testing.assert_allclose(frame["src"], shot.image[k], atol=1e-2)
        np.testing.assert_allclose(frame["pha"], shot.alpha[k], atol=1e-2)
        np.testing.assert_allclose(frame["plate"], shot.plate, atol=1e-2)
    assert ShotData(pat["input"], pat["mattes"], FRAMES).frame(FRAMES[0])["plate"] is None
    with pytest.raises(ValueError, match="no ground-truth matte"):
        data.frame(999)


def test_shot_data_colour_space_overrides_the_float_rule(shot_files):
    shot, pat = shot_files
    data = ShotData(pat["input"], pat["mattes"], FRAMES, background=pat["tagged"], colour_space=SRGB)
    np.testing.assert_allclose(data.frame(FRAMES[0])["plate"], shot.plate, atol=1e-2)
    with pytest.raises(ValueError, match="unknown colour space"):
        ShotData(pat["input"], pat["mattes"], FRAMES, colour_space="no such space")


@pytest.mark.parametrize("plate", [True, False], ids=["plate", "no-plate"])
def test_shot_dataset_items(shot_files, plate):
    shot, pat = shot_files
    data = ShotData(pat["input"], pat["mattes"], FRAMES, background=pat["background"] if plate else "")
    ds = ShotDataset(data, FRAMES[:2], size=48, length=6, seed=3)
    assert len(ds) == 6
    got = [ds[i] for i in range(len(ds))]
    for item in got:
        assert tuple(item) == KEYS
        for key, t in item.items():
            assert t.shape == (CHANNELS[key], 48, 48) and t.dtype == torch.float32, key
            assert t.min() >= 0 and t.max() <= 1, key
        check_trimap(item["tri"][0].numpy(), item["pha"][0].numpy())
        pha, fgr, bgr = item["pha"], item["fgr"], item["bgr"]
        # src is the real frame; the layers (plate or estimate) explain it up to 8-bit / half rounding
        assert float((pha * fgr + (1 - pha) * bgr - item["src"]).abs().mean()) < 0.02
    again = ShotDataset(data, FRAMES[:2], size=48, length=6, seed=3)
    for i in (0, 5):
        for key in KEYS:
            assert torch.equal(again[i][key], got[i][key]), key
    again.set_epoch(1)
    assert any(not torch.equal(again[i]["src"], got[i]["src"]) for i in range(len(ds)))


def test_shot_dataset_pads_frames_smaller_than_the_crop(shot_files):
    shot, pat = shot_files
    ds = ShotDataset(ShotData(pat["input"], pat["mattes"], FRAMES), FRAMES, size=100, length=2)
    assert ds[0]["src"].shape == (3, 100, 100)
    with pytest.raises(ValueError, match="subset"):
        ShotDataset(ShotData(pat["input"], pat["mattes"], FRAMES), [1, 2])


# -- development photographs (never copied here) ------------------------------------------------------


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="no ../shared/data development photographs here")
def test_photo_sources():
    names = sorted(p.stem for p in (SHARED_DATA / "alphamatting" / "input").glob("*.png"))[:2]
    fgs = PhotoForegrounds(SHARED_DATA / "alphamatting", names=names)
    bgs = PhotoBackgrounds(SHARED_DATA / "backgrounds" / "kodak")
    assert fgs.names == names and len(fgs) == 2 and len(bgs) >= 2
    fgr, pha = fgs.get(0)
    assert fgr.shape == pha.shape + (3,) and fgr.dtype == pha.dtype == np.float32
    assert 0 <= fgr.min() and fgr.max() <= 1 and 0 <= pha.min() and pha.max() <= 1
    bgr = bgs.get(1)
    assert bgr.ndim == 3 and bgr.shape[2] == 3 and bgr.dtype == np.float32
    item = CompositeDataset(fgs, bgs, size=128, length=2)[1]
    assert {k: tuple(t.shape) for k, t in item.items()} == {k: (c, 128, 128) for k, c in CHANNELS.items()}
    with pytest.raises(ValueError, match="no input/gt pair"):
        PhotoForegrounds(SHARED_DATA / "alphamatting", names=["nonexistent"])
