"""Progress for people (text on stderr), for host plugins (`--progress json`: one JSON object per
line on stdout) or for render farms (`--progress openjd`: Open Job Description's stdout messages).

JSON events: {"event": "start", "job": ID, "frames": N}
             {"event": "frame", "frame": F, "output": PATH, "seconds": S, "percent": P}
             {"event": "error", "frame": F, "message": TEXT, "percent": P}   (frame is null for a job error)
             {"event": "done", "done": N, "failed": N, "cancelled": BOOL, "seconds": S}

Open Job Description: each event's text as "openjd_status: TEXT" ("openjd_fail: TEXT" for an error:
the task's failure message), then "openjd_progress: P" for an event with a percent.
"""
from __future__ import annotations

import json
import sys


class Progress:
    def __init__(self, mode: str = "text"):
        self.mode = mode
        self.total = 0
        self.count = 0

    def _emit(self, event: dict, text: str) -> None:
        if self.mode == "json":
            print(json.dumps(event), flush=True)
        elif self.mode == "openjd":
            kind = "fail" if event["event"] == "error" else "status"
            print(f"openjd_{kind}: {text}", flush=True)
            if "percent" in event:
                print(f"openjd_progress: {event['percent']}", flush=True)
        else:
            print(text, file=sys.stderr, flush=True)

    def _percent(self) -> float:
        return round(100.0 * self.count / self.total, 1) if self.total else 100.0

    def start(self, job: str, frames: int) -> None:
        self.total = frames
        self._emit({"event": "start", "job": job, "frames": frames}, f"job {job}: {frames} frame(s)")

    def frame(self, frame: int, output: str, seconds: float) -> None:
        self.count += 1
        p = self._percent()
        self._emit({"event": "frame", "frame": frame, "output": output, "seconds": round(seconds, 4), "percent": p},
                   f"[{p:5.1f}%] frame {frame} -> {output} ({seconds:.2f} s)")

    def error(self, frame: int | None, message: str) -> None:
        if frame is not None:
            self.count += 1
        p = self._percent()
        self._emit({"event": "error", "frame": frame, "message": message, "percent": p},
                   f"[{p:5.1f}%] ERROR{'' if frame is None else f' frame {frame}'}: {message}")

    def done(self, done: int, failed: int, cancelled: bool, seconds: float) -> None:
        self._emit({"event": "done", "done": done, "failed": failed, "cancelled": cancelled,
                    "seconds": round(seconds, 3)},
                   f"{done} frame(s) written, {failed} failed{', cancelled' if cancelled else ''} in {seconds:.1f} s")


def follow_job(events, progress: Progress):
    """Report a path-mode job's events (an iterator of pb.JobEvent) as they come; return its summary
    (pb.JobSummary), or None when the stream ended without one."""
    for ev in events:
        kind = ev.WhichOneof("event")
        if kind == "started":
            progress.start(ev.started.job_id, ev.started.frames)
        elif kind == "done":
            progress.frame(ev.done.frame, ev.done.output, ev.done.seconds)
        elif kind == "error":
            progress.error(ev.error.frame, ev.error.message)
        else:
            s = ev.summary
            progress.done(s.done, s.failed, s.cancelled, s.seconds)
            return s
    return None
