"""The Mattebox panel offscreen with PySide6: server health and device, the server's models, a running
job with its progress bar and Cancel button, and a fine-tune's loss curve drawn with QPainter."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

pytest.importorskip("PySide6")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

sys.path.insert(0, str(Path(__file__).parent / "nuke_double"))
import harness  # noqa: E402
import nuke  # noqa: E402
from shots import write_shot  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent / "nuke"))
from nuke_checks import check_loss_curve, check_panel_lists_the_server, wait  # noqa: E402  (also run per release)

from plugin.host import config  # noqa: E402
from plugin.nuke import job, panel as mpanel  # noqa: E402
from plugin.nuke import node as mnode  # noqa: E402
from plugin.nuke.qt import QtGui, QtWidgets  # noqa: E402

MATTEBOX = str(Path(sys.executable).with_name("mattebox"))


@pytest.fixture(scope="module")
def app():
    return QtWidgets.QApplication.instance() or QtWidgets.QApplication([])


def test_nuke_panel_shows_server_models_jobs_and_cancels(app, server, tmp_path, monkeypatch):
    monkeypatch.setenv("MATTEBOX_CONFIG", str(tmp_path / "client.json"))
    config.save(config.Config(client=MATTEBOX, server=server.address, start_server=False))
    harness.new_script(tmp_path / "comp.nk", 1, 12)
    p = mpanel.Panel()
    try:
        check_panel_lists_the_server(app, p, server.address)  # no Start/Stop: a server we did not start

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
    check_loss_curve(mpanel, QtGui)
