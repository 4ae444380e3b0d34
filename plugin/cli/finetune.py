"""`mattebox finetune`: fine-tune a model on a few frames of one shot and serve it at once.

Exit status: 0 the new model is installed (and, with --server, listed there); 3 the run finished but
no step beat the base model on the held-back frames, so nothing was installed (the base stays the
better model: a pipeline should keep using it); 130 stopped (Ctrl-C, SIGTERM, a dropped --remote
call on the server's side): nothing installed, the run folder keeps its checkpoint and `--resume`
continues it from the step it stopped at; 1 an error; 2 bad arguments. With --progress json the last
line says which: {"event": "installed", ...}, {"event": "kept_base", "message": ...},
{"event": "stopped", "step": N, ...} or {"event": "error", ...} ("done" for --remote, whose server
installs); {"event": "notice", "message": "resumed from step N"} when a run continues.

A fine-tune runs in its run folder (--out, default runs/<name>; on a server, one folder per name). It
starts afresh there unless --resume is given; a server re-sent the same request after a dropped call
resumes by itself (server/finetune.py).
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from types import SimpleNamespace

import grpc

from models import sequence
from plugin.cli.connect import add_server_arguments, connection, explain
from plugin.cli.train import reporter
from plugin.client.connection import Client

# training.* (torch) is imported by run() for a fine-tune in this process only: `--remote` is what host
# plugins run, and it never imports torch

KEPT_BASE = 3  # exit status: finished, nothing beat the base, nothing installed
STOPPED = 130


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="base model (bgm, bgm_excite, lightweight, msia, dcnn)")
    p.add_argument("--input", required=True, help="the shot's image sequence pattern (####, %%04d, $F4)")
    p.add_argument("--mattes", required=True, help="ground-truth matte pattern (roto or key renders)")
    p.add_argument("--train-frames", required=True, help="frames to train on, e.g. 4,12,20")
    p.add_argument("--held-frames", default="", help="frames with mattes held back for early stopping "
                                                     "(default: two other frames of --frames with a matte on disk)")
    p.add_argument("--background", default="", help="clean plate (still or pattern), for plate models")
    p.add_argument("--frames", default="", help="the shot's range A-B, where held-back mattes are looked for")
    p.add_argument("--name", required=True, help="name of the new model")
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--crop", type=int, default=192)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-4, help="learning rate (default %(default)s)")
    p.add_argument("--colour-space", default="")
    p.add_argument("--matte-channel", default="", metavar="NAME",
                   help="channel of the mattes: A, R, G, B, Y (luminance) or a channel name "
                        "(default: the file's alpha, else its only channel, else luminance)")
    p.add_argument("--base-weights", default="", help="start from these weights instead of the base model's")
    p.add_argument("--device", default="auto", help="auto (CUDA when present, else the CPU), cpu, cuda or cuda:N "
                                                    "(a --remote fine-tune trains on the server's device)")
    p.add_argument("--out", default="", help="run folder (default runs/<name>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from the step it stopped at "
                                                          "(same settings; without a checkpoint it starts afresh)")
    p.add_argument("--remote", action="store_true", help="run the fine-tune on --server as a server-side job "
                                                          "(the shot must be on storage the server can read)")
    add_server_arguments(p, "the server to run a --remote fine-tune on; without --remote: check that it "
                            "now lists the new model")
    p.add_argument("--progress", choices=("text", "json", "openjd"), default="text")


def held_frames(args: argparse.Namespace, train: list[int]) -> list[int]:
    if args.held_frames:
        return [int(f) for f in args.held_frames.split(",")]
    return sequence.held_back(args.mattes, train, sequence.parse_range(args.frames) if args.frames else None)


def run_remote(args: argparse.Namespace, train: list[int]) -> int:
    """Fine-tune on the server, relaying its progress; the new model is served when it ends."""
    from server.api import pb

    req = pb.FinetuneRequest(base=args.model, name=args.name, input=args.input, mattes=args.mattes,
                             train_frames=train, held_frames=held_frames(args, train), background=args.background,
                             steps=args.steps, colour_space=args.colour_space, matte_channel=args.matte_channel)
    on_step, on_validate = reporter(args.progress, 0)
    with Client(args.server, **connection(args)) as c:
        try:
            for ev in c.finetune(req):
                kind = ev.WhichOneof("event")
                if kind == "step":
                    s = ev.step
                    on_step(SimpleNamespace(step=s.step, total=s.total, loss=s.loss, parts={}, steps_per_s=0.0))
                elif kind == "validation":
                    on_validate(ev.validation.step, {"sad": ev.validation.sad, "mse": ev.validation.mse})
                elif kind == "notice":
                    _notice(args.progress, ev.notice)
                elif kind == "done" and ev.done.base_kept:
                    d = ev.done
                    return _finish(args.progress, {"event": "kept_base", "name": d.name, "message": d.message,
                                                   "held_sad_before": d.held_sad_before,
                                                   "held_sad_after": d.held_sad_after}, d.message)
                elif kind == "done":
                    d = ev.done
                    return _finish(args.progress, {"event": "done", "name": d.name, "held_sad_before": d.held_sad_before,
                                                   "held_sad_after": d.held_sad_after},
                                   f"{args.server} serves {d.name}; held-back SAD {d.held_sad_before:.3f} -> "
                                   f"{d.held_sad_after:.3f}")
                else:
                    return _finish(args.progress, {"event": "error", "message": ev.error}, ev.error)
        except grpc.RpcError as err:
            return _finish(args.progress, {"event": "error", "message": explain(err, args.server)},
                           explain(err, args.server))
    return 1


def _finish(mode: str, event: dict, text: str) -> int:
    """Report how a fine-tune ended (a JSON line in json mode, always text on stderr); its exit status."""
    if mode == "json":
        print(json.dumps(event), flush=True)
    print(f"\nmattebox finetune: {text}", file=sys.stderr)
    return {"done": 0, "installed": 0, "kept_base": KEPT_BASE, "stopped": STOPPED}.get(event["event"], 1)


def _notice(mode: str, text: str, **fields) -> None:
    """Something the user should know while the fine-tune goes on (e.g. "resumed from step N")."""
    if mode == "json":
        print(json.dumps({"event": "notice", "message": text, **fields}), flush=True)
    elif mode == "openjd":
        print(f"openjd_status: {text}", flush=True)
    else:
        print(f"\nmattebox finetune: {text}", file=sys.stderr)


class _StopAsked:
    """SIGINT / SIGTERM while this is entered: the first asks the fine-tune to stop after the step in
    flight (it saves its checkpoint), a second stops at once. Handlers are set only in the main thread."""

    def __init__(self):
        self.asked = False
        self.previous: dict = {}

    def __call__(self) -> bool:
        return self.asked

    def _on_signal(self, signum, frame) -> None:
        self.asked = True
        signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)
        print("\nmattebox finetune: stopping after this step (again to stop at once)", file=sys.stderr, flush=True)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self.previous.items():
            signal.signal(s, handler)


def run(args: argparse.Namespace) -> int:
    if args.remote:
        if not args.server:
            print("mattebox finetune: --remote needs --server HOST:PORT", file=sys.stderr)
            return 2
        return run_remote(args, [int(f) for f in args.train_frames.split(",")])
    from training.finetune import FinetuneConfig, Stopped, finetune

    try:
        train = [int(f) for f in args.train_frames.split(",")]
        cfg = FinetuneConfig(base=args.model, name=args.name, input=args.input, mattes=args.mattes,
                             train_frames=train, held_frames=held_frames(args, train), background=args.background,
                             colour_space=args.colour_space, matte_channel=args.matte_channel, steps=args.steps,
                             batch=args.batch, crop=args.crop, lr=args.lr,
                             base_weights=args.base_weights, out=args.out, device=args.device)
        on_step, on_validate = reporter(args.progress, 0)
        with _StopAsked() as stop:
            summary = finetune(cfg, on_step, on_validate, resume=args.resume, stop=stop,
                               on_resumed=lambda step: _notice(args.progress, f"resumed from step {step}",
                                                               resumed_from=step))
    except Stopped as err:
        return _finish(args.progress, {"event": "stopped", "step": err.step, "out": err.out, "message": str(err)},
                       str(err))
    except (ValueError, OSError) as err:
        print(f"mattebox finetune: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nmattebox finetune: interrupted; nothing was installed (--resume continues from the last "
              "checkpoint)", file=sys.stderr)
        return STOPPED
    code = _finish(args.progress, {"event": "installed" if summary["installed"] else "kept_base", **summary},
                   summary["message"])
    if code == 0 and args.server:
        try:
            with Client(args.server, **connection(args)) as c:
                listed = args.name in [m.name for m in c.models()]
        except grpc.RpcError as err:
            print(f"mattebox finetune: could not ask {args.server}: {err.details()}", file=sys.stderr)
            return 1
        print(f"mattebox finetune: {args.server} {'serves' if listed else 'does NOT list'} {args.name}"
              f"{'' if listed else ' (does it share this weights folder?)'}", file=sys.stderr)
        return 0 if listed else 1
    return code
