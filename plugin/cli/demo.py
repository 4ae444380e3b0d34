"""`mattebox demo`: the main job on an embedded shot.

Generates a synthetic shot with the project's own code (a moving subject with soft, hairy and
semi-transparent edges over a textured background, its clean plate, trimaps and ground truth) as
scene-linear EXRs, starts a matting server, mattes the shot through gRPC in path mode, writes alpha
EXRs and a contact sheet (source / alpha / composite over a new background), prints SAD / MSE
against the ground truth, and stops the server.
"""
from __future__ import annotations

import argparse
import contextlib
import os

import numpy as np

from models import colour, images, sequence
from plugin.cli import evaluate
from plugin.cli.connect import spawn_server
from plugin.cli.progress import Progress, follow_job
from plugin.client.connection import Client
from server.api import pb
from training.synthetic import make_background, make_shot, trimap_from_alpha

FIRST = 1001
#: the model with the best matte on this shot of all those served with the shipped weights; no trained
#: network beats the classical solvers here yet (figures: README, "What the demo runs")
MODEL = "knn"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="demo_output", help="folder for the shot, the mattes and the contact sheet")
    p.add_argument("--model", default=MODEL, help=f"model to matte with (default {MODEL}, the best on this shot)")
    p.add_argument("--frames", type=int, default=8, help="shot length in frames")
    p.add_argument("--size", default="640x360", help="frame size WxH")
    p.add_argument("--server", default="", help="use this running server instead of starting one")
    p.add_argument("--progress", choices=("text", "json"), default="text")


def write_shot(folder: str, width: int, height: int, frames: int) -> dict[str, str]:
    """Write the synthetic shot; return its file patterns by role."""
    shot = make_shot(width, height, frames, first=FIRST, seed=7)
    pat = {k: os.path.join(folder, name) for k, name in (
        ("input", "shot/src.####.exr"), ("background", "shot/plate.exr"), ("trimap", "shot/trimap.####.png"),
        ("gt", "shot/gt_alpha.####.exr"), ("output", "alpha/alpha.####.exr"))}
    images.write_rgb(pat["background"], colour.convert(shot.plate, colour.SRGB, colour.SCENE_LINEAR))
    for i in range(frames):
        f = FIRST + i
        images.write_rgb(sequence.frame_path(pat["input"], f),
                         colour.convert(shot.image[i], colour.SRGB, colour.SCENE_LINEAR))
        images.write_rgb(sequence.frame_path(pat["trimap"], f), np.repeat(trimap_from_alpha(shot.alpha[i])[..., None], 3, 2))
        images.write_alpha(sequence.frame_path(pat["gt"], f), shot.alpha[i])
    return pat


def contact_sheet(pat: dict[str, str], frames: list[int], path: str) -> None:
    """Rows of frames; columns: source, alpha, composite over a new background (8-bit sRGB PNG).
    The composite uses the clean plate: alpha*F = I - (1 - alpha)*B, so alpha errors show as ghosts."""
    plate = colour.convert(images.read(pat["background"], 3).pixels.astype(np.float32), colour.SCENE_LINEAR, colour.SRGB)
    new_bg = make_background(plate.shape[1], plate.shape[0], np.random.default_rng(99))
    rows = []
    for f in frames:
        src = colour.convert(images.read(sequence.frame_path(pat["input"], f), 3).pixels.astype(np.float32),
                             colour.SCENE_LINEAR, colour.SRGB)
        a = evaluate.read_matte(sequence.frame_path(pat["output"], f))[..., None]
        comp = np.clip(src - (1 - a) * plate + (1 - a) * new_bg, 0, 1)
        rows.append(np.concatenate([src, np.repeat(a, 3, 2), comp], axis=1))
    sheet = np.concatenate(rows, axis=0)
    images.write_rgb(path, np.rint(sheet * 255).astype(np.uint8))


def run(args: argparse.Namespace) -> int:
    width, height = (int(v) for v in args.size.lower().split("x"))
    out = os.path.abspath(args.out)
    progress = Progress(args.progress)
    print(f"mattebox demo: writing a {args.frames}-frame {width}x{height} synthetic shot to {out}/shot")
    pat = write_shot(out, width, height, args.frames)
    last = FIRST + args.frames - 1
    with contextlib.ExitStack() as stack:
        address = args.server or stack.enter_context(spawn_server("--allow-root", out))
        c = stack.enter_context(Client(address))
        print(f"mattebox demo: matting with {args.model!r} through the server at {address} (path mode)")
        req = pb.JobRequest(model=args.model, input=pat["input"], background=pat["background"], trimap=pat["trimap"],
                            first=FIRST, last=last, output=pat["output"])
        summary = follow_job(c.run_job(req), progress)
    if summary is None or summary.failed:
        return 1
    sheet = os.path.join(out, "contact_sheet.png")
    contact_sheet(pat, sorted({FIRST, (FIRST + last) // 2, last}), sheet)
    scores = evaluate.mean(evaluate.evaluate_frames(pat["output"], pat["gt"], pat["trimap"], FIRST, last))
    print(f"mattebox demo: alpha EXRs in {os.path.dirname(pat['output'])}, contact sheet {sheet}")
    print(f"mattebox demo: {args.model} vs ground truth (trimap unknown region, mean of {args.frames} frames): "
          f"SAD {scores['sad']:.3f}k  MSE {scores['mse']:.5f}")
    return 0
