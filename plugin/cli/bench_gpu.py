"""`mattebox bench gpu`: the device check, one command for a CUDA machine (training/gpu_check.sh).

  precision    every network's largest alpha difference, float16 and bfloat16 on the device against
               float32 on the CPU, on a generated 512x512 frame (goal: within 1e-2)
  end to end   every model in path mode as a user runs it: EXR frames on disk, a real server process
               (`mattebox serve --devices D`), a RunJob through the client, frames/s from the job's
               summary, at 1920x1080 and 3840x2160 (after a 1-frame job that loads the model). The CPU
               solvers (closed_form, knn, dcnn's inputs) get 1 frame, and no larger size when that
               would take more than 20 s, nor any when less than 100 s is left of the 450 s budget
  tensor       the network's forward alone on the device (as the server runs it: float16 on CUDA),
               batch 1 and batch 8, synchronised, on random input (speed does not depend on the pixels)
  training     100 steps per network with the Trainer on the device (mixed precision, its default
               data-loading workers), steps/s after the first 10 (cuDNN's autotuning), crop 256 batch 8
               of procedural composites rendered beforehand (dcnn: its 27x27 patches of 128 px
               composites, whose classical inputs are solved first; setup_s is that preparation)

Networks without trained weights run with untrained ones and are marked so (speed does not depend
on the weights; their precision figures are those of random weights). Without a CUDA device it says
so; `--device cpu --quick` runs the same measurements tiny (at most 128 px, 2 frames, 2 steps) so the command
itself is tested on any machine. Progress goes to stderr; the table (or with --json one JSON object)
to stdout.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass

import numpy as np

from models import colour, images, sequence
from models.base import BACKGROUND, TRIMAP, Sample
from models.catalogue import MODELS

SLOW = ("closed_form", "knn", "dcnn", "closed_form_pymatting", "knn_pymatting")  # CPU solvers at any device
GOAL = 1e-2  # largest alpha difference allowed against float32 (issue 15)
FIRST = 1001


@dataclass(frozen=True)
class Plan:
    check: int = 512                               # precision: side of the square frame
    sizes: tuple[tuple[int, int], ...] = ((1920, 1080), (3840, 2160))
    frames: int = 32                               # end to end: frames of a timed job (fast models)
    slow_frames: int = 1                           # ... of a CPU solver's job
    slow_limit_s: float = 20.0                     # a CPU solver skips a larger size past this estimate
    budget_s: float = 450.0                        # the whole command's; a CPU solver's job needs
    slow_reserve_s: float = 100.0                  # this much of it left, or is skipped
    batch: int = 8                                 # tensor: the batched forward
    repeat: int = 10                               # tensor: timed forwards after 3 warm-up ones
    steps: int = 100                               # training steps per network
    crop: int = 256
    dcnn_crop: int = 128
    train_batch: int = 8


QUICK = Plan(check=64, sizes=((96, 54), (128, 72)), frames=2, batch=2, repeat=2, steps=2, crop=64,
             dcnn_crop=64, train_batch=2, budget_s=3600.0)


def say(text: str) -> None:
    print(f"bench gpu: {text}", file=sys.stderr, flush=True)


def network_names(registry) -> list[str]:
    from models.network import NetworkModel

    return [n for n in MODELS if isinstance(registry.model(n), NetworkModel)]


def networks(registry):
    """(name, model, float32 CPU network, trained) of every network: trained weights when present."""
    from safetensors.torch import load_file

    for name in network_names(registry):
        model = registry.model(name)
        net = model.build().eval()
        trained = model.weights_ready()
        if trained:
            net.load_state_dict(load_file(str(model.weights_path())))
        yield name, model, net, trained


def infer(model, net, x, sample):
    """The model's own forward (its per-request settings, e.g. bgm_excite's steps) with `net`, which is
    on x's device in x's dtype: x (B, C, H, W) -> alpha (B, 1, H, W) there."""
    import torch

    model.net, model.device = net, str(x.device)
    with torch.inference_mode():
        return model.infer(x, sample)


def precision(plan: Plan, dev, registry) -> list[dict]:
    import torch

    from plugin.cli.bench_models import frame, only_inputs

    source = frame(plan.check, plan.check)
    rows = []
    for name, model, net, trained in networks(registry):
        sample = model.prepare(only_inputs(source, model))
        x = torch.from_numpy(model.pack(sample)).permute(2, 0, 1)[None].contiguous()
        ref = infer(model, net, x, sample).clamp(0, 1)
        row = {"name": name, "trained": trained, "size": f"{plan.check}x{plan.check}"}
        for key, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
            try:
                got = infer(model, copy.deepcopy(net).to(dev, dtype), x.to(dev, dtype), sample)
                row[f"{key}_max_diff"] = float((got.float().clamp(0, 1).cpu() - ref).abs().max())
            except RuntimeError as err:  # e.g. a CPU without half-precision kernels
                row[f"{key}_max_diff"], row[f"{key}_error"] = None, str(err).splitlines()[0]
        diffs = [row[k] for k in ("fp16_max_diff", "bf16_max_diff") if row[k] is not None]
        row["within_goal"] = bool(diffs) and max(diffs) <= GOAL
        rows.append(row)
        say(f"precision {name}: fp16 {row['fp16_max_diff']} bf16 {row['bf16_max_diff']}"
            f"{'' if trained else ' (untrained weights)'}")
    return rows


def write_shot(folder: str, plan: Plan) -> dict[tuple[int, int], dict[str, str]]:
    """Input EXRs (scene-linear), a clean plate EXR and trimap PNGs at every size, plan.frames of each:
    the generated frame, resized (the pixels do not change the speed), written once and copied."""
    import cv2

    from plugin.cli.bench_models import frame

    source = frame(*plan.sizes[0])
    linear = lambda a: colour.convert(a.astype(np.float32) / 255, colour.SRGB, colour.SCENE_LINEAR)  # noqa: E731
    shots = {}
    for w, h in plan.sizes:
        def fit(a, how=cv2.INTER_LINEAR, size=(w, h)):
            return a if a.shape[1::-1] == size else cv2.resize(a, size, interpolation=how)

        pat = {k: os.path.join(folder, f"{w}x{h}", name) for k, name in (
            ("input", "src.####.exr"), ("background", "plate.exr"), ("trimap", "tri.####.png"))}
        os.makedirs(os.path.dirname(pat["input"]), exist_ok=True)
        images.write_rgb(pat["background"], linear(fit(source.background)))
        images.write_rgb(sequence.frame_path(pat["input"], FIRST), linear(fit(source.image)))
        images.write_alpha(sequence.frame_path(pat["trimap"], FIRST), fit(source.trimap, cv2.INTER_NEAREST) / 255)
        for f in range(FIRST + 1, FIRST + plan.frames):
            for k in ("input", "trimap"):
                shutil.copyfile(sequence.frame_path(pat[k], FIRST), sequence.frame_path(pat[k], f))
        shots[(w, h)] = pat
    return shots


def job(client, name: str, model, pat: dict[str, str], out: str, frames: int):
    """Run a path-mode job of `frames` frames; its summary (pb.JobSummary) and the first error, if any."""
    from server.api import pb

    req = pb.JobRequest(model=name, input=pat["input"], first=FIRST, last=FIRST + frames - 1,
                        output=os.path.join(out, "alpha.####.exr"),
                        background=pat["background"] if BACKGROUND in model.inputs else "",
                        trimap=pat["trimap"] if TRIMAP in model.inputs else "")
    summary, error = None, ""
    for ev in client.run_job(req, timeout=3600):
        kind = ev.WhichOneof("event")
        if kind == "error" and not error:
            error = ev.error.message
        elif kind == "summary":
            summary = ev.summary
    shutil.rmtree(out, ignore_errors=True)
    return summary, error


def end_to_end(plan: Plan, dev, registry, root: str, names: list[str], deadline: float) -> list[dict]:
    from safetensors.torch import save_file

    from plugin.cli.connect import server_process
    from plugin.client.connection import Client

    shots = write_shot(os.path.join(root, "shot"), plan)
    untrained = os.path.join(root, "weights")  # networks without trained weights: untrained ones, marked
    os.makedirs(untrained, exist_ok=True)
    trained = {}
    for name in names:
        model = registry.model(name)
        trained[name] = model.weights_ready()
        if not trained[name]:
            save_file(model.build().state_dict(), os.path.join(untrained, model.weights))
    env = {**os.environ, "MATTEBOX_WEIGHTS": os.pathsep.join(filter(None, [os.environ.get("MATTEBOX_WEIGHTS"),
                                                                           untrained]))}
    rows = []
    with server_process("--allow-root", root, "--devices", str(dev), env=env, stdout=subprocess.DEVNULL,
                        timeout=120) as info, \
            Client(info["address"]) as client:
        for name in names:
            model = registry.model(name)
            slow = name in SLOW
            per_frame = None
            for (w, h), pat in shots.items():
                row = {"name": name, "size": f"{w}x{h}", "trained": trained[name]}
                rows.append(row)
                area = w * h / (plan.sizes[0][0] * plan.sizes[0][1])
                if slow and per_frame is not None and per_frame * area > plan.slow_limit_s:
                    row["skipped"] = f"about {per_frame * area:.0f} s a frame (CPU solver)"
                elif slow and time.perf_counter() > deadline - plan.slow_reserve_s:
                    row["skipped"] = f"the command's {plan.budget_s:.0f} s budget"
                if "skipped" in row:
                    say(f"end to end {name} {w}x{h}: skipped, {row['skipped']}")
                    continue
                out = os.path.join(root, "out", name, f"{w}x{h}")
                if not slow:  # the model's loading and first-use costs stay out of the timed job
                    job(client, name, model, pat, out, 1)
                frames = plan.slow_frames if slow else plan.frames
                summary, error = job(client, name, model, pat, out, frames)
                if summary is None or summary.failed or not summary.done:
                    row["error"] = error or "the job ended without a summary"
                    say(f"end to end {name} {w}x{h}: {row['error']}")
                    continue
                row.update(frames=summary.done, seconds=round(summary.seconds, 3),
                           frames_per_s=round(summary.done / summary.seconds, 2))
                per_frame = summary.seconds / summary.done
                say(f"end to end {name} {w}x{h}: {row['frames_per_s']} frames/s ({summary.done} frames)")
    return rows


def tensor(plan: Plan, dev, registry) -> list[dict]:
    import torch

    dtype = torch.float16 if dev.type == "cuda" else torch.float32  # what the server runs in
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    rows = []
    for name, model, net, trained in networks(registry):
        net = net.to(dev, dtype)
        sample = Sample(np.zeros((1, 1, 3), np.float32))  # infer reads only its settings: the defaults
        for w, h in plan.sizes:
            row = {"name": name, "size": f"{w}x{h}", "dtype": str(dtype).replace("torch.", ""), "trained": trained}
            for batch in (1, plan.batch):
                try:
                    x = torch.rand(batch, model.channels(), h, w, device=dev, dtype=dtype)
                    for _ in range(3):
                        infer(model, net, x, sample)
                    sync()
                    t = time.perf_counter()
                    for _ in range(plan.repeat):
                        infer(model, net, x, sample)
                    sync()
                    row[f"batch{batch}_frames_per_s"] = round(batch * plan.repeat / (time.perf_counter() - t), 2)
                except torch.cuda.OutOfMemoryError:
                    row[f"batch{batch}_frames_per_s"] = None
                    row[f"batch{batch}_error"] = "out of memory"
                    torch.cuda.empty_cache()
            rows.append(row)
            say(f"tensor {name} {w}x{h}: batch 1 {row['batch1_frames_per_s']}, "
                f"batch {plan.batch} {row[f'batch{plan.batch}_frames_per_s']} frames/s")
        del net
    return rows


def warm(data) -> None:
    """Render a composite dataset's procedural sources here, into their caches, so that the forked
    data-loading workers inherit them: steps/s then is the steady state, not each worker's first epoch."""
    for source in (getattr(data, "fgs", None), getattr(data, "bgs", None)):
        for i in range(len(source) if source is not None else 0):
            source.get(i)


def training(plan: Plan, dev, registry, root: str) -> list[dict]:
    import torch

    from plugin.cli.train import datasets
    from training.recipes import RECIPES, recipe
    from training.trainer import TrainConfig, Trainer

    rows = []
    for name in [n for n in network_names(registry) if n in RECIPES]:
        crop = plan.dcnn_crop if name == "dcnn" else plan.crop
        t = time.perf_counter()
        train, val = datasets(argparse.Namespace(model=name, data="", backgrounds="", val_names="", crop=crop, seed=0))
        warm(train)
        torch.manual_seed(0)
        stamps: dict[int, float] = {}
        losses: list[float] = []

        def on_step(r, stamps=stamps, losses=losses):
            stamps[r.step] = time.perf_counter()
            losses.append(r.loss)

        cfg = TrainConfig(model=name, out=os.path.join(root, "train", name), steps=plan.steps, batch=plan.train_batch,
                          val_every=plan.steps, save_every=plan.steps, val_items=1, device=str(dev))
        trainer = Trainer(cfg, registry.model(name).build(), recipe(name), train, val, on_step)
        setup = time.perf_counter() - t
        trainer.run()
        first = max(1, min(10, plan.steps // 4))
        rate = (plan.steps - first) / (stamps[plan.steps] - stamps[first])
        rows.append({"name": name, "steps": plan.steps, "batch": plan.train_batch, "crop": crop,
                     "precision": trainer.precision, "workers": trainer.workers, "steps_per_s": round(rate, 3),
                     "setup_s": round(setup, 1), "loss_first": round(losses[0], 5), "loss_last": round(losses[-1], 5),
                     "finite": bool(np.isfinite(losses).all())})
        say(f"training {name}: {rate:.2f} steps/s ({trainer.precision}, {trainer.workers} workers)")
        del trainer
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def table(report: dict) -> str:
    diff = lambda v: "-" if v is None else f"{v:.2e}"  # noqa: E731
    rate = lambda v: "-" if v is None else str(v)  # noqa: E731
    untrained = lambda r: "" if r["trained"] else "  (untrained weights)"  # noqa: E731
    lines = [f"device {report['device']} ({report['hardware']}), torch {report['torch']}"
             f"{', quick' if report['quick'] else ''}; {report['seconds']:.0f} s",
             "", f"precision: largest alpha difference against fp32 on the CPU (goal {GOAL})",
             f"{'model':<19} {'size':>9} {'fp16':>9} {'bf16':>9}  goal"]
    for r in report["precision"]:
        lines.append(f"{r['name']:<19} {r['size']:>9} {diff(r['fp16_max_diff']):>9} {diff(r['bf16_max_diff']):>9}  "
                     f"{'met' if r['within_goal'] else 'NOT met'}{untrained(r)}")
    lines += ["", "end to end, path mode (EXR in and out, real server): frames/s",
              f"{'model':<19} {'size':>9} {'frames':>6} {'frames/s':>9}"]
    for r in report["end_to_end"]:
        figure = r.get("frames_per_s", r.get("skipped") or r.get("error"))
        lines.append(f"{r['name']:<19} {r['size']:>9} {r.get('frames', '-'):>6} {figure!s:>9}{untrained(r)}")
    batch = report["plan"]["batch"]
    lines += ["", "tensor only (network forward on the device): frames/s",
              f"{'model':<19} {'size':>9} {'dtype':>8} {'batch 1':>9} {f'batch {batch}':>9}"]
    for r in report["tensor"]:
        lines.append(f"{r['name']:<19} {r['size']:>9} {r['dtype']:>8} {rate(r['batch1_frames_per_s']):>9} "
                     f"{rate(r[f'batch{batch}_frames_per_s']):>9}")
    lines += ["", "training on the device",
              f"{'model':<19} {'steps':>5} {'batch':>5} {'crop':>4} {'precision':>10} {'steps/s':>8} {'loss':>17}"]
    for r in report["training"]:
        loss = f"{r['loss_first']:.3f} -> {r['loss_last']:.3f}" if r["finite"] else "NOT FINITE"
        lines.append(f"{r['name']:<19} {r['steps']:>5} {r['batch']:>5} {r['crop']:>4} {r['precision']:>10} "
                     f"{r['steps_per_s']:>8} {loss:>17}")
    return "\n".join(lines)


def timed(seconds: dict, key: str, measure, *args):
    """measure(*args), its wall time in seconds[key]."""
    t = time.perf_counter()
    result = measure(*args)
    seconds[key] = round(time.perf_counter() - t, 1)
    return result


def run(args: argparse.Namespace) -> int:
    import torch

    from models.registry import Registry
    from training import device

    spec = args.device or "cuda"
    try:
        dev = device.resolve(spec)
    except ValueError as err:
        print(f"mattebox bench gpu: no CUDA device here ({err}); `mattebox bench gpu --device cpu --quick` "
              f"runs the same measurements tiny on the CPU", file=sys.stderr)
        return 1
    plan = QUICK if args.quick else Plan()
    registry = Registry()
    fast = [n for n in MODELS if n not in SLOW]
    t0 = time.perf_counter()
    deadline = t0 + plan.budget_s
    say(f"{device.name(dev)} ({dev}), {'quick' if args.quick else 'full'} plan")
    with tempfile.TemporaryDirectory(prefix="mattebox-bench-gpu-") as root:
        report = {"device": str(dev), "hardware": device.name(dev), "torch": torch.__version__, "quick": args.quick,
                  "plan": asdict(plan), "goal_max_diff": GOAL}
        seconds = report["section_seconds"] = {}
        report["precision"] = timed(seconds, "precision", precision, plan, dev, registry)
        report["end_to_end"] = timed(seconds, "end_to_end", end_to_end, plan, dev, registry,
                                     os.path.join(root, "fast"), fast, deadline)
        report["tensor"] = timed(seconds, "tensor", tensor, plan, dev, registry)
        report["training"] = timed(seconds, "training", training, plan, dev, registry, root)
        report["end_to_end"] += timed(seconds, "end_to_end_slow", end_to_end, plan, dev, registry,
                                      os.path.join(root, "slow"), list(SLOW), deadline)  # last: slow on a slow CPU
    report["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(report) if args.json else table(report), flush=True)
    return 0
