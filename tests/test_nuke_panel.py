"""The Mattebox panel offscreen with PySide6: server health and device, the server's models, a running
job with its progress bar and Cancel button, and a fine-tune's loss curve drawn with QPainter."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("PySide6")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

sys.path.insert(0, str(Path(__file__).parent / "nuke_double"))
import harness  # noqa: E402
import nuke  # noqa: E402
from shots import write_shot  # noqa: E402

from plugin.host import config  # noqa: E402
from plugin.nuke import job, panel as mpanel  # noqa: E402
from plugin.nuke import node as mnode  # noqa: E402
from plugin.nuke.qt import QtGui, QtWidgets  # noqa: E402

MATTEBOX = str(Path(sys.executable).with_name("mattebox"))


@pytest.fixture(scope="module")
def app():
    return QtWidgets.QApplication.instance() or QtWidgets.QApplication([])


def wait(app, until, timeout=60.0):
    """Run Qt's and the Nuke double's main-thread work until until() is true."""
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "timed out"
        app.processEvents()
        harness.run_queued()
        time.sleep(0.02)


def test_nuke_panel_shows_server_models_jobs_and_cancels(app, server, tmp_path, monkeypatch):
    monkeypatch.setenv("MATTEBOX_CONFIG", str(tmp_path / "client.json"))
    config.save(config.Config(client=MATTEBOX, server=server.address, start_server=False))
    harness.new_script(tmp_path / "comp.nk", 1, 12)
    p = mpanel.Panel()
    try:
        wait(app, lambda: "up" in p.health.text() and p.models.rowCount() > 0 and not p._checking)
        assert p.health.text().startswith(f"{server.address}: up, ") and "device cpu" in p.health.text()
        names = [p.models.item(r, 0).text() for r in range(p.models.rowCount())]
        assert {"difference", "closed_form", "knn", "null"} <= set(names)
        row = names.index("knn")
        assert p.models.item(row, 1).text() == "image, trimap" and p.models.item(row, 3).text() == "yes"
        assert not p.start_button.isEnabled() and not p.stop_button.isEnabled()  # a server we did not start

        shot = write_shot(tmp_path / "big", frames=12, width=320, height=240, seed=5)
        node = mnode.create()
        mnode.set_models(node, [{"name": "closed_form", "inputs": ["image", "trimap"], "description": ""}])
        node.setInput(0, nuke.nodes.Read(file=str(shot / "src.####.exr"), first=1, last=12))
        node.setInput(2, nuke.nodes.Read(file=str(shot / "tri.####.png"), first=1, last=12))
        node["matte"].execute()
        task = job.find(node.fullName())
        wait(app, lambda: task.percent > 0 or not task._thread.is_alive())
        p.tick()
        jobrow = p.rows[task]
        assert jobrow.bar.value() == int(task.percent) > 0 and p.idle.isHidden()
        jobrow.cancel.click()
        wait(app, lambda: not task._thread.is_alive())
        harness.run_queued()
        assert node["status"].value().startswith("cancelled: ")
        p.tick()
        assert task not in p.rows and not p.idle.isHidden()
    finally:
        p.timer.stop()
        p.deleteLater()


def test_nuke_panel_loss_curve_is_drawn(app):
    curve = mpanel.LossCurve()
    curve.resize(200, 100)

    def lit(img, x, y):
        """The curve's blue pen within 2 px of (x, y)."""
        near = [QtGui.QColor(img.pixel(int(x) + dx, int(y) + dy)) for dx in range(-2, 3) for dy in range(-2, 3)]
        return any(c.blue() > c.red() + 60 for c in near)

    curve.set_losses([(1, 0.5)])
    assert not lit(curve.grab().toImage(), 100, 50)  # one point: no curve yet
    curve.set_losses([(1, 0.9), (50, 0.5), (100, 0.1)])
    img = curve.grab().toImage()
    # highest loss top left, lowest bottom right (6 px margins), the middle point half-way
    assert lit(img, 6, 6) and lit(img, 194, 94) and lit(img, 6 + 188 * 49 / 99, 50)
    assert not lit(img, 194, 8) and not lit(img, 8, 90)
