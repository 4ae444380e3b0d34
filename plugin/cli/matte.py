"""`mattebox matte`: matte one image or a sequence through a server.

Path mode (the server reads and writes the files) when the server is on this machine; otherwise the
frames are read here, streamed to the server in chunks and the alpha written here.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import uuid

import grpc

from models import images, sequence
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
    p.add_argument("--frames", default="", help="frame range A-B (default: the frames of --input on disk)")
    p.add_argument("--colour-space", default="", help="colour space of input and plate (default: EXR/float "
                                                        "scene_linear, integer files sRGB)")
    p.add_argument("--display-space", default="", help="space the model sees (default sRGB)")
    p.add_argument("--steps", type=int, default=0, help="recursive inference passes (models that have them)")
    p.add_argument("--transport", choices=TRANSPORTS, default="auto",
                   help="auto: path mode for a server on this machine, else stream")
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


def run(args: argparse.Namespace) -> int:
    progress = Progress(args.progress)
    try:
        first, last = frame_range(args)
        if last > first and not sequence.has_frame_token(args.output):
            raise ValueError(f"--output {args.output} needs a frame token (####, %04d or $F4) for frames {first}-{last}")
        with client(args) as c:
            transport = args.transport
            if transport == "auto":
                transport = "path" if not args.server or _local(args.server) else "stream"
            options = pb.MatteOptions(steps=args.steps, display_space=args.display_space)
            if transport == "path":
                return _path_mode(c, args, first, last, options, progress)
            return _frames_here(c, args, first, last, options, transport, progress)
    except grpc.RpcError as err:
        progress.error(None, explain(err, args.server))
    except (ValueError, OSError, RuntimeError) as err:
        progress.error(None, str(err))
    return 1


def _local(address: str) -> bool:
    host = address.rsplit(":", 1)[0].strip("[]")
    return "," not in address and is_loopback(host)


def _path_mode(c, args, first, last, options, progress: Progress) -> int:
    absolute = lambda p: os.path.abspath(p) if p else ""  # noqa: E731 - the server has its own cwd
    req = pb.JobRequest(job_id=args.job_id or uuid.uuid4().hex[:12], model=args.model, input=absolute(args.input),
                        background=absolute(args.background), trimap=absolute(args.trimap), first=first, last=last,
                        output=absolute(args.output), options=options, colour_space=args.colour_space)
    call = c.run_job(req)
    signal.signal(signal.SIGTERM, lambda *_: call.cancel())  # a host stops us: stop the server's work too
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
    if summary is None or summary.cancelled:
        return 130
    return 1 if summary.failed else 0


def _frames_here(c, args, first, last, options, transport, progress: Progress) -> int:
    send = {"stream": c.matte_stream, "unary": c.matte, "shm": c.matte_shared}[transport]
    progress.start(args.job_id or "local", last - first + 1)
    t0, done, failed = time.perf_counter(), 0, 0
    for frame in range(first, last + 1):
        t = time.perf_counter()
        try:
            src = images.read(sequence.frame_path(args.input, frame), 3)
            trimap = images.read(sequence.frame_path(args.trimap, frame), 1).pixels[..., 0] if args.trimap else None
            plate = images.read(sequence.frame_path(args.background, frame), 3).pixels if args.background else None
            alpha = send(args.model, src.pixels, trimap, plate, args.colour_space or src.colour_space, options)
            out = sequence.frame_path(args.output, frame)
            images.write_alpha(out, alpha, src.window)
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
        progress.frame(frame, out, time.perf_counter() - t)
    progress.done(done, failed, False, time.perf_counter() - t0)
    return 1 if failed else 0
