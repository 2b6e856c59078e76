"""The preferences' Install Backend and weights manager through the registered add-on: the operators return at
once, `setup_ui.tick()` (the timer, called here by hand) brings the outcome in, the preferences draw it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import bpy
import pytest

from addon_helpers import ROOT, configure_prefs, panel_texts, poll_until
from blender_addon.engine.installer import Step, make_plan, venv_python
from blender_addon.ui import setup_ui


@pytest.fixture
def prefs(addon, backend_py, tmp_path):
    prefs = bpy.context.preferences.addons["blender_addon"].preferences
    prefs.install_dir = str(tmp_path / "atelier-user")
    prefs.install_source = str(ROOT)
    prefs.install_base_python = ""
    prefs.install_torch = "AUTO"
    prefs.install_nvdiffrast = False
    yield prefs
    setup_ui.unregister()  # stops anything a failed test left running, clears the notices
    prefs.install_dir = prefs.install_source = ""
    configure_prefs(backend_py, tmp_path)


def call(operator, **kwargs) -> tuple[set[str], str, float]:
    """Runs an operator as a script would: an ERROR report comes back as RuntimeError."""
    started = time.monotonic()
    try:
        outcome, report = operator(**kwargs), ""
    except RuntimeError as exc:
        outcome, report = {"CANCELLED"}, str(exc)
    return outcome, report, time.monotonic() - started


def tick_until(predicate, timeout: float = 60.0, what: str = "the condition"):
    def situation() -> str:
        manager = setup_ui.weights_manager()
        return (f"; install {setup_ui.install_state()}; weights {manager.state()} {manager.message} "
                f"{manager.hint}")

    return poll_until(setup_ui.tick, predicate, timeout, what, situation)


def prefs_texts(prefs) -> str:
    return panel_texts(type(prefs), owner=prefs).replace("\n", " ")


def install_idle() -> bool:
    state = setup_ui.install_state()
    return state is not None and not state.busy


# -- Install Backend ------------------------------------------------------------------------------------

def test_install_runs_in_the_background_and_sets_backend_python(prefs, monkeypatch, tmp_path):
    def quick_plan(options):
        # The real plan's first steps (check the Python, create the venv), without pip so it takes a second.
        def plan():
            check, create = make_plan(options, setup_ui.detect_platform())[:2]
            return [check, Step(create.label, (*create.argv[:3], "--without-pip", *create.argv[3:]))]
        return plan

    monkeypatch.setattr(setup_ui, "build_plan", quick_plan)
    before = prefs.python
    assert "Install Backend" in prefs_texts(prefs) and "non-commercial" in prefs_texts(prefs)
    outcome, report, seconds = call(bpy.ops.atelier.backend_install)
    assert outcome == {"FINISHED"} and seconds < 1.0, (report, seconds)
    assert bpy.app.timers.is_registered(setup_ui.tick)
    shown = prefs_texts(prefs)
    assert "Cancel Install" in shown, shown
    tick_until(install_idle, 60, "the install")
    expected = venv_python(Path(prefs.install_dir) / "venv")
    state = setup_ui.install_state()
    assert state.status == "done", (state.message, state.hint)
    assert prefs.python == str(expected) and prefs.python != before and expected.is_file()
    log = Path(state.log_path)
    assert log.parent == Path(prefs.install_dir) / "logs" and "step 2 of 2: Create the environment" in log.read_text()
    shown = prefs_texts(prefs)
    assert f"Installed: Backend Python is now {expected}" in shown and f"Log: {log}" in shown
    assert setup_ui.tick() is None, "the timer must stop once nothing runs"


def test_install_refuses_bad_input_at_once(prefs, tmp_path):
    not_a_checkout = tmp_path / "downloads"
    not_a_checkout.mkdir()
    cases = [
        (dict(install_source=str(not_a_checkout)), "has no pyproject.toml"),
        (dict(install_base_python=str(tmp_path / "no" / "python3.11")), "does not exist"),
    ]
    for changes, words in cases:
        prefs.install_source, prefs.install_base_python = str(ROOT), ""
        for key, value in changes.items():
            setattr(prefs, key, value)
        outcome, report, seconds = call(bpy.ops.atelier.backend_install)
        assert outcome == {"CANCELLED"} and seconds < 1.0 and words in report and "Traceback" not in report
        assert setup_ui.install_state() is None, "nothing may run"
        assert words in prefs_texts(prefs)


def test_install_failure_and_cancel_show_in_the_preferences(prefs, monkeypatch):
    before = prefs.python
    fail = "import sys\nprint('ERROR: Could not find a version that satisfies the requirement torch')\n" \
           "print('ERROR: No matching distribution found for torch>=2.4')\nsys.exit(1)"
    monkeypatch.setattr(setup_ui, "build_plan", lambda options: [Step("Install PyTorch", (sys.executable, "-c", fail))])
    assert call(bpy.ops.atelier.backend_install)[0] == {"FINISHED"}
    tick_until(install_idle, 30, "the failing install")
    state = setup_ui.install_state()
    assert state.status == "failed" and prefs.python == before
    shown = prefs_texts(prefs)
    assert "pip found no torch>=2.4" in shown and state.log_path in shown and "Install Backend" in shown

    sleep = "import time\nprint('Downloading torch (800 MB)', flush=True)\ntime.sleep(60)"
    monkeypatch.setattr(setup_ui, "build_plan",
                        lambda options: [Step("Install PyTorch", (sys.executable, "-c", sleep))])
    assert call(bpy.ops.atelier.backend_install)[0] == {"FINISHED"}
    tick_until(lambda: "Downloading torch" in prefs_texts(prefs), 20, "the download line")
    assert "Step 1 of 1: Install PyTorch" in prefs_texts(prefs)
    assert "already running" in call(bpy.ops.atelier.backend_install)[1]
    assert bpy.ops.atelier.backend_install_cancel() == {"FINISHED"}
    tick_until(install_idle, 10, "the cancel")
    assert setup_ui.install_state().status == "cancelled" and prefs.python == before
    assert "The install was cancelled" in prefs_texts(prefs)


# -- the weights manager --------------------------------------------------------------------------------

def test_weights_manager_pulls_imports_and_lists_through_the_backend(prefs, backend_py, monkeypatch, tmp_path):
    home = tmp_path / "atelier-home"
    # The backend's stores, isolated from the user's caches; offline, so a pull fails at once without network.
    monkeypatch.setenv("ATELIER_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fake_sam = tmp_path / "my_sam.pth"
    # A tiny checkpoint with segment-anything's keys, what `models import sam_vit_b` checks (made meanwhile).
    maker = subprocess.Popen([str(backend_py), "-c", "import sys, torch; torch.save({'image_encoder.patch_embed.w': "
                              "torch.zeros(2)}, sys.argv[1])", str(fake_sam)])
    manager = setup_ui.weights_manager()
    assert "Refresh to list the models" in prefs_texts(prefs)

    # A download (offline here; this model lives only on the Hub, whose cache is isolated above): the backend's
    # one-line error with its fix and the log, no traceback.
    outcome, report, seconds = call(bpy.ops.atelier.weights_pull, name="ViT-B-32:laion2b_s34b_b79k")
    assert outcome == {"FINISHED"} and seconds < 1.0, report
    assert "Downloading ViT-B-32:laion2b_s34b_b79k" in prefs_texts(prefs) and "Cancel" in prefs_texts(prefs)
    assert "still running" in call(bpy.ops.atelier.weights_refresh)[1] and not manager.message
    tick_until(lambda: not manager.busy and manager.message, 90, "the pull to fail")
    assert manager.failed and "HF_HUB_OFFLINE is set" in manager.message and "Traceback" not in manager.message
    assert "atelier models import ViT-B-32:laion2b_s34b_b79k FILE" in manager.hint and "weights.log" in manager.hint
    assert "HF_HUB_OFFLINE is set" in prefs_texts(prefs)

    # A file that does not exist: refused before anything runs.
    outcome, report, seconds = call(bpy.ops.atelier.weights_import, name="sam_vit_b",
                                    filepath=str(tmp_path / "nope.pth"))
    assert outcome == {"CANCELLED"} and seconds < 1.0 and "is not a file" in report and not manager.busy
    assert "is not a file" in prefs_texts(prefs)

    # "Use Local File": checked and copied by the backend, then the list (sizes, licences, presence) comes in.
    assert maker.wait(60) == 0
    assert call(bpy.ops.atelier.weights_import, name="sam_vit_b", filepath=str(fake_sam))[0] == {"FINISHED"}
    assert "Importing sam_vit_b" in prefs_texts(prefs)
    tick_until(lambda: not manager.busy and manager.rows, 120, "the import and the model list")
    names = {row["name"]: row for row in manager.rows}
    assert {"ViT-B-32:openai", "RN50:openai", "sam_vit_b", "sam_vit_h"} <= set(names)
    stored = home / "weights" / "sam_vit_b_01ec64.pth"
    assert names["sam_vit_b"]["present"] is True and names["sam_vit_b"]["path"] == str(stored)
    assert stored.read_bytes() == fake_sam.read_bytes() and names["sam_vit_b"]["licence"] == "Apache-2.0"
    assert names["sam_vit_h"]["present"] is False and names["sam_vit_h"]["size_human"] == "2.56 GB"
    assert names["ViT-B-32:openai"]["size_human"] == "605 MB" and names["ViT-B-32:openai"]["licence"] == "MIT"
    assert manager.message.startswith("Imported sam_vit_b; ") and f"{len(names)} models, 1 present" in manager.message
    shown = prefs_texts(prefs)
    for words in ("sam_vit_b", str(stored), "sam_vit_h", "2.56 GB", "Licence: Apache-2.0", "ViT-L-14:openai",
                  "1.71 GB", "Licence: MIT", "Download", "Use Local File", "Refresh Model List"):
        assert words in shown, words


def test_weights_manager_needs_a_backend_python(prefs, tmp_path):
    prefs.python = str(tmp_path / "missing" / "python")
    outcome, report, seconds = call(bpy.ops.atelier.weights_refresh)
    assert outcome == {"CANCELLED"} and seconds < 1.0 and "does not exist" in report
    assert "does not exist" in prefs_texts(prefs) and not setup_ui.weights_manager().busy
