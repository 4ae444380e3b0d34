"""`mattebox matte`: matte one image or a sequence through a server.

Path mode (the server reads and writes the files) when the server is on this machine; otherwise the
frames are read here, streamed to the server in chunks and the outputs written here. A server on this
machine that may not touch the job's folders (outside its allowed roots) gets the pixels through
shared memory instead, said once as a notice. A private server (no --server) is started with the
job's folders as its allowed roots.

Module-level imports stay light (no torch, OpenImageIO or OpenCV): host plugins run this command for
every job, and only the frames-here path needs the image readers, imported when it runs.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import uuid

import grpc

from models import sequence
from plugin.cli.connect import add_server_arguments, client, explain
from plugin.cli.progress import Progress, follow_job
from server.api import pb
from server.auth import is_loopback

TRANSPORTS = ("auto", "path", "stream", "unary", "shm")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="model name (see `mattebox models`)")
    p.add_argument("--input", required=True, help="image file or sequence pattern (####, %%04d, $F4)")
    p.add_argument("--trimap", default="", help="trimap file or pattern (0/128/255) for trimap-based models")
    p.add_argument("--background", default="", help="clean plate file or pattern for plate-based models")
    p.add_argument("--output", required=True, help="alpha file or pattern; .exr (half float), .png, .tif, .jpg")
    p.add_argument("--foreground", default="", metavar="PATTERN",
                   help="also write the unmixed (straight) foreground RGB here, in the input's colour space; "
                        ".exr (half float), .png, .tif")
    p.add_argument("--frames", default="", help="frame range A-B (default: the frames of --input on disk)")
    p.add_argument("--matte-channel", default="", metavar="NAME",
                   help="channel the trimap is read from: A, R, G, B, Y (luminance) or a channel name "
                        "(default: the file's alpha, else its only channel, else luminance)")
    p.add_argument("--colour-space", default="", help="colour space of input and plate (default: what the file "
                                                        "says, else EXR/float scene_linear, integer files sRGB)")
    p.add_argument("--display-space", default="", help="space the model sees (default sRGB)")
    p.add_argument("--align-plate", action="store_true",
                   help="align a hand-held clean plate to each frame (features + RANSAC homography)")
    p.add_argument("--skip-existing", action="store_true",
                   help="keep outputs that are complete on disk (restart a stopped job where it stopped)")
    p.add_argument("--steps", type=int, default=0, help="recursive inference passes (models that have them)")
    p.add_argument("--transport", choices=TRANSPORTS, default="auto",
                   help="auto: path mode for a server on this machine (shared memory if it may not read "
                        "the files), else stream")
    p.add_argument("--progress", choices=("text", "json", "openjd"), default="text", help="json: one object per line on stdout")
    p.add_argument("--job-id", default="", help="id to cancel the job by (default: made up)")
    add_server_arguments(p)


def frame_range(args: argparse.Namespace) -> tuple[int, int]:
    if args.frames:
        return sequence.parse_range(args.frames)
    if not sequence.has_frame_token(args.input):
        return 1, 1
    found = sequence.frames_on_disk(args.input)
    if not found:
        raise ValueError(f"no frames on disk match {args.input}; check the pattern or give --frames A-B")
    return min(found), max(found)


def patterns(args: argparse.Namespace) -> dict[str, str]:
    """The job's file patterns as absolute paths (the server has its own working folder), by JobRequest
    field; unused ones are ""."""
    names = ("input", "trimap", "background", "output", "foreground")
    return {k: os.path.abspath(getattr(args, k)) if getattr(args, k) else "" for k in names}


def run(args: argparse.Namespace) -> int:
    progress = Progress(args.progress)
    try:
        first, last = frame_range(args)
        for flag in ("output", "foreground"):
            pattern = getattr(args, flag)
            if pattern and last > first and not sequence.has_frame_token(pattern):
                raise ValueError(f"--{flag} {pattern} needs a frame token (####, %04d or $F4) for frames {first}-{last}")
        paths = patterns(args)
        # never write over a source, whichever mode runs (the server checks too, for every client)
        sequence.check_distinct({k: paths[k] for k in ("input", "trimap", "background")},
                                {k: paths[k] for k in ("output", "foreground")}, first, last)
        folders = sorted({os.path.dirname(p) for p in paths.values() if p})
        with client(args, roots=folders) as c:
            transport = args.transport
            if transport == "auto":
                transport = "path" if not args.server or _local(args.server) else "stream"
            options = pb.MatteOptions(steps=args.steps, display_space=args.display_space,
                                      align_plate=args.align_plate, foreground=bool(args.foreground))
            if transport == "path":
                try:
                    return _path_mode(c, args, paths, first, last, options, progress)
                except grpc.RpcError as err:
                    if err.code() != grpc.StatusCode.PERMISSION_DENIED or args.transport == "path":
                        raise
                    progress.notice(f"the server may not read or write these files ({err.details()}); "
                                    "sending the pixels to it through shared memory instead")
                    transport = "shm"
            return _frames_here(c, args, paths, first, last, options, transport, progress)
    except grpc.RpcError as err:
        progress.error(None, explain(err, args.server))
    except (ValueError, OSError, RuntimeError) as err:
        progress.error(None, str(err))
    return 1


def _local(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]")
    return "," not in address and is_loopback(host)


def _path_mode(c, args, paths, first, last, options, progress: Progress) -> int:
    """The server reads and writes the files. A job the server refuses before it starts (e.g. a path
    outside its allowed roots) raises grpc.RpcError, so the caller can send the pixels instead."""
    req = pb.JobRequest(job_id=args.job_id or uuid.uuid4().hex[:12], model=args.model, first=first, last=last,
                        options=options, colour_space=args.colour_space, matte_channel=args.matte_channel,
                        skip_existing=args.skip_existing, **paths)
    call = c.run_job(req)
    previous = signal.signal(signal.SIGTERM, _Stop(c, call, req.job_id))
    try:
        summary = follow_job(call, progress)
    except grpc.RpcError as err:
        if err.code() != grpc.StatusCode.CANCELLED:
            raise
        progress.done(progress.count, 0, True, 0.0)
        return 130
    except KeyboardInterrupt:
        call.cancel()
        raise
    finally:  # a refused job falls back to sending the pixels: SIGTERM must stop that as usual
        signal.signal(signal.SIGTERM, previous)
    if summary is None or summary.cancelled:
        return 130
    return 1 if summary.failed else 0


#: seconds a job asked to stop (a host's SIGTERM) has to report its frames in flight before the call is dropped
STOP_GRACE_S = 20.0


class _Stop:
    """A host stops us (SIGTERM): ask the server to stop the job (CancelJob) and go on reading its events,
    so the frames it still finishes and writes (those already on their device) are reported like the
    others and what is on disk is what the host was told. The call is dropped after STOP_GRACE_S, at
    once if the server cannot be asked, and at a second SIGTERM."""

    def __init__(self, c, call, job_id: str):
        self.c, self.call, self.job_id, self.asked = c, call, job_id, False

    def __call__(self, *_signal) -> None:
        import threading

        if self.asked:
            self.call.cancel()
            return
        self.asked = True
        threading.Thread(target=self._ask, daemon=True).start()

    def _ask(self) -> None:
        import threading

        try:
            self.c.cancel_job(self.job_id)
        except Exception:  # the server is gone or refuses: drop the call instead
            self.call.cancel()
            return
        timer = threading.Timer(STOP_GRACE_S, self.call.cancel)
        timer.daemon = True
        timer.start()


def _frames_here(c, args, paths, first, last, options, transport, progress: Progress) -> int:
    """This command reads the frames, sends the pixels by `transport` and writes the outputs."""
    from models.base import BACKGROUND, IMAGE, TRIMAP
    from models.job_files import JobFiles

    files = JobFiles(matte_channel=args.matte_channel, colour_space=args.colour_space, **paths)
    progress.start(args.job_id or "local", last - first + 1)
    t0, done, failed, skipped, misaligned, noted = time.perf_counter(), 0, 0, 0, 0, False
    for frame in range(first, last + 1):
        t = time.perf_counter()
        outputs = files.outputs(frame) + [""]
        if args.skip_existing and files.complete(frame):
            done, skipped = done + 1, skipped + 1
            progress.frame(frame, outputs[0], 0.0, outputs[1], skipped=True)
            continue
        try:
            got = files.read(frame)
            if got.notes and not noted:
                noted = True
                progress.notice(f"frame {frame}: {'; '.join(got.notes)} (said once per job)")
            a = got.arrays
            res = c.matte_frame(transport, args.model, a[IMAGE], a.get(TRIMAP), a.get(BACKGROUND),
                                got.spaces[IMAGE], options, background_space=got.spaces.get(BACKGROUND, ""))
            files.write(frame, res.alpha, res.foreground, got.window)
        except grpc.RpcError as err:
            if err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.NOT_FOUND,
                              grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNAUTHENTICATED):
                raise  # the same for every frame: stop now
            failed += 1
            progress.error(frame, f"{err.code().name}: {err.details()}")
            continue
        except (OSError, ValueError) as err:
            failed += 1
            progress.error(frame, str(err))
            continue
        done += 1
        misaligned += res.alignment is not None and not res.alignment.ok
        progress.frame(frame, outputs[0], time.perf_counter() - t, outputs[1], alignment=res.alignment)
    progress.done(done, failed, False, time.perf_counter() - t0, skipped, misaligned)
    return 1 if failed else 0
