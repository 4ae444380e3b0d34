"""Fine-tuning as a server-side job: the server runs `mattebox finetune` in a child process (training
never shares the serving process: a crash or a memory spike there cannot take inference down) and
relays its progress lines as FinetuneEvents. Every file the child reads must be under the allowed roots,
resolved, as in path mode: checked before the child starts (a file swapped for a symlink after that is
not caught; path mode's window is one frame's read, this one is the training's).

Each fine-tune runs in a run folder of its own, named after the new model, under `runs_folder()`.
Cancelling the call (or dropping it) stops the child at its next step boundary (SIGTERM: it saves its
checkpoint there); nothing is installed, and the folder stays. The same request sent again (same
name, same settings) resumes from that checkpoint -- the first event is the notice "resumed from step
N" -- and a request with other settings under that name starts afresh. A run that ends (installed, or
nothing beat the base: FinetuneDone.base_kept), or fails before its first checkpoint, leaves no folder. One fine-tune per name at a
time: a second call for a name whose call is still open is refused (ALREADY_EXISTS); one sent after a
drop waits for the dropped run to stop.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
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


#: `mattebox finetune` exit statuses of a run that ended (plugin/cli/finetune.py): installed, base kept
ENDED = (0, 3)
#: seconds a stopped child may take to finish its step and save its checkpoint before it is killed
STOP_WAIT_S = 120.0

_lock = threading.Lock()
_open: dict[str, object] = {}  # name -> the call (grpc context) running that fine-tune
_name_locks: dict[str, threading.Lock] = {}


def runs_folder() -> Path:
    """Where this server keeps its fine-tunes' run folders: $MATTEBOX_RUNS, else mattebox/finetune-runs
    in the user's cache folder ($XDG_CACHE_HOME, else ~/.cache)."""
    if os.environ.get("MATTEBOX_RUNS"):
        return Path(os.environ["MATTEBOX_RUNS"])
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "mattebox" / "finetune-runs"


def events(r: pb.FinetuneRequest, roots: AllowedRoots, context) -> Iterator[pb.FinetuneEvent]:
    from training.finetune import NAME

    if r.name and not NAME.fullmatch(r.name):  # a path component here; an empty one is refused by command()
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"name {r.name!r}: use lower-case letters, digits, '-' and '_' (max 64)")
    run_dir = runs_folder() / r.name
    cmd = command(r, roots, str(run_dir))
    claimed = _claim(r.name, context)
    try:
        yield from _run(cmd, run_dir, context)
    finally:
        with _lock:
            if _open.get(r.name) is context:
                del _open[r.name]
        claimed.release()


def _claim(name: str, context) -> threading.Lock:
    """Hold fine-tune `name` for this call: refused while another open call runs it; after a dropped
    one, once its child has stopped."""
    with _lock:
        other = _open.get(name)
        if other is not None and other.is_active():
            raise RequestError(grpc.StatusCode.ALREADY_EXISTS,
                               f"a fine-tune named {name!r} is already running on this server: wait for it, or "
                               f"cancel it and send the request again to resume it")
        held = _name_locks.setdefault(name, threading.Lock())
    if not held.acquire(timeout=STOP_WAIT_S + 30):
        raise RequestError(grpc.StatusCode.UNAVAILABLE,
                           f"the earlier fine-tune named {name!r} is still stopping; send the request again later")
    with _lock:
        _open[name] = context
    return held


def _run(cmd: list[str], run_dir: Path, context) -> Iterator[pb.FinetuneEvent]:
    """Run the child in run_dir, resuming the run there when it was started by the same command."""
    record = run_dir / "request.json"
    try:
        same = json.loads(record.read_text()) == cmd
    except (OSError, ValueError):
        same = False
    proc = subprocess.Popen(cmd + (["--resume"] if same else []), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    stopping = threading.Event()

    def stop() -> None:  # once: a second SIGTERM makes the child stop at once, without its checkpoint
        if not stopping.is_set():
            stopping.set()
            proc.terminate()

    context.add_callback(stop)  # a cancelled or dropped call stops the training at its next step
    run_dir.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(cmd))
    ended = False
    try:
        for line in proc.stdout:
            ev = _event(line)
            if ev is not None:
                ended = ended or ev.WhichOneof("event") in ("done", "error")
                yield ev
        proc.wait()
        if proc.returncode in ENDED or not (run_dir / "checkpoint.safetensors").exists():
            shutil.rmtree(run_dir, ignore_errors=True)  # nothing to resume: a run that ended, or never began
        if proc.returncode not in ENDED and context.is_active() and not ended:
            err = proc.stderr.read().strip().splitlines()
            yield pb.FinetuneEvent(error=err[-1] if err else f"fine-tuning failed ({proc.returncode})")
    finally:
        if proc.poll() is None:
            stop()
            try:
                proc.wait(STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


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
    if kind == "notice":
        return pb.FinetuneEvent(notice=e["message"])
    if kind in ("installed", "kept_base"):
        return pb.FinetuneEvent(done=pb.FinetuneDone(name=e["name"], held_sad_before=e["held_sad_before"],
                                                     held_sad_after=e["held_sad_after"], base_kept=kind == "kept_base",
                                                     message=e["message"]))
    if kind == "stopped":  # stopped from outside the call (the server shutting down): it resumes on a re-send
        return pb.FinetuneEvent(error=f"the fine-tune stopped after step {e['step']}; nothing was installed; send "
                                      f"the same request again to resume it")
    return None
