"""Test-side control of the Nuke double (tests/nuke_double/nuke.py): what Nuke's own event loop and
its user would do. Importing this module puts the double first on sys.path."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import nuke  # noqa: E402  (the double)


def new_script(path="", first=1, last=100):
    """A fresh script, saved as `path` ("" = untitled), with the project frame range."""
    nuke._reset()
    nuke.root()["name"].setValue(str(path))
    nuke.root()["first_frame"].setValue(first)
    nuke.root()["last_frame"].setValue(last)
    del nuke._state.messages[:], nuke._state.tasks[:], nuke._state.renders[:]


def pump(until, timeout=60.0):
    """Run the calls that threads queued for the main thread until until() is true; returns it."""
    deadline = time.monotonic() + timeout
    while True:
        run_queued()
        if until():
            run_queued()
            return True
        if time.monotonic() > deadline:
            raise TimeoutError("the main thread waited %.0f s" % timeout)
        time.sleep(0.02)


def run_queued():
    while not nuke._state.calls.empty():
        call, args, kwargs, done, box = nuke._state.calls.get()
        result = None
        try:
            result = call(*args, **kwargs)
        finally:
            if done is not None:
                box.append(result)
                done.set()


def finish(task, timeout=90.0):
    """Pump until a plugin job's thread ended and its last main-thread calls ran."""
    pump(lambda: not task._thread.is_alive(), timeout)


def cancel_progress():
    """The user presses cancel on every progress bar Nuke shows."""
    for t in nuke._state.tasks:
        t._cancelled = True


def pixels(node, frame):
    return nuke._pixels(node, frame)


def messages():
    return list(nuke._state.messages)


def renders():
    return list(nuke._state.renders)
