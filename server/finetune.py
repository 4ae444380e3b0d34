"""Fine-tuning as a server-side job: the server runs `mattebox finetune` in a child process (training
never shares the serving process: a crash or a memory spike there cannot take inference down) and
relays its progress lines as FinetuneEvents. Every file the child reads must be under the allowed roots,
resolved, as in path mode: checked before the child starts (a file swapped for a symlink after that is
not caught; path mode's window is one frame's read, this one is the training's).
Cancelling the call (or dropping it) stops the child; nothing is installed then.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from typing import Iterator

import grpc

from models import devices, sequence
from server.api import pb
from server.frames import RequestError
from server.jobs import MAX_FRAMES
from server.paths import AllowedRoots


def command(r: pb.FinetuneRequest, roots: AllowedRoots, run_dir: str) -> list[str]:
    """The `mattebox finetune` command line for a request. Every file the child will read (each training
    and held-back frame of input, mattes and plate) is checked against the roots first, resolved, as
    path mode checks its frames; the held-back frames are chosen here (as the command would choose
    them) and passed explicitly, so the child reads exactly the files checked."""
    if not (r.base and r.name and r.input and r.mattes and r.train_frames):
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           "a fine-tune needs base, name, input, mattes and train_frames")
    if len(r.train_frames) + len(r.held_frames) > MAX_FRAMES:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"a fine-tune names at most {MAX_FRAMES} training and held-back frames")
    paths = {"--input": r.input, "--mattes": r.mattes, "--background": r.background}
    train = list(r.train_frames)
    try:
        for pattern in filter(None, paths.values()):
            sequence.check_pattern(pattern)
            roots.check(sequence.frame_path(pattern, train[0]))  # the folders, before listing one
        held = list(r.held_frames) or sequence.held_back(r.mattes, train)
        for frame in dict.fromkeys(train + held):
            for pattern in filter(None, paths.values()):
                roots.check(sequence.frame_path(pattern, frame))
    except ValueError as err:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, str(err)) from None
    cmd = [sys.executable, "-m", "plugin.cli.main", "finetune", "--model", r.base, "--name", r.name,
           "--train-frames", ",".join(map(str, train)), "--out", run_dir, "--progress", "json",
           "--device", devices.accelerator()]  # trains where the server runs its networks
    cmd += [a for flag, pattern in paths.items() if pattern for a in (flag, pattern)]
    if held:
        cmd += ["--held-frames", ",".join(map(str, held))]
    else:  # nothing to hold back: the child must not look on disk for more (files it was not checked for)
        cmd += ["--frames", f"{train[0]}-{train[0]}"]
    if r.steps:
        cmd += ["--steps", str(r.steps)]
    if r.colour_space:
        cmd += ["--colour-space", r.colour_space]
    if r.matte_channel:
        cmd += ["--matte-channel", r.matte_channel]
    return cmd


def events(r: pb.FinetuneRequest, roots: AllowedRoots, context) -> Iterator[pb.FinetuneEvent]:
    with tempfile.TemporaryDirectory(prefix="mattebox-finetune-") as run_dir:
        proc = subprocess.Popen(command(r, roots, run_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        context.add_callback(proc.terminate)  # a cancelled or dropped call stops the training
        try:
            for line in proc.stdout:
                ev = _event(line)
                if ev is not None:
                    yield ev
            proc.wait()
            if proc.returncode != 0 and context.is_active():
                err = proc.stderr.read().strip().splitlines()
                yield pb.FinetuneEvent(error=err[-1] if err else f"fine-tuning failed ({proc.returncode})")
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(30)


def _event(line: str) -> pb.FinetuneEvent | None:
    try:
        e = json.loads(line)
    except ValueError:
        return None
    kind = e.get("event")
    if kind == "step":
        return pb.FinetuneEvent(step=pb.FinetuneStep(step=e["step"], total=e["total"], loss=e["loss"],
                                                     percent=e["percent"]))
    if kind == "validate":
        return pb.FinetuneEvent(validation=pb.FinetuneValidation(step=e["step"], sad=e["sad"], mse=e["mse"]))
    if kind == "installed":
        return pb.FinetuneEvent(done=pb.FinetuneDone(name=e["name"], held_sad_before=e["held_sad_before"],
                                                     held_sad_after=e["held_sad_after"]))
    return None
