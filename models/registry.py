"""The model registry: what the server lists and runs. Models load lazily, on first use.

Besides the catalogue, the weights folder is watched: a fine-tuned model is a weights file
`<name>.safetensors` with a card `<name>.json` naming its `base` model, and it is listed and served
as soon as both files are there (`mattebox finetune` writes them), without a restart."""
from __future__ import annotations

import importlib
import json
import threading
from dataclasses import dataclass

import models.base
from models import devices
from models.base import MattingModel
from models.catalogue import MODELS


@dataclass(frozen=True)
class ModelInfo:
    """What a client sees of a model (ListModels, `mattebox models --json`)."""

    name: str
    description: str
    inputs: tuple[str, ...]
    weights: bool
    params: int
    gflops_512: float
    device: str
    loaded: bool


class UnknownModel(KeyError):
    def __init__(self, name: str, known: list[str]):
        super().__init__(name)
        self.message = f"unknown model {name!r}; known models: {', '.join(known)}"

    def __str__(self) -> str:
        return self.message


class Registry:
    """Models by name. `get` loads a model on its device the first time it is asked for."""

    def __init__(self, catalogue: dict[str, str] = MODELS):
        self._catalogue = dict(catalogue)
        self._models: dict[str, MattingModel] = {}
        self._loaded: set[str] = set()
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        return sorted(set(self._catalogue) | set(self._derived()))

    def _derived(self) -> dict[str, dict]:
        """Fine-tuned models in the weights folder: name -> card (with "base" a catalogue name)."""
        found = {}
        folder = models.base.WEIGHTS_DIR
        for card_path in folder.glob("*.json") if folder.is_dir() else ():
            name = card_path.stem
            try:
                card = json.loads(card_path.read_text())
            except (OSError, ValueError):
                continue
            base = card.get("base") if isinstance(card, dict) else None
            if base in self._catalogue and name not in self._catalogue and (folder / f"{name}.safetensors").is_file():
                found[name] = card
        return found

    def model(self, name: str) -> MattingModel:
        """The model's instance (declaration only; weights not loaded). Raises UnknownModel."""
        with self._lock:
            if name not in self._models:
                card = None if name in self._catalogue else self._derived().get(name)
                if name not in self._catalogue and card is None:
                    raise UnknownModel(name, self.names())
                module, cls = self._catalogue[card["base"] if card else name].split(":")
                model = getattr(importlib.import_module(module), cls)()
                if card:  # same network and inputs as its base, its own weights file
                    model.name = name
                    model.description = card.get("description") or f"{card['base']} fine-tuned"
                self._models[name] = model
            return self._models[name]

    def device(self, name: str) -> str:
        return "cpu" if self.model(name).runs_on == "cpu" else devices.accelerator()

    def get(self, name: str) -> MattingModel:
        """The model, loaded onto its device. Raises UnknownModel, or FileNotFoundError without weights."""
        model = self.model(name)
        device = self.device(name)
        with self._lock:
            if name not in self._loaded:
                if not model.weights_ready():
                    raise FileNotFoundError(
                        f"model {name!r} has no trained weights ({model.weights}); train them with "
                        f"`mattebox train --model {name}` or pick another model")
                model.load(device)
                self._loaded.add(name)
        return model

    def info(self, name: str) -> ModelInfo:
        m = self.model(name)
        return ModelInfo(m.name, m.description, m.inputs, m.weights_ready(), m.params(), m.gflops_512(),
                         self.device(name), name in self._loaded)

    def infos(self) -> list[ModelInfo]:
        return [self.info(n) for n in self.names()]
