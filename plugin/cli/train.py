"""`mattebox train`: train a model of the registry on composites (the Deep Image Matting rule) of
real foregrounds (--data) or of the procedural generator, with validation, checkpoints, --resume,
curves and contact sheets, on --device (CUDA when present: mixed precision, data loading workers). The
weights written (and installed) are the best validation SAD's, their card naming that step beside the
final step's figures. Several processes: launch with `torchrun --nproc_per_node N`."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# torch and the registry are imported by the functions that train: `reporter` is also the progress of a
# remote fine-tune (`mattebox finetune --remote`, run by host plugins), which must not import torch

TRAINABLE = ("bgm", "bgm_excite", "dcnn", "lightweight", "lightweight_octave", "msia")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, choices=TRAINABLE)
    p.add_argument("--data", action="append", default=[], metavar="DIR",
                   help="foregrounds: a folder in alphamatting's layout (input/, gt/) or composition1k's (crops/, "
                        "full/); repeat to train on several, each holding out its own validation split; "
                        "default: procedural subjects")
    p.add_argument("--backgrounds", default="", metavar="DIR",
                   help="background photos (every .png/.jpg below DIR); default: procedural")
    p.add_argument("--val-names", default="", help="comma-separated --data image names held out for "
                                                      "validation (default: the last 4)")
    p.add_argument("--steps", type=int, default=0, help="optimiser steps (default 300, or from --epochs)")
    p.add_argument("--epochs", type=float, default=0, help="passes over the composites (instead of --steps)")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--crop", type=int, default=256, help="training crop size")
    p.add_argument("--lr", type=float, default=0.0, help="learning rate (default: the paper's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (CUDA when present, else the CPU), cpu, cuda or cuda:N; "
                                                    "under torchrun each process takes cuda:LOCAL_RANK")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="data-loading processes (default: min(4, cores - 1) on CUDA, 0 on the CPU)")
    p.add_argument("--fp32", action="store_true", help="train in float32 on CUDA too (default: mixed precision, "
                                                       "bf16 where the GPU has it, else fp16 with loss scaling)")
    p.add_argument("--minutes", type=float, default=0, help="a time budget: end, validated and saved, at the "
                   "first step past it (the card says where); schedules keep the --steps length")
    p.add_argument("--val-every", type=int, default=100)
    p.add_argument("--save-every", type=int, default=50)
    p.add_argument("--out", default="", help="run folder (default runs/<model>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    p.add_argument("--init", default="", metavar="WEIGHTS",
                   help="start from these weights (e.g. the shipped models/weights/<model>.safetensors) instead of "
                        "random ones: a new run that continues an earlier one whose optimiser state did not travel")
    p.add_argument("--install", action="store_true",
                   help="install the best validation weights and card where the registry serves them (the first "
                        "folder of $MATTEBOX_WEIGHTS, else models/weights/; a running server picks them up)")
    p.add_argument("--data-licence", default="", help="the terms of --data and --backgrounds, recorded in the "
                                                       "weights' card (default: ours, for procedural data)")
    p.add_argument("--progress", choices=("text", "json", "openjd"), default="text")


def datasets(args: argparse.Namespace):
    """(train, validation) composite datasets."""
    from training.data.composite import CompositeDataset
    from training.data.sources import PhotoBackgrounds, SyntheticBackgrounds, SyntheticForegrounds, foreground_folder

    if args.data:  # alphamatting's layout, or composition1k's (held out by object)
        from training.data.joined import JoinedForegrounds

        fgs = JoinedForegrounds([foreground_folder(d) for d in args.data])
        train_fg, val_fg = fgs.split(args.val_names.split(",") if args.val_names else None)
    else:
        train_fg, val_fg = SyntheticForegrounds(16, seed=args.seed), SyntheticForegrounds(4, seed=args.seed + 1000)
    if args.backgrounds:
        train_bg = val_bg = PhotoBackgrounds(args.backgrounds)
    else:
        train_bg, val_bg = SyntheticBackgrounds(32, seed=args.seed), SyntheticBackgrounds(4, seed=args.seed + 1000)
    train = CompositeDataset(train_fg, train_bg, size=args.crop, seed=args.seed)
    val = CompositeDataset(val_fg, val_bg, size=args.crop, length=8, seed=args.seed + 1)
    from training.recipes import recipe

    return recipe(args.model).training_set(train, args.seed), val  # DCNN: patches of solved composites


def data_card(args: argparse.Namespace, val) -> dict:
    """Where the training and validation composites came from, and under what terms."""
    ours = "procedural (training.synthetic)"
    photos = args.data or args.backgrounds
    return {"foregrounds": ", ".join(args.data) or ours, "backgrounds": args.backgrounds or ours,
            "validation_foregrounds": getattr(val.fgs, "names", None),  # photo foregrounds have names
            "licence": args.data_licence or getattr(val.fgs, "licence", "") or (
                "not stated (record it with --data-licence)" if photos else
                "procedural data generated by Mattebox: no third-party terms")}


def _init_card(path: str) -> dict | None:
    """What a run started from (--init): the file, its digest, and that file's own card when it has one
    (so the hardware and data of every stage of a weights file's history stay on its card)."""
    if not path:
        return None
    from models import store

    side = os.path.splitext(path)[0] + ".json"
    earlier = None
    if os.path.isfile(side):
        with open(side) as f:
            earlier = json.load(f)
    return {"weights": os.path.abspath(path), "digest": store.digest(Path(path)), "card": earlier}


def reporter(mode: str, rank: int):
    if rank != 0:
        return None, None
    start = time.perf_counter()

    def on_step(r) -> None:
        pct = 100.0 * r.step / r.total
        if mode == "json":
            print(json.dumps({"event": "step", "step": r.step, "total": r.total, "loss": round(r.loss, 6),
                              "percent": round(pct, 1), "steps_per_s": round(r.steps_per_s, 3),
                              **{k: round(v, 6) for k, v in r.parts.items()}}), flush=True)
        elif mode == "openjd":
            print(f"openjd_progress: {pct:.1f}", flush=True)
        else:
            eta = (r.total - r.step) / max(r.steps_per_s, 1e-9)
            bar = "#" * int(pct / 5)
            print(f"\r[{bar:<20}] step {r.step}/{r.total} loss {r.loss:.4f} {r.steps_per_s:.2f} steps/s "
                  f"ETA {eta:.0f} s ", end="", file=sys.stderr, flush=True)

    def on_validate(step: int, m: dict) -> None:
        text = " ".join(f"{k} {v:.4g}" for k, v in m.items())
        if mode == "json":
            print(json.dumps({"event": "validate", "step": step, **m}), flush=True)
        elif mode == "openjd":
            print(f"openjd_status: step {step}: {text}", flush=True)
        else:
            print(f"\nvalidation at step {step} ({time.perf_counter() - start:.0f} s): {text}", file=sys.stderr)

    return on_step, on_validate


def run(args: argparse.Namespace) -> int:
    import torch
    import torch.distributed as dist

    from models import store
    from models.registry import Registry
    from training import checkpoint, device
    from training.recipes import recipe
    from training.trainer import TrainConfig, Trainer

    try:
        dev = device.resolve(args.device)  # before any work: a device that cannot be used is said at once
    except ValueError as err:
        print(f"mattebox train: {err}", file=sys.stderr)
        return 2
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # started by torchrun: one GPU per process on CUDA
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    try:
        train, val = datasets(args)
        steps = args.steps or (max(1, round(args.epochs * len(train) / args.batch)) if args.epochs else 300)
        out = os.path.abspath(args.out or os.path.join("runs", args.model))
        cfg = TrainConfig(model=args.model, out=out, steps=steps, batch=args.batch, lr=args.lr, seed=args.seed,
                          val_every=args.val_every, save_every=args.save_every, device=args.device,
                          workers=args.workers, amp=not args.fp32, minutes=args.minutes)
        torch.manual_seed(args.seed)
        model = Registry().model(args.model)
        net = model.build()
        if args.init and not (args.resume and os.path.exists(os.path.join(out, "checkpoint.safetensors"))):
            from safetensors.torch import load_file

            net.load_state_dict(load_file(args.init))
        on_step, on_validate = reporter(args.progress, rank)
        trainer = Trainer(cfg, net, recipe(args.model), train, val, on_step, on_validate)
        if not (args.resume and os.path.exists(trainer.checkpoint_path)):
            trainer.validate(0)  # the start's score, the first best: an --init's weights, dcnn's and bgm's inputs
        summary = trainer.run(resume=args.resume)
        if rank == 0:
            weights = os.path.join(out, model.weights)
            best = trainer.restore_best()  # the weights written (and installed): the best validation's
            card = {"model": args.model, "steps": summary["steps_done"], "planned_steps": steps, "seconds": summary["seconds"], "hardware": device.name(dev),
                    "device": summary["device"], "precision": summary["precision"],
                    "processes": dist.get_world_size() if dist.is_initialized() else 1,
                    "init": _init_card(args.init), "data": data_card(args, val), "weights_step": best["step"] if best else summary["steps_done"],
                    "validation": best or summary["metrics"],
                    "final": {"step": summary["steps_done"], "loss": summary["loss"], "validation": summary["metrics"]},
                    "weights_sha256_per_process": summary["digests"]}  # of the final step: every process agrees
            checkpoint.save_weights(weights, net, card)
            with open(os.path.splitext(weights)[0] + ".json", "w") as f:
                json.dump(card, f, indent=2)
            installed = store.install(args.model, weights, card) if args.install else None
            print(f"\nmattebox train: {args.model} weights {weights}"
                  f"{' (installed in ' + str(installed) + ')' if installed else ''}", file=sys.stderr)
        if dist.is_initialized():  # the others wait for rank 0's files: one leaving early can abort the group
            dist.barrier()
    except KeyboardInterrupt:
        print("\nmattebox train: interrupted; continue with --resume", file=sys.stderr)
        return 130
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0
