"""Register, unregister and register again: classes, properties, the timer and the backend come and go cleanly."""

from __future__ import annotations

import sys
import time

import bpy
import addon_utils  # noqa: E402  (on sys.path once bpy is imported)

from addon_helpers import configure_prefs, pump_until


def registered_names(module) -> list[str]:
    return [cls.__name__ for cls in module.CLASSES if cls.is_registered]


def test_unregister_stops_everything_and_register_brings_it_back(addon, backend_py, tmp_path):
    session = sys.modules["blender_addon.engine.session"]
    module = sys.modules["blender_addon"]
    assert len(registered_names(module)) == len(module.CLASSES)
    assert bpy.app.timers.is_registered(session.drain) and hasattr(bpy.types.Scene, "atelier")

    # A running backend, which unregistering must stop.
    runtime = session.get_runtime()
    if not runtime.ready:
        bpy.ops.atelier.backend_start()
        pump_until(lambda: runtime.state not in ("starting", "connecting"), 90, "the backend to start")
    assert runtime.ready, runtime.message
    process = runtime.process.process

    addon_utils.disable("blender_addon", default_set=True, handle_error=None)
    assert registered_names(module) == []
    assert not hasattr(bpy.types.Scene, "atelier")
    assert not bpy.app.timers.is_registered(session.drain)
    assert session.get_runtime(optional=True) is None and session.drain() is None
    deadline = time.monotonic() + 10
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is not None, "unregister left the backend running"

    for _ in range(2):  # enable again, and once more straight through the module's own functions
        addon_utils.enable("blender_addon", default_set=True, handle_error=None)
        configure_prefs(backend_py, tmp_path)
        module = sys.modules["blender_addon"]
        session = sys.modules["blender_addon.engine.session"]
        assert len(registered_names(module)) == len(module.CLASSES)
        assert bpy.app.timers.is_registered(session.drain)
        assert session.get_runtime().state == "stopped"
        module.unregister()
        assert registered_names(module) == []
        module.register()
        assert len(registered_names(module)) == len(module.CLASSES)
        addon_utils.disable("blender_addon", default_set=True, handle_error=None)
    addon_utils.enable("blender_addon", default_set=True, handle_error=None)
    configure_prefs(backend_py, tmp_path)


def test_the_previews_collection_comes_and_goes_with_the_add_on(addon, backend_py, tmp_path):
    import bpy.utils.previews  # noqa: F401

    from addon_helpers import write_style_image
    from blender_addon.engine.jobs import JobRecord

    def load_one(session):
        record = session.get_runtime().jobs.add(JobRecord(id="search-1", kind="search", label="Search library"))
        thumb = write_style_image(tmp_path / "thumb.png", size=24).read_bytes()
        (preview,) = session.load_hit_thumbnails(record, [thumb])
        assert tuple(preview.image_size) == (24, 24) and session.hit_preview("search-1", 0) is preview
        return session._previews

    module = sys.modules["blender_addon"]
    session = sys.modules["blender_addon.engine.session"]
    first = load_one(session)
    for _ in range(2):
        module.unregister()
        assert session._previews is None and session.hit_preview("search-1", 0) is None
        assert session.hit_icon("search-1", 0) == 0
        module.register()
        configure_prefs(backend_py, tmp_path)
        assert session._previews is not None and session._previews is not first
        assert session.hit_preview("search-1", 0) is None and list(session._previews.keys()) == []
        first = load_one(session)
