"""`mattebox export`: every network to TorchScript (and some to ONNX) with weights from a fresh build,
checked by loading the written file back; and the refusals (no weights, no network, wrong weights)."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import training.export
from models.registry import Registry
from plugin.cli.main import main

NETWORKS = ("dcnn", "bgm", "bgm_excite", "msia", "lightweight")
ODD = (37, 53)  # (H, W) not among the export's own parity sizes
HAS_ONNX = all(importlib.util.find_spec(p) for p in training.export.ONNX_PACKAGES)


def fresh_weights(name: str, folder) -> str:
    """A safetensors file with the weights of a freshly built (untrained) network of model `name`.
    Seeded: an untrained deep network can have huge activations, where float32 rounding differences
    between runtimes become visible after the sigmoid; trained weights do not behave like that."""
    path = folder / f"{name}.safetensors"
    torch.manual_seed(0)
    save_file(Registry().model(name).build().state_dict(), str(path))
    return str(path)


def mattebox_export(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(["export", *args])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("name", NETWORKS)
def test_torchscript_export_loads_back_and_matches_eager(name, tmp_path, capsys):
    out = tmp_path / f"{name}.pt"
    rc, stdout, err = mattebox_export(capsys, "--model", name, "--format", "torchscript", "--out", str(out),
                                      "--weights", fresh_weights(name, tmp_path), "--json")
    assert rc == 0, err
    info = json.loads(stdout)
    channels = Registry().model(name).channels()
    assert info["channels"] == channels and info["max_abs_diff"] <= training.export.ATOL
    assert [s[1] for s in info["sizes"]] == [channels, channels]
    loaded = torch.jit.load(str(out))
    with torch.no_grad():
        pha = loaded(torch.rand(1, channels, *ODD))
    assert pha.shape == (1, 1, *ODD) and pha.dtype == torch.float32
    assert 0.0 <= pha.min() and pha.max() <= 1.0


def test_text_report_names_the_file_the_channels_and_the_parity(tmp_path, capsys):
    out = tmp_path / "dcnn.pt"
    rc, stdout, err = mattebox_export(capsys, "--model", "dcnn", "--format", "torchscript", "--out", str(out),
                                      "--weights", fresh_weights("dcnn", tmp_path))
    assert rc == 0, err
    assert str(out) in stdout
    assert "(B, 5, H, W)" in stdout and "src RGB, closed-form alpha, KNN alpha" in stdout
    assert "max abs diff" in stdout and "1x5x67x93" in stdout


@pytest.mark.skipif(not HAS_ONNX, reason="ONNX export needs onnx, onnxruntime and onnxscript")
@pytest.mark.parametrize("name, exporter", [("dcnn", "TorchScript-based"), ("msia", "torch.onnx"),
                                            ("bgm_excite", "torch.export-based")])
def test_onnx_export_runs_in_onnxruntime_at_any_size(name, exporter, tmp_path, capsys):
    import onnxruntime

    out = tmp_path / f"{name}.onnx"
    rc, stdout, err = mattebox_export(capsys, "--model", name, "--format", "onnx", "--out", str(out),
                                      "--weights", fresh_weights(name, tmp_path), "--json")
    assert rc == 0, err
    info = json.loads(stdout)
    assert exporter in info["exporter"] and info["max_abs_diff"] <= training.export.ATOL
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    channels = Registry().model(name).channels()
    pha = session.run(None, {"x": np.random.default_rng(0).random((1, channels, *ODD), np.float32)})[0]
    assert pha.shape == (1, 1, *ODD)


def test_onnx_without_its_packages_says_what_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(training.export, "ONNX_PACKAGES", ("onnx", "no_such_package_for_mattebox"))
    rc, _, err = mattebox_export(capsys, "--model", "dcnn", "--format", "onnx", "--out", str(tmp_path / "a.onnx"),
                                 "--weights", fresh_weights("dcnn", tmp_path))
    assert rc == 1 and "pip install onnx no_such_package_for_mattebox" in err
    assert not (tmp_path / "a.onnx").exists()


def test_a_model_without_trained_weights_is_refused(tmp_path, capsys, weights_dir):
    out = tmp_path / "msia.pt"
    rc, _, err = mattebox_export(capsys, "--model", "msia", "--format", "torchscript", "--out", str(out))
    assert rc == 1 and "no trained weights" in err and "mattebox train --model msia" in err
    assert not out.exists()


def test_a_classical_model_has_no_network_to_export(tmp_path, capsys):
    rc, _, err = mattebox_export(capsys, "--model", "closed_form", "--format", "torchscript",
                                 "--out", str(tmp_path / "cf.pt"))
    assert rc == 1 and "no network to export" in err and "lightweight" in err


def test_weights_of_another_network_are_refused(tmp_path, capsys):
    rc, _, err = mattebox_export(capsys, "--model", "msia", "--format", "torchscript", "--out",
                                 str(tmp_path / "m.pt"), "--weights", fresh_weights("dcnn", tmp_path))
    assert rc == 1 and "does not hold weights for 'msia'" in err


def test_a_file_that_fails_parity_is_deleted(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(training.export, "ATOL", -1.0)
    out = tmp_path / "dcnn.pt"
    rc, _, err = mattebox_export(capsys, "--model", "dcnn", "--format", "torchscript", "--out", str(out),
                                 "--weights", fresh_weights("dcnn", tmp_path))
    assert rc == 1 and "differs from the eager network" in err
    assert not out.exists()
