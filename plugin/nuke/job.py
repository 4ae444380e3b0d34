"""Background jobs of Mattebox nodes: a thread per job drives the `mattebox` client command
(plugin.host.client.Job), shows a nuke.ProgressTask, honours its cancel (and the node's Cancel
button) by cancelling the job on the server, and posts node changes back to Nuke's main thread with
nuke.executeInMainThread. Nuke's UI never waits for the server.

running() lists the jobs in flight and finished() the last ones done; the panel shows both.
"""
import collections
import threading
import time

import nuke

from plugin.host import client
from plugin.host.config import ConfigError

_lock = threading.Lock()
_running = {}                                  # node name -> Task
_finished = collections.deque(maxlen=8)
POLL_S = 0.1


class Refused(Exception):
    """A job that cannot run as set up; the message says what to change."""


def running():
    with _lock:
        return list(_running.values())


def finished():
    with _lock:
        return list(_finished)


def find(node_name):
    with _lock:
        return _running.get(node_name)


class Task:
    """One node's job. Subclasses implement work() (on the thread; returns the status text) and may
    override done(node) (on the main thread, after the status is set)."""

    kind = "job"

    def __init__(self, node_name, cfg):
        self.node_name = node_name
        self.cfg = cfg
        self.percent = 0.0
        self.message = "starting"
        self.losses = []          # (step, loss) of a fine-tune
        self.notices = []         # the jobs' notices, each once
        self.misaligned = {}      # frame -> why its clean plate could not be aligned
        self.failed = False
        self.cancelled = False
        self.job = None
        self._progress = None
        self._thread = threading.Thread(target=self._main, name="mattebox-" + node_name, daemon=True)

    def start(self):
        with _lock:
            if self.node_name in _running:
                raise Refused("%s already has a job running: wait for it or press Cancel" % self.node_name)
            _running[self.node_name] = self
        self._thread.start()

    def cancel(self):
        """Stop: the job is cancelled on the server; the frames it finished are kept."""
        self.cancelled = True
        job = self.job
        if job is not None:
            job.cancel()

    def _main(self):
        self._progress = nuke.ProgressTask("Mattebox %s: %s" % (self.kind, self.node_name))
        try:
            text = self.work()
        except (client.HostError, ConfigError, Refused, OSError, ValueError) as err:
            text, self.failed = str(err), True
        finally:
            self._progress = None  # Nuke's progress bar goes when its task object does
            with _lock:
                _running.pop(self.node_name, None)
                _finished.append(self)
        self.message = text
        self.post(self._finish, text)

    def _finish(self, text):
        node = nuke.toNode(self.node_name)
        if node is None:
            return
        node["status"].setValue(text)
        self.done(node)
        if self.failed:
            nuke.message("Mattebox %s: %s" % (self.node_name, text))

    def work(self):
        raise NotImplementedError

    def done(self, node):
        """Main thread, after a job ended (successfully or not)."""

    def report(self, percent, message):
        """Progress for the panel, the ProgressTask and the node's status knob."""
        self.percent, self.message = percent, message
        if self._progress is not None:
            self._progress.setProgress(int(percent))
            self._progress.setMessage(message)
        self.post(self._status, message)

    def _status(self, text):
        node = nuke.toNode(self.node_name)
        if node is not None and find(self.node_name) is self:
            node["status"].setValue(text)

    def post(self, call, *args):
        """Run call(*args) on Nuke's main thread, later (never call from the main thread: Nuke hangs)."""
        nuke.executeInMainThread(call, args)

    def on_main(self, call, *args):
        """Run call(*args) on Nuke's main thread and wait for its result."""
        return nuke.executeInMainThreadWithResult(call, args)

    def note(self, ran):
        """Keep the notices and failed plate alignments of a finished client Job."""
        self.notices += [n for n in ran.notices if n not in self.notices]
        self.misaligned.update(ran.misaligned)

    def with_warnings(self, text):
        """The status text followed by the notices and failed alignments kept by note()."""
        lines = client.warning_lines(self.notices, self.misaligned)
        return text + "".join("\nnote: %s" % line for line in lines)

    def follow(self, args, on_event):
        """Run `mattebox ARGS` to its end, handing each JSON event to on_event; returns the Job."""
        self.job = job = client.Job(self.cfg, args)
        if self.cancelled:
            job.cancel()
        while True:
            alive = job.running
            for event in job.poll():
                on_event(event)
            if not alive:
                job.wait()
                return job
            if self._progress is not None and self._progress.isCancelled() and not self.cancelled:
                self.cancel()
            time.sleep(POLL_S)
