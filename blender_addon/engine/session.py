"""The add-on's one `Runtime`, and `drain()`: the `bpy.app.timers` callback that does all bpy work.

`drain()` is a plain function: Blender's timer calls it on the main thread; tests call it directly (the
`bpy` module has no event loop, so its timers never fire). It never raises: a failure is logged and
shown, and the timer keeps running.
"""

from __future__ import annotations

import atexit
import logging
import tempfile
import traceback
from pathlib import Path

import bpy
import bpy.utils.previews
from bpy.app.handlers import persistent

from ..core.errors import AddonError
from .runtime import Runtime
from .settings import current_settings, get_prefs

log = logging.getLogger(__name__)

BUSY_INTERVAL = 0.1
IDLE_INTERVAL = 0.5

_runtime: Runtime | None = None
_previews = None
_preview_dir: tempfile.TemporaryDirectory | None = None


def get_runtime(optional: bool = False) -> Runtime | None:
    """The add-on's runtime; AddonError (or None with `optional`) when the add-on is not registered."""
    if _runtime is None and not optional:
        raise AddonError("the Atelier add-on is not enabled", "enable it in Preferences > Add-ons")
    return _runtime


def refresh_settings(context=None) -> Runtime:
    """The runtime with the preferences' current settings (they apply at the next start)."""
    runtime = get_runtime()
    runtime.configure(current_settings(context))
    return runtime


# -- the timer ----------------------------------------------------------------------------------------

def drain() -> float | None:
    """Takes in the backend's messages, imports finished results, refreshes the panel. Returns the delay
    until the next call (what `bpy.app.timers` expects); None once the add-on is unregistered."""
    runtime = _runtime
    if runtime is None:
        return None
    changed = False
    try:
        before = (runtime.state, [(j.id, j.state, j.step, j.preview_serial) for j in runtime.jobs.all()])
        for record in runtime.poll():
            import_result(record)
        for level, text in runtime.take_notices():
            notify(text, level)
        changed = before != (runtime.state, [(j.id, j.state, j.step, j.preview_serial) for j in runtime.jobs.all()])
    except Exception:  # noqa: BLE001  a timer that raises is dropped by Blender: log, show, go on
        log.error("Atelier: the update timer failed:\n%s", traceback.format_exc())
    if changed:
        tag_redraw()
    return BUSY_INTERVAL if runtime.busy else IDLE_INTERVAL


def import_result(record) -> None:
    """Runs the job kind's importer inside `atelier.import_result` (one undo step); failures land in the job."""
    try:
        with _window_context():
            outcome = bpy.ops.atelier.import_result(job_id=record.id)
        if "FINISHED" not in outcome and record.state == "importing":
            record.fail("import_failed", "the result could not be imported", "see the console")
    except Exception as exc:  # noqa: BLE001  e.g. the operator's poll failed: keep the job list truthful
        log.error("Atelier: importing job %s failed:\n%s", record.id, traceback.format_exc())
        if record.state == "importing":
            record.fail("import_failed", f"the result could not be imported: {type(exc).__name__}: {exc}")
    if record.state == "failed":
        notify(f"{record.label} failed: {record.error_text()}", "ERROR")


class _window_context:
    """A window in the context when there is one: timers run without it, and some operators want it."""

    def __enter__(self):
        self._override = None
        wm = bpy.context.window_manager
        if bpy.context.window is None and wm is not None and wm.windows:
            self._override = bpy.context.temp_override(window=wm.windows[0])
            self._override.__enter__()

    def __exit__(self, *exc):
        if self._override is not None:
            self._override.__exit__(*exc)


def notify(text: str, level: str = "INFO") -> None:
    """A message in the status bar (and the console), from outside an operator."""
    try:
        bpy.ops.atelier.notify(level=level, message=text[:1000])
    except Exception:  # noqa: BLE001  no context for reports (e.g. while Blender quits): the console has it
        print(f"Atelier {level.lower()}: {text}")


def tag_redraw() -> None:
    wm = bpy.context.window_manager
    for window in (wm.windows if wm is not None else ()):
        for area in window.screen.areas:
            if area.type in ("VIEW_3D", "PREFERENCES"):
                area.tag_redraw()


# -- previews -----------------------------------------------------------------------------------------

def preview_icon(record) -> int:
    """An icon id showing the job's latest preview PNG (0 when there is none)."""
    if _previews is None or record.preview is None:
        return 0
    key = f"{record.id}:{record.preview_serial}"
    if key not in _previews:
        for old in [k for k in _previews.keys() if k.startswith(record.id + ":")]:
            del _previews[old]
        path = Path(_preview_dir.name) / f"{record.id}-{record.preview_serial}.png"
        path.write_bytes(record.preview)
        _previews.load(key, str(path), "IMAGE")
    return _previews[key].icon_id


HIT_PREFIX = "hit:"
"""Keys of the search hits' thumbnails in the previews collection: "hit:<job id>:<index>"."""


def hit_key(job_id: str, index: int) -> str:
    return f"{HIT_PREFIX}{job_id}:{index}"


def load_hit_thumbnails(record, thumbnails: list[bytes | None]) -> list:
    """Loads a search job's hit thumbnails (PNG bytes, in hit order; None: none) into the previews collection,
    keyed `hit_key(record.id, index)`, and drops the thumbnails of jobs no longer in the job list. Returns the
    previews (None where a hit has no thumbnail or the add-on is not registered)."""
    if _previews is None:
        return [None] * len(thumbnails)
    runtime = _runtime
    known = {job.id for job in runtime.jobs.all()} if runtime is not None else set()
    for key in [k for k in _previews.keys() if k.startswith(HIT_PREFIX)]:
        if key[len(HIT_PREFIX):].rsplit(":", 1)[0] not in known or key.startswith(hit_key(record.id, "")):
            del _previews[key]
    loaded = []
    for index, data in enumerate(thumbnails):
        if not data:
            loaded.append(None)
            continue
        key = hit_key(record.id, index)
        path = Path(_preview_dir.name) / f"{record.id}-hit-{index}.png"
        path.write_bytes(data)
        loaded.append(_previews.load(key, str(path), "IMAGE"))
    return loaded


def hit_preview(job_id: str, index: int):
    """The preview of a search hit's thumbnail (None when there is none)."""
    if _previews is None:
        return None
    return _previews.get(hit_key(job_id, index))


def hit_icon(job_id: str, index: int) -> int:
    """An icon id showing a search hit's thumbnail (0 when there is none)."""
    preview = hit_preview(job_id, index)
    return preview.icon_id if preview is not None else 0


# -- life cycle ---------------------------------------------------------------------------------------

@persistent
def _on_load_pre(*_args) -> None:
    # Results of jobs from the old file have nowhere to go: drop them, keep the backend running.
    if _runtime is not None:
        for job in _runtime.jobs.active():
            _runtime.cancel(job.id)
            job.fail("cancelled", "cancelled: another file was opened")


def _at_exit() -> None:
    if _runtime is not None:
        _runtime.shutdown(timeout=3.0)


def register() -> None:
    global _runtime, _previews, _preview_dir

    _runtime = Runtime(current_settings())
    _previews = bpy.utils.previews.new()
    _preview_dir = tempfile.TemporaryDirectory(prefix="atelier-previews-")
    if not bpy.app.timers.is_registered(drain):
        bpy.app.timers.register(drain, first_interval=IDLE_INTERVAL, persistent=True)
    bpy.app.handlers.load_pre.append(_on_load_pre)
    atexit.register(_at_exit)
    settings = _runtime.settings
    prefs = get_prefs()
    if prefs is not None and prefs.auto_start and settings.mode == "local" and not bpy.app.background:
        try:
            _runtime.start()
        except AddonError as exc:
            print(f"Atelier: the backend did not start: {exc}")


def unregister() -> None:
    global _runtime, _previews, _preview_dir
    if bpy.app.timers.is_registered(drain):
        bpy.app.timers.unregister(drain)
    if _on_load_pre in bpy.app.handlers.load_pre:
        bpy.app.handlers.load_pre.remove(_on_load_pre)
    atexit.unregister(_at_exit)
    runtime, _runtime = _runtime, None
    if runtime is not None:
        runtime.shutdown(timeout=3.0)
    if _previews is not None:
        bpy.utils.previews.remove(_previews)
        _previews = None
    if _preview_dir is not None:
        _preview_dir.cleanup()
        _preview_dir = None
