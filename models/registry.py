"""The model registry: what the server lists and runs. Models load lazily, on first use, once per device.

Besides the catalogue, the weights search path (models/store.py: the studio's $MATTEBOX_WEIGHTS, then
the shipped models/weights/) is watched: a fine-tuned model is a weights file `<name>.safetensors` with a
card `<name>.json` beside it naming its `base` model; it is listed and served as soon as both files are
there (`mattebox finetune` writes them) and leaves the list when its weights file is gone.

A re-installed weights file (a fine-tune re-run under the same name, `mattebox train --install`) is
noticed by its (path, size, mtime_ns, inode) stamp on the next `get` or listing: the next `get` loads a new
instance and swaps it in. An instance is never changed once loaded, so a frame already running on the
old one finishes on it; the new digest is listed at once.

Identity (ModelInfo.digest): "sha256:<hex>" of the weights file for networks. Models without learned
weights (classical solvers, null) have an empty digest: nothing but the code they ship with, and the
server's version, decides their output.
"""
from __future__ import annotations

import importlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path

from models import devices, store
from models.base import MattingModel
from models.catalogue import MODELS


@dataclass(frozen=True)
class ModelInfo:
    """What a client sees of a model (ListModels, `mattebox models --json`).

    digest: "sha256:<hex>" of the weights file served, "" for a model without learned weights or
    with its weights missing. card: the weights' card (what trained them: steps, data, validation
    figures, device; a fine-tune's base, shot and held-back scores) as a JSON object text, "" when
    there is no card beside the weights."""

    name: str
    description: str
    inputs: tuple[str, ...]
    weights: bool
    params: int
    gflops_512: float
    device: str
    loaded: bool
    digest: str = ""
    card: str = ""


class UnknownModel(KeyError):
    def __init__(self, name: str, known: list[str]):
        super().__init__(name)
        self.message = f"unknown model {name!r}; known models: {', '.join(known)}"

    def __str__(self) -> str:
        return self.message


#: what a loaded instance was loaded from: (weights path, its store.stamp), or None without weights
Source = tuple[Path, tuple[int, int, int]] | None


class Registry:
    """Models by name. `model` gives a model's declaration (nothing loaded); `get` gives it loaded on a
    device, one instance per (name, device), reloaded when its weights file changes."""

    def __init__(self, catalogue: dict[str, str] = MODELS):
        self._catalogue = dict(catalogue)
        self._declared: dict[str, tuple[tuple, MattingModel]] = {}  # name -> (what it was made from, model)
        self._loaded: dict[tuple[str, str], tuple[Source, MattingModel]] = {}  # (name, device) -> ...
        self._loading: dict[tuple[str, str], threading.Lock] = {}  # one load at a time per (name, device)
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        return sorted(set(self._catalogue) | self._finetunes())

    def _finetunes(self) -> set[str]:
        """Fine-tuned models on the search path (a card naming a catalogue base, its weights beside it)."""
        found = set()
        for folder in store.folders():
            for card_path in folder.glob(f"*{store.CARD_SUFFIX}") if folder.is_dir() else ():
                if card_path.stem not in found and self._finetune_card(card_path.stem) is not None:
                    found.add(card_path.stem)
        return found

    def _finetune_card(self, name: str) -> dict | None:
        """The card of fine-tune `name`, or None when no such fine-tune is installed. The weights are the
        first on the search path; the card is the one beside them (never another folder's)."""
        if name in self._catalogue:
            return None
        path = store.find(f"{name}{store.WEIGHTS_SUFFIX}")
        card = _card(path)
        return card if card is not None and card.get("base") in self._catalogue else None

    def _declare(self, name: str) -> tuple[MattingModel, dict | None]:
        """(a fresh instance of the model, its fine-tune card or None). Raises UnknownModel."""
        card = self._finetune_card(name)
        if name not in self._catalogue and card is None:
            raise UnknownModel(name, self.names())
        module, cls = self._catalogue[card["base"] if card else name].split(":")
        model = getattr(importlib.import_module(module), cls)()
        if card:  # same network and inputs as its base, its own weights file
            model.name = name
            model.description = card.get("description") or f"{card['base']} fine-tuned"
        return model, card

    def model(self, name: str) -> MattingModel:
        """The model's declaration (inputs, description, size; weights not loaded). Raises UnknownModel,
        also for a fine-tune whose files are gone."""
        model, card = self._declare(name)
        made_from = (card["base"], model.description) if card else ()
        with self._lock:
            held = self._declared.get(name)
            if held is None or held[0] != made_from:  # kept: its size figures are worked out once
                held = self._declared[name] = (made_from, model)
            return held[1]

    def device(self, name: str) -> str:
        """The device `get` loads a model on by default: "cpu" for CPU models, else the accelerator."""
        return _default_device(self.model(name))

    def get(self, name: str, device: str | None = None) -> MattingModel:
        """The model loaded on `device` (default: `device(name)`), loaded again when its weights file
        changed since. Raises UnknownModel, or FileNotFoundError without weights."""
        declared = self.model(name)
        device = device or _default_device(declared)
        source = _source(declared)
        key = (name, device)
        with self._lock:
            held = self._loaded.get(key)
            if held is not None and held[0] == source:
                return held[1]
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:
            with self._lock:
                held = self._loaded.get(key)
            if held is None or held[0] != source:  # not loaded meanwhile by another thread
                model, _ = self._declare(name)
                model.load(device)
                held = (source, model)
                with self._lock:
                    self._loaded[key] = held  # swapped in: a frame running on the old one finishes on it
            return held[1]

    def info(self, name: str) -> ModelInfo:
        m = self.model(name)
        path = m.weights_path()
        now = None if path is None else store.stamp(path)
        digest = store.digest(path) if now is not None else ""
        card = _card(path) if now is not None else None
        with self._lock:
            for key in [k for k, (source, _) in self._loaded.items()
                        if k[0] == name and source != (None if now is None else (path, now))]:
                del self._loaded[key]  # re-installed or gone: the next `get` loads the new file
            loaded = any(k[0] == name for k in self._loaded)
        return ModelInfo(m.name, m.description, m.inputs, path is None or now is not None, m.params(),
                         m.gflops_512(), _default_device(m), loaded, digest,
                         "" if card is None else json.dumps(card, sort_keys=True))

    def infos(self) -> list[ModelInfo]:
        names = self.names()
        with self._lock:  # a deleted fine-tune: its instances go with it
            for key in [k for k in self._loaded if k[0] not in names]:
                del self._loaded[key]
        infos = []
        for n in names:
            try:
                infos.append(self.info(n))
            except UnknownModel:  # deleted between the listing and its reading
                continue
        return infos


def _default_device(model: MattingModel) -> str:
    return "cpu" if model.runs_on == "cpu" else devices.accelerator()


def _source(model: MattingModel) -> Source:
    """What `model` would load now: its weights file and that file's stamp. FileNotFoundError when it
    needs weights that are not there."""
    path = model.weights_path()
    if path is None:
        return None
    now = store.stamp(path)
    if now is None:
        raise FileNotFoundError(
            f"model {model.name!r} has no trained weights ({model.weights}); train them with "
            f"`mattebox train --model {model.name}` or pick another model")
    return path, now


def _card(weights: Path | None) -> dict | None:
    """The card beside a weights file (<name>.json), or None when there is none or it is not a JSON object."""
    if weights is None:
        return None
    try:
        card = json.loads(weights.with_suffix(store.CARD_SUFFIX).read_text())
    except (OSError, ValueError):
        return None
    return card if isinstance(card, dict) else None
