"""`mattebox train --data A --data B`: two foreground folders of different layouts train as one set,
each holding out its own validation split, and the card names both folders and the stated terms."""
from __future__ import annotations

import json

import numpy as np

from models import images
from plugin.cli.main import main
from test_composition1k import folder  # noqa: F401  (the generated composition1k-layout folder)
from training.data.composition1k import LICENCE, Composition1kForegrounds
from training.data.joined import JoinedForegrounds
from training.data.sources import PhotoForegrounds


def photos(root, n: int = 5):
    """An alphamatting-layout folder: input/GTnn.png photos and gt/GTnn.png alphas (soft discs)."""
    (root / "input").mkdir(parents=True)
    (root / "gt").mkdir()
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:64, 0:64]
    for i in range(n):
        pha = np.clip((20 + i - np.hypot(yy - 32, xx - 32)) / 6, 0, 1).astype(np.float32)
        src = pha[..., None] * np.float32((0.8, 0.5, 0.2)) + (1 - pha[..., None]) * rng.random((64, 64, 3), np.float32)
        images.write_rgb(root / "input" / f"GT{i:02d}.png", src)
        images.write_alpha(root / "gt" / f"GT{i:02d}.png", pha)
    return root


def test_each_source_holds_out_its_own_split(folder, tmp_path):  # noqa: F811
    am, c1k = PhotoForegrounds(photos(tmp_path / "am")), Composition1kForegrounds(folder)
    joined = JoinedForegrounds([am, c1k])
    assert len(joined) == len(am) + len(c1k)
    assert np.array_equal(joined.get(len(am))[1], c1k.get(0)[1])  # item order: the first source, then the next
    train, val = joined.split()
    assert val.names == list(am.held_out()) + list(c1k.held_out())
    assert not set(train.names) & set(val.names) and len(train) + len(val) == len(joined)
    assert joined.licence == LICENCE  # the photos state no terms; composition1k's are kept


def test_train_on_two_folders(folder, tmp_path):  # noqa: F811
    am = photos(tmp_path / "am")
    out = tmp_path / "run"
    assert main(["train", "--model", "msia", "--data", str(am), "--data", str(folder), "--val-names", "GT01,fdk_21",
                 "--steps", "1", "--batch", "2", "--crop", "48", "--val-every", "1", "--out", str(out),
                 "--progress", "json"]) == 0
    card = json.loads((out / "msia.json").read_text())
    assert card["data"]["foregrounds"] == f"{am}, {folder}"
    assert card["data"]["validation_foregrounds"] == ["GT01"] + [f"fdk_2{c}" for c in range(8)]
