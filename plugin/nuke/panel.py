"""The dockable Mattebox panel: server health and device, start/stop a local server, the server's
models, running jobs with progress bars and Cancel buttons, and the loss curve of fine-tuning runs.

Nuke makes it from menus.PANEL_WIDGET. A timer refreshes it; asking the server happens on a thread.
"""
import threading

from plugin.host import client, config
from plugin.host.config import ConfigError
from plugin.nuke import catalog, job, localserver
from plugin.nuke.qt import QtCore, QtGui, QtWidgets

TICK_MS = 500
HEALTH_EVERY = 6     # ticks between server checks
COLUMNS = ("model", "inputs", "parameters", "weights", "device")


class LossCurve(QtWidgets.QWidget):
    """A fine-tune's loss against its step, drawn with QPainter."""

    def __init__(self, parent=None):
        QtWidgets.QWidget.__init__(self, parent)
        self.losses = []
        self.setMinimumHeight(90)

    def set_losses(self, losses):
        if losses != self.losses:
            self.losses = list(losses)
            self.update()

    def paintEvent(self, event):
        p = QtGui.QPainter(self)
        p.fillRect(self.rect(), QtGui.QColor(30, 30, 30))
        if len(self.losses) >= 2:
            steps = [s for s, _ in self.losses]
            values = [v for _, v in self.losses]
            lo, hi = min(values), max(values)
            span_s, span_v = float(max(steps[-1] - steps[0], 1)), (hi - lo) or 1.0
            w, h, m = self.width(), self.height(), 6
            line = QtGui.QPolygonF([QtCore.QPointF(m + (w - 2 * m) * (s - steps[0]) / span_s,
                                                   m + (h - 2 * m) * (hi - v) / span_v) for s, v in self.losses])
            p.setPen(QtGui.QPen(QtGui.QColor(90, 180, 255), 2))
            p.drawPolyline(line)
            p.setPen(QtGui.QColor(200, 200, 200))
            p.drawText(m, h - m, "loss %.4g" % values[-1])
        p.end()


class JobRow(QtWidgets.QWidget):
    """One running job: what it does, a progress bar and Cancel."""

    def __init__(self, task, parent=None):
        QtWidgets.QWidget.__init__(self, parent)
        self.task = task
        layout = QtWidgets.QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.label = QtWidgets.QLabel("%s %s" % (task.node_name, task.kind))
        self.bar = QtWidgets.QProgressBar()
        self.cancel = QtWidgets.QPushButton("Cancel")
        self.cancel.clicked.connect(task.cancel)
        for w in (self.label, self.bar, self.cancel):
            layout.addWidget(w)

    def sync(self):
        self.bar.setValue(int(self.task.percent))
        self.bar.setFormat("%p%  " + self.task.message)


class Panel(QtWidgets.QWidget):
    def __init__(self, parent=None):
        QtWidgets.QWidget.__init__(self, parent)
        self.cfg = config.load()
        self.rows = {}
        self._fetched = None          # (reachable, models or None, error text) from the last check
        self._checking = False
        self._ticks = 0
        layout = QtWidgets.QVBoxLayout(self)

        self.health = QtWidgets.QLabel("checking %s" % self.cfg.address())
        self.start_button = QtWidgets.QPushButton("Start local server")
        self.stop_button = QtWidgets.QPushButton("Stop local server")
        self.refresh_button = QtWidgets.QPushButton("Refresh")
        self.start_button.clicked.connect(self.start_server)
        self.stop_button.clicked.connect(self.stop_server)
        self.refresh_button.clicked.connect(self.check)
        server = QtWidgets.QHBoxLayout()
        for w in (self.health, self.start_button, self.stop_button, self.refresh_button):
            server.addWidget(w)
        layout.addLayout(server)

        self.models = QtWidgets.QTableWidget(0, len(COLUMNS))
        self.models.setHorizontalHeaderLabels(list(COLUMNS))
        self.models.setEditTriggers(QtWidgets.QAbstractItemView.NoEditTriggers)
        layout.addWidget(self.models)

        layout.addWidget(QtWidgets.QLabel("Jobs"))
        self.jobs = QtWidgets.QVBoxLayout()
        self.idle = QtWidgets.QLabel("no job running")
        self.jobs.addWidget(self.idle)
        layout.addLayout(self.jobs)

        self.curve_label = QtWidgets.QLabel("Fine-tuning: none yet")
        self.curve = LossCurve()
        layout.addWidget(self.curve_label)
        layout.addWidget(self.curve)

        self.timer = QtCore.QTimer(self)
        self.timer.timeout.connect(self.tick)
        self.timer.start(TICK_MS)
        self.check()

    # -- server ---------------------------------------------------------------------------------------

    def check(self):
        """Ask the server for its health and models on a thread; tick() shows the answer."""
        if self._checking:
            return
        self._checking = True
        threading.Thread(target=self._check, args=(self.cfg,), daemon=True).start()

    def _check(self, cfg):
        up, models, error = client.reachable(cfg.address()), None, ""
        if up:
            try:
                models = catalog.fetch(cfg)
            except (client.HostError, ConfigError) as err:
                error = str(err)
        self._fetched = (up, models, error)
        self._checking = False

    def start_server(self):
        self.health.setText("starting a local server at %s" % self.cfg.address())
        threading.Thread(target=self._start, daemon=True).start()

    def _start(self):
        try:
            localserver.start(self.cfg)
        except (client.HostError, ConfigError) as err:
            self._fetched = (False, None, str(err))
            return
        self.check()

    def stop_server(self):
        localserver.stop()
        self.check()

    def show_server(self, up, models, error):
        if not up:
            text = error or ("no server answers at %s: press Start local server or run `mattebox serve`"
                             % self.cfg.address())
        elif error:
            text = error
        else:
            devices = sorted({m["device"] for m in models})
            text = "%s: up, %d models, device %s" % (self.cfg.address(), len(models), ", ".join(devices) or "?")
        self.health.setText(text)
        self.stop_button.setEnabled(localserver.running())
        self.start_button.setEnabled(not up)
        if models is not None:
            self.models.setRowCount(len(models))
            for r, m in enumerate(models):
                cells = (m["name"], ", ".join(m["inputs"]), "{:,}".format(m["params"]),
                         "yes" if m["weights"] else "NO (untrained)", m["device"])
                for c, text in enumerate(cells):
                    item = QtWidgets.QTableWidgetItem(text)
                    item.setToolTip(m["description"])
                    self.models.setItem(r, c, item)

    # -- jobs -----------------------------------------------------------------------------------------

    def tick(self):
        self._ticks += 1
        if self._fetched is not None:
            fetched, self._fetched = self._fetched, None
            self.show_server(*fetched)
        elif self._ticks % HEALTH_EVERY == 0:
            self.check()
        self.sync_jobs()

    def sync_jobs(self):
        tasks = job.running()
        for task in [t for t in self.rows if t not in tasks]:
            self.rows.pop(task).deleteLater()
        for task in tasks:
            if task not in self.rows:
                self.rows[task] = JobRow(task)
                self.jobs.addWidget(self.rows[task])
            self.rows[task].sync()
        self.idle.setVisible(not tasks)
        tunes = [t for t in job.finished() + tasks if t.kind == "fine-tune"]
        if tunes:
            t = tunes[-1]
            self.curve_label.setText("Fine-tuning %s: %s" % (t.node_name, t.message))
            self.curve.set_losses(t.losses)
