"""Progress for people (text on stderr), for host plugins (`--progress json`: one JSON object per
line on stdout) or for render farms (`--progress openjd`: Open Job Description's stdout messages).

JSON events: {"event": "start", "job": ID, "frames": N}
             {"event": "frame", "frame": F, "output": PATH, "seconds": S, "percent": P}
                 optional keys: "foreground": PATH (the unmixed foreground written beside the alpha),
                 "skipped": true (--skip-existing: complete outputs were on disk, nothing was matted),
                 "alignment": {"ok": BOOL, "inliers": N, "shift_px": X, "message": TEXT} (--align-plate;
                 ok false: the frame was matted with the plate as given)
             {"event": "error", "frame": F, "message": TEXT, "percent": P}   (frame is null for a job error)
             {"event": "notice", "message": TEXT}   (something the user should know; the job goes on)
             {"event": "done", "done": N, "failed": N, "cancelled": BOOL, "seconds": S, "skipped": N,
              "misaligned": N}

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

    def frame(self, frame: int, output: str, seconds: float, foreground: str = "", skipped: bool = False,
              alignment=None) -> None:
        """alignment: a pb.Alignment (or anything with ok, inliers, shift_px, message), or None."""
        self.count += 1
        p = self._percent()
        event = {"event": "frame", "frame": frame, "output": output, "seconds": round(seconds, 4), "percent": p}
        text = f"[{p:5.1f}%] frame {frame} -> {output}" + (f" + {foreground}" if foreground else "")
        text += " (complete on disk, kept)" if skipped else f" ({seconds:.2f} s)"
        if foreground:
            event["foreground"] = foreground
        if skipped:
            event["skipped"] = True
        if alignment is not None:
            event["alignment"] = {"ok": alignment.ok, "inliers": alignment.inliers,
                                  "shift_px": round(alignment.shift_px, 2), "message": alignment.message}
            text += (f"; plate aligned ({alignment.shift_px:.1f} px)" if alignment.ok
                     else f"; WARNING plate alignment failed, matted with the plate as given: {alignment.message}")
        self._emit(event, text)

    def notice(self, message: str) -> None:
        self._emit({"event": "notice", "message": message}, f"NOTE: {message}")

    def error(self, frame: int | None, message: str) -> None:
        if frame is not None:
            self.count += 1
        p = self._percent()
        self._emit({"event": "error", "frame": frame, "message": message, "percent": p},
                   f"[{p:5.1f}%] ERROR{'' if frame is None else f' frame {frame}'}: {message}")

    def done(self, done: int, failed: int, cancelled: bool, seconds: float, skipped: int = 0,
             misaligned: int = 0) -> None:
        notes = (f" ({skipped} kept from disk)" if skipped else "") + (
            f", {misaligned} with a failed plate alignment" if misaligned else "")
        self._emit({"event": "done", "done": done, "failed": failed, "cancelled": cancelled,
                    "seconds": round(seconds, 3), "skipped": skipped, "misaligned": misaligned},
                   f"{done} frame(s) written{notes}, {failed} failed{', cancelled' if cancelled else ''} "
                   f"in {seconds:.1f} s")


def follow_job(events, progress: Progress):
    """Report a path-mode job's events (an iterator of pb.JobEvent) as they come; return its summary
    (pb.JobSummary), or None when the stream ended without one."""
    for ev in events:
        kind = ev.WhichOneof("event")
        if kind == "started":
            progress.start(ev.started.job_id, ev.started.frames)
        elif kind == "done":
            d = ev.done
            if d.notice:
                progress.notice(d.notice)
            progress.frame(d.frame, d.output, d.seconds, d.foreground, d.skipped,
                           d.alignment if d.HasField("alignment") else None)
        elif kind == "error":
            progress.error(ev.error.frame, ev.error.message)
        else:
            s = ev.summary
            progress.done(s.done, s.failed, s.cancelled, s.seconds, s.skipped, s.misaligned)
            return s
    return None
