"""Training on a device (--device), with data-loading workers, keeping the best validation weights:
what runs on this CPU-only machine. The CUDA paths (autocast, the grad scaler, nccl) are measured by
`mattebox bench gpu` on a CUDA machine (training/gpu_check.sh)."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from models.registry import Registry
from plugin.cli.main import main
from training import device
from training.data.composite import CompositeDataset
from training.data.sources import SyntheticBackgrounds, SyntheticForegrounds
from training.finetune import FinetuneConfig, finetune
from training.recipes import recipe
from training.trainer import TrainConfig, Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["--model", "msia", "--batch", "2", "--crop", "64", "--progress", "json"]


def cpu_model() -> str:
    with open("/proc/cpuinfo") as f:
        return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))


@pytest.mark.parametrize("spec", ["cpu", "auto"])
def test_training_runs_on_the_cpu_and_the_card_says_so(spec, tmp_path):
    assert main(["train", *TINY, "--steps", "2", "--val-every", "2", "--device", spec, "--out", str(tmp_path)]) == 0
    card = json.loads((tmp_path / "msia.json").read_text())
    assert card["device"] == "cpu" and card["precision"] == "fp32" and card["processes"] == 1
    assert cpu_model() in card["hardware"]  # not a GPU's name, whatever else the machine has


@pytest.mark.parametrize("spec,message", [("cuda:5", "cuda:5 asked, this torch build has no CUDA"),
                                          ("cuda", "cuda asked, this torch build has no CUDA"),
                                          ("gpu", "use auto, cpu, cuda or cuda:N")])
def test_a_device_that_cannot_be_used_is_refused_before_any_work(spec, message, tmp_path, capsys):
    if torch.version.cuda is not None and spec != "gpu":
        pytest.skip("this torch build has CUDA")
    assert main(["train", *TINY, "--steps", "2", "--device", spec, "--out", str(tmp_path / "run")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match=message):  # the fine-tune too, before it reads a file
        finetune(FinetuneConfig(base="msia", name="shot-ft", input=str(tmp_path / "none.####.exr"),
                                mattes=str(tmp_path / "none.####.exr"), train_frames=[1], held_frames=[2],
                                device=spec))


def test_under_torchrun_an_explicit_gpu_is_refused(monkeypatch):
    """Every process of a torchrun takes cuda:LOCAL_RANK; one GPU named for all of them is refused."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(ValueError, match="cuda:1 asked under torchrun: every process takes cuda:LOCAL_RANK"):
        device.resolve("cuda:1")
    assert device.resolve("cpu") == torch.device("cpu")


def composites(n: int, seed: int = 0) -> CompositeDataset:
    """n items a (2-item) epoch apart: with batch 2, every second step starts a new epoch."""
    return CompositeDataset(SyntheticForegrounds(2, 96, 80, seed=seed), SyntheticBackgrounds(3, 64, seed=seed),
                            size=64, length=n, seed=seed)


def trainer(out, workers: int, steps: int = 6, val_every: int = 3) -> Trainer:
    torch.manual_seed(0)
    cfg = TrainConfig(model="msia", out=str(out), steps=steps, batch=2, val_every=val_every, save_every=100,
                      val_items=1, device="cpu", workers=workers)
    return Trainer(cfg, Registry().model("msia").build(), recipe("msia"), composites(4), composites(1, seed=5))


def test_workers_load_exactly_the_data_of_one_process_and_resume_to_the_same_weights(tmp_path):
    alone = trainer(tmp_path / "alone", workers=0)
    alone.run()
    loaded = trainer(tmp_path / "workers", workers=2)  # 3 epochs: the workers' copies change epoch too
    loaded.run()
    assert loaded.digest() == alone.digest()
    stopped = trainer(tmp_path / "stopped", workers=2)
    stopped.should_stop = lambda step, m: step == 3
    stopped.run()
    assert stopped.history["loss"][-1][0] == 3
    resumed = trainer(tmp_path / "stopped", workers=2)  # a new process's trainer, a fresh network
    resumed.run(resume=True)
    assert resumed.history["loss"][0][0] == 1 and resumed.history["loss"][-1][0] == 6
    assert resumed.digest() == alone.digest()
    assert resumed.best == alone.best  # the best validation survives the resume


def test_the_best_validation_weights_are_kept_not_the_last(tmp_path):
    run = trainer(tmp_path, workers=0, steps=6, val_every=1)
    seen = {}

    def on_step(r):
        if r.step == 3:  # a learning-rate spike: the validations after it are worse
            for g in run.opt.param_groups:
                g["lr"] = 1.0

    def on_validate(step, m):
        seen[step] = run.digest()

    run.on_step, run.on_validate = on_step, on_validate
    run.run()
    sads = {m["step"]: m["sad"] for m in run.history["metrics"]}
    assert run.best["step"] == min(sads, key=sads.get) <= 3 and sads[6] > run.best["sad"]
    assert run.restore_best() == run.best
    assert run.digest() == seen[run.best["step"]] != seen[6]


def test_train_install_installs_the_best_weights_and_says_which_step(tmp_path, monkeypatch):
    monkeypatch.setenv("MATTEBOX_WEIGHTS", str(tmp_path / "weights"))
    out = tmp_path / "run"
    assert main(["train", *TINY, "--steps", "4", "--val-every", "1", "--lr", "0.05", "--device", "cpu",
                 "--out", str(out), "--install"]) == 0
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    best = min(lines, key=lambda m: m["sad"])
    card = json.loads((tmp_path / "weights" / "msia.json").read_text())
    assert card["weights_step"] == best["step"] and card["validation"] == best
    assert card["final"]["step"] == 4 and card["final"]["validation"] == lines[-1]
    installed, kept = load_file(tmp_path / "weights" / "msia.safetensors"), load_file(out / "best.safetensors")
    assert installed.keys() == kept.keys() and all(torch.equal(installed[k], kept[k]) for k in kept)


def test_device_names_what_the_card_records():
    cpu = device.resolve("cpu")
    assert cpu.type == "cpu" and device.amp_dtype(cpu) is None and device.precision(None) == "fp32"
    assert cpu_model() in device.name(cpu) and f"({torch.get_num_threads()} threads)" in device.name(cpu)
    assert device.precision(torch.bfloat16) == "bf16 mixed" and device.precision(torch.float16) == "fp16 mixed"


def test_bench_gpu_says_there_is_no_cuda_device(capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    assert main(["bench", "gpu"]) == 1
    err = capsys.readouterr().err
    assert "no CUDA device here" in err and "--device cpu --quick" in err


def test_bench_gpu_quick_on_the_cpu_measures_every_network_and_model(capsys):
    from models.catalogue import MODELS
    from models.network import NetworkModel

    assert main(["bench", "gpu", "--device", "cpu", "--quick", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    registry = Registry()
    nets = {n for n in MODELS if isinstance(registry.model(n), NetworkModel)}
    assert report["device"] == "cpu" and cpu_model() in report["hardware"]
    assert {r["name"] for r in report["precision"]} == nets
    for r in report["precision"]:
        assert 0 <= r["fp16_max_diff"] < 1 and 0 <= r["bf16_max_diff"] < 1, r
    sizes = {"96x54", "128x72"}
    assert {(r["name"], r["size"]) for r in report["end_to_end"]} == {(n, s) for n in MODELS for s in sizes}
    assert all(r["frames_per_s"] > 0 for r in report["end_to_end"]), report["end_to_end"]
    assert {(r["name"], r["size"]) for r in report["tensor"]} == {(n, s) for n in nets for s in sizes}
    assert all(r["batch1_frames_per_s"] > 0 and r["batch2_frames_per_s"] > 0 for r in report["tensor"])
    assert {r["name"] for r in report["training"]} == nets
    assert all(r["steps_per_s"] > 0 and r["finite"] and r["precision"] == "fp32" for r in report["training"])
