"""Steps and checks of the Nuke plugin's tests that run both in the tests' environment
(tests/test_nuke_matte.py, tests/test_nuke_panel.py) and under each Nuke release's own Python and Qt
(tests/nuke/session.py): standard library, Qt and the Nuke double only, Python 3.9 syntax.

Needs tests/nuke_double on sys.path (the double and its harness).
"""
import time

import harness


def press(node, button):
    """Press a node's button; returns the job it started (or None) after it ran to its end."""
    from plugin.nuke import job

    node[button].execute()
    task = job.find(node.fullName())
    if task is not None:
        harness.finish(task)
    else:
        harness.run_queued()
    return task


def wait(app, until, timeout=60.0):
    """Run Qt's and the Nuke double's main-thread work until until() is true."""
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, "timed out"
        app.processEvents()
        harness.run_queued()
        time.sleep(0.02)


def check_panel_lists_the_server(app, panel, address):
    """A Mattebox panel pointed at the test server at `address` (its settings file) shows it up, on the
    CPU, with its models and their inputs, and offers no Start/Stop for a server it did not start."""
    wait(app, lambda: "up" in panel.health.text() and panel.models.rowCount() > 0 and not panel._checking)
    text = panel.health.text()
    assert text.startswith("%s: up, " % address) and "device cpu" in text, text
    names = [panel.models.item(r, 0).text() for r in range(panel.models.rowCount())]
    assert {"difference", "closed_form", "knn", "null"} <= set(names), names
    row = names.index("knn")
    assert (panel.models.item(row, 1).text(), panel.models.item(row, 3).text()) == ("image, trimap", "yes")
    assert not panel.start_button.isEnabled() and not panel.stop_button.isEnabled()
    return names


def check_loss_curve(mpanel, QtGui):
    """The panel's LossCurve draws nothing for one point and, for three, a line from the highest loss top
    left to the lowest bottom right (6 px margins) through the middle point."""
    curve = mpanel.LossCurve()
    curve.resize(200, 100)

    def lit(img, x, y):
        """The curve's blue pen within 2 px of (x, y)."""
        near = [QtGui.QColor(img.pixel(int(x) + dx, int(y) + dy)) for dx in range(-2, 3) for dy in range(-2, 3)]
        return any(c.blue() > c.red() + 60 for c in near)

    try:
        curve.set_losses([(1, 0.5)])
        assert not lit(curve.grab().toImage(), 100, 50), "one point: no curve yet"
        curve.set_losses([(1, 0.9), (50, 0.5), (100, 0.1)])
        img = curve.grab().toImage()
        assert lit(img, 6, 6) and lit(img, 194, 94) and lit(img, 6 + 188 * 49 / 99, 50), "the curve is not drawn"
        assert not lit(img, 194, 8) and not lit(img, 8, 90), "the curve is drawn where it should not be"
    finally:
        curve.deleteLater()
