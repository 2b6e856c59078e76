"""Bad input through the operators: each gives a clear message (report + a failed job in the list and the
panel), no traceback, and the operator returns at once. No backend runs for these, except where noted."""

from __future__ import annotations

import time

import bpy
import pytest

from addon_helpers import add_object, clear_scene, configure_prefs, panel_texts, pump_until
from blender_addon import session
from blender_addon.panels import ATELIER_PT_jobs


@pytest.fixture
def scene(addon, backend_py, tmp_path):
    clear_scene()
    settings = bpy.context.scene.atelier
    settings.stylize_prompt, settings.stylize_quality, settings.stylize_steps = "a red box", "draft", 2
    yield settings
    session.get_runtime().stop()
    configure_prefs(backend_py, tmp_path)


def call(operator) -> tuple[set[str], str, float]:
    """Runs an operator as a script would: its ERROR report comes back as RuntimeError (in the UI it is
    a line in the status bar). Returns (outcome, report, seconds)."""
    started = time.monotonic()
    try:
        outcome, report = operator(), ""
    except RuntimeError as exc:
        outcome, report = {"CANCELLED"}, str(exc)
    return outcome, report, time.monotonic() - started


def run_stylize() -> tuple[set[str], str, float, object]:
    outcome, report, seconds = call(bpy.ops.atelier.stylize)
    return outcome, report, seconds, session.get_runtime().jobs.all()[0]


def assert_refused(outcome, report, seconds, record, code, words):
    assert outcome == {"CANCELLED"}
    assert seconds < 1.0, "the operator blocked"
    assert report.startswith("Error: ") and words in report and "Traceback" not in report
    assert record.state == "failed" and record.code == code, (record.code, record.message)
    assert words in record.message and record.hint
    jobs_panel = panel_texts(ATELIER_PT_jobs)
    assert words in jobs_panel.replace("\n", " ")
    assert session.get_runtime().state == "stopped", "bad input must not start the backend"


def test_no_object_selected(scene):
    add_object("cube").select_set(False)
    bpy.context.view_layer.objects.active = None
    assert_refused(*run_stylize(), "no_selection", "no object is selected")


def test_a_non_mesh_object(scene):
    add_object("camera", name="Cam")
    assert_refused(*run_stylize(), "not_a_mesh", "'Cam' is a camera object, not a mesh")


@pytest.mark.parametrize("kind", ["empty_mesh", "points"])
def test_an_empty_mesh(scene, kind):
    add_object(kind, name="Nothing")
    assert_refused(*run_stylize(), "empty_mesh", "'Nothing' has no faces")


def test_an_empty_prompt(scene):
    add_object("cube")
    scene.stylize_prompt = "   "
    assert_refused(*run_stylize(), "invalid_input", "the prompt is empty")


def test_a_render_of_nothing_selected(scene):
    outcome, report, seconds = call(bpy.ops.atelier.render_views)
    assert outcome == {"CANCELLED"} and seconds < 1.0 and "no object is selected" in report
    assert session.get_runtime().jobs.all()[0].code == "no_selection"


def test_a_backend_python_that_does_not_exist(scene, tmp_path):
    bpy.context.preferences.addons["blender_addon"].preferences.python = str(tmp_path / "missing" / "python")
    add_object("cube")
    outcome, report, seconds, record = run_stylize()
    assert outcome == {"CANCELLED"} and seconds < 1.0 and "does not exist" in report
    assert record.state == "failed" and "does not exist" in record.message and "Preferences" in record.hint
    assert "backend log" not in record.error_text(), "no backend ran, so there is no log to point at"
    assert "does not exist" in panel_texts(ATELIER_PT_jobs).replace("\n", " ")


def test_a_backend_address_that_does_not_answer(scene):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    prefs = bpy.context.preferences.addons["blender_addon"].preferences
    prefs.mode, prefs.remote_address, prefs.connect_timeout = "REMOTE", f"tcp://127.0.0.1:{port}", 0.5
    add_object("cube")
    outcome, report, seconds, record = run_stylize()
    assert outcome == {"FINISHED"} and seconds < 1.0, "the operator must queue the job and return"
    assert record.state == "waiting"
    pump_until(lambda: not record.active, 10, "the connection to time out")
    assert record.state == "failed" and f"no answer from tcp://127.0.0.1:{port}" in record.message
    from blender_addon.panels import ATELIER_PT_backend
    assert "no answer from" in panel_texts(ATELIER_PT_backend).replace("\n", " ")
    assert "no answer from" in panel_texts(ATELIER_PT_jobs).replace("\n", " ")
