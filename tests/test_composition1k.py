"""Composition-1k as a `mattebox train --data` source: a generated folder in its layout (three objects,
eight crops each over different backgrounds), held out by object, --val-names by object, foreground
colour estimated from the composite, the licence on the card; and a smoke check of the real folder."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from models import images
from plugin.cli.main import main
from training.data.composition1k import LICENCE, Composition1kForegrounds
from training.data.sources import PhotoForegrounds, foreground_folder

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "composition1k"
HUES = ((0.9, 0.2, 0.1), (0.1, 0.8, 0.2), (0.2, 0.3, 0.9))  # one colour family per object


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """crops/NAME_image.png + NAME_alpha.png: object k's crops are fdk_k0..fdk_k7, cut at different
    places of one 96x96 object (a textured disc with a soft edge) composited over random backgrounds;
    full/fmm_0_image.png is object 0 whole."""
    root = tmp_path_factory.mktemp("composition1k")
    (root / "crops").mkdir()
    (root / "full").mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:96, 0:96]
    pha = np.clip((40 - np.hypot(yy - 48, xx - 48)) / 8, 0, 1).astype(np.float32)
    for k, hue in enumerate(HUES):
        fgr = np.clip(np.float32(hue) + rng.normal(0, 0.08, (96, 96, 3)), 0, 1).astype(np.float32)
        for c in range(8):
            y, x = rng.integers(0, 48, 2)
            bgr = rng.random((48, 48, 3), dtype=np.float32)
            a = pha[y:y + 48, x:x + 48, None]
            images.write_rgb(root / "crops" / f"fdk_{k}{c}_image.png", a * fgr[y:y + 48, x:x + 48] + (1 - a) * bgr)
            images.write_alpha(root / "crops" / f"fdk_{k}{c}_alpha.png", a[..., 0])
        if k == 0:
            bgr = rng.random((96, 96, 3), dtype=np.float32)
            images.write_rgb(root / "full" / "fmm_0_image.png", pha[..., None] * fgr + (1 - pha[..., None]) * bgr)
            images.write_alpha(root / "full" / "fmm_0_alpha.png", pha)
    return root


def test_the_folder_is_read_as_composition1k(folder):
    fgs = foreground_folder(folder)
    assert isinstance(fgs, Composition1kForegrounds) and fgs.licence == LICENCE
    assert len(fgs) == 25 and fgs.names[0] == "fdk_00" and fgs.names[-1] == "fmm_0"


def test_an_object_is_its_crops(folder):
    objects = Composition1kForegrounds(folder).objects
    for k in range(3):
        assert len({objects[f"fdk_{k}{c}"] for c in range(8)}) == 1, k
    assert len({objects[f"fdk_{k}0"] for k in range(3)}) == 3
    assert objects["fmm_0"] == objects["fdk_00"]  # the whole composite goes with its crops


def test_validation_holds_out_whole_objects(folder):
    fgs = Composition1kForegrounds(folder)
    val = fgs.held_out()
    assert val and len(val) < len(fgs)
    for k in range(3):
        crops = {f"fdk_{k}{c}" for c in range(8)}
        assert crops <= set(val) or not crops & set(val), k  # an object on one side only
    # --val-names: any crop names an object, all of whose items are held out
    assert fgs.held_out(["fdk_13"]) == tuple(f"fdk_1{c}" for c in range(8))
    assert set(fgs.held_out(["fdk_05", "fdk_21"])) == {f"fdk_{k}{c}" for k in (0, 2) for c in range(8)} | {"fmm_0"}
    with pytest.raises(ValueError, match="no NAME_image.png/NAME_alpha.png pair for nope"):
        fgs.held_out(["nope"])
    train = fgs.subset([n for n in fgs.names if n not in val])
    assert set(train.names) | set(val) == set(fgs.names) and train.objects == fgs.objects


def test_the_foreground_colour_is_estimated_from_the_composite(folder):
    fgs = Composition1kForegrounds(folder, ["fdk_12"])
    fgr, pha = fgs.get(0)
    src = images.read(folder / "crops" / "fdk_12_image.png", 3).pixels.astype(np.float32) / 255
    assert fgr.shape == src.shape and pha.shape == src.shape[:2] and fgr.dtype == pha.dtype == np.float32
    solid = pha == 1
    assert solid.sum() > 100 and np.abs(fgr[solid] - src[solid]).mean() < 0.005  # where alpha is 1, F is I
    assert np.abs(fgr[pha > 0.5].mean(0) - np.float32(HUES[1])).max() < 0.1  # the object's colour, not the bg's


def test_train_holds_out_by_object_and_records_the_licence(folder, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--model", "msia", "--data", str(folder), "--steps", "1", "--batch", "2", "--crop", "64",
                 "--val-every", "1", "--out", str(out), "--progress", "json"]) == 0
    card = json.loads((out / "msia.json").read_text())
    assert card["data"]["licence"] == LICENCE
    assert card["data"]["validation_foregrounds"] == list(Composition1kForegrounds(folder).held_out())
    given = "non-commercial research use (Adobe DIM licence), Kodak backgrounds: none stated"
    assert main(["train", "--model", "msia", "--data", str(folder), "--val-names", "fdk_21", "--steps", "1",
                 "--batch", "2", "--crop", "64", "--val-every", "1", "--out", str(out), "--data-licence", given,
                 "--progress", "json"]) == 0
    card = json.loads((out / "msia.json").read_text())
    assert card["data"]["licence"] == given
    assert card["data"]["validation_foregrounds"] == [f"fdk_2{c}" for c in range(8)]


@pytest.mark.skipif(not REAL.is_dir(), reason="no ../shared/data/composition1k here")
def test_the_real_folder():
    fgs = foreground_folder(REAL)
    assert isinstance(fgs, Composition1kForegrounds) and len(fgs) > 400
    assert any(n.startswith("fmm_") for n in fgs.names)  # full composites beside the crops
    groups = set(fgs.objects.values())
    assert 30 <= len(groups) <= 80  # about 50 objects
    val = set(fgs.held_out())
    assert 0 < len(val) < len(fgs) / 2
    assert all((fgs.objects[n] in {fgs.objects[v] for v in val}) == (n in val) for n in fgs.names)
    fgr, pha = fgs.subset([fgs.names[0]]).get(0)
    assert fgr.shape == pha.shape + (3,) and 0 <= fgr.min() and fgr.max() <= 1


def test_an_alphamatting_folder_is_still_read_as_photos(tmp_path):
    for sub in ("input", "gt"):
        (tmp_path / sub).mkdir()
    images.write_rgb(tmp_path / "input" / "GT01.png", np.full((8, 8, 3), 0.5, np.float32))
    images.write_alpha(tmp_path / "gt" / "GT01.png", np.full((8, 8), 1.0, np.float32))
    fgs = foreground_folder(tmp_path)
    assert type(fgs) is PhotoForegrounds and fgs.names == ["GT01"] and fgs.held_out() == ("GT01",)
    with pytest.raises(ValueError, match="no input/gt pair for GT02"):
        fgs.subset(["GT02"])
