"""Supervision inside Blender: a local backend killed with SIGKILL is restarted by the add-on's timer alone
(no operator), the restart shows in the Backend panel, and the next job runs; a second death soon after is left
to the artist, shown as an error that names the log. (The restart budget's reset and a remote backend's death
are tested without Blender's UI in test_runtime.py.)"""

from __future__ import annotations

import os
import signal
import time

import bpy

from addon_helpers import add_object, clear_scene, finish, newest_job, panel_texts, pump_until, running_backend
from blender_addon.ui.panels import ATELIER_PT_backend


def _kill(runtime) -> int:
    pid = runtime.process.pid
    os.kill(pid, signal.SIGKILL)
    return pid


def test_a_killed_local_backend_is_restarted_by_the_timer_alone_once(addon):
    runtime = running_backend()
    restarts = runtime.restarts
    first = _kill(runtime)
    # Only the timer function runs from here on, as in Blender with nobody at the keyboard.
    pump_until(lambda: runtime.restart_pending, 10, "the exit to be noticed")
    assert runtime.state == "lost" and "exit code -9" in runtime.message
    assert "Restarting..." in panel_texts(ATELIER_PT_backend)
    pump_until(lambda: runtime.ready and runtime.process.pid != first, 90, "the automatic restart")
    assert runtime.restarts == restarts + 1 and runtime.message == ""
    shown = panel_texts(ATELIER_PT_backend).replace("\n", " ")
    assert "Ready" in shown and "exited (code -9) and was restarted at" in shown and runtime.log_path in shown

    clear_scene()
    add_object("cube", name="Box")
    bpy.context.scene.atelier.render_views, bpy.context.scene.atelier.render_size = 1, 32
    assert bpy.ops.atelier.render_views() == {"FINISHED"}
    finish(newest_job(), 90)

    # Dying again within the healthy period: no second restart, no loop; the error names the log.
    second = _kill(runtime)
    pump_until(lambda: runtime.state == "lost", 10, "the second exit to be noticed")
    deadline = time.monotonic() + 3 * runtime.settings.restart_delay + 1.0
    while time.monotonic() < deadline:
        pump_until(lambda: True, 1, "a drain")
        assert runtime.state == "lost" and not runtime.restart_pending and runtime.process is None
        time.sleep(0.05)
    assert runtime.restarts == restarts + 1 and second != first
    assert "not restarting it" in runtime.restart_note and runtime.log_path in runtime.restart_note
    shown = panel_texts(ATELIER_PT_backend).replace("\n", " ")
    assert "Stopped unexpectedly" in shown and "exited again (code -9)" in shown and runtime.log_path in shown
