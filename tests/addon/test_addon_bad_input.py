"""Bad input through the operators: each gives a clear message (report + a failed job in the list and the
panel), no traceback, and the operator returns at once. No backend runs for these, except where noted."""

from __future__ import annotations

import time

import bpy
import pytest

from addon_helpers import add_object, clear_scene, configure_prefs, panel_texts, pump_until, write_style_image
from blender_addon.engine import session
from blender_addon.ui.panels import ATELIER_PT_jobs, ATELIER_PT_restyle


@pytest.fixture
def scene(addon, backend_py, tmp_path):
    session.get_runtime().stop()  # an earlier module may have left its backend running: none may start here
    clear_scene()
    settings = bpy.context.scene.atelier
    settings.stylize_prompt, settings.stylize_quality, settings.stylize_steps = "a red box", "draft", 2
    settings.restyle_styles.clear()
    settings.restyle_palette, settings.restyle_quality, settings.restyle_steps = "auto", "draft", 2
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


def run_restyle() -> tuple[set[str], str, float, object]:
    outcome, report, seconds = call(bpy.ops.atelier.restyle)
    return outcome, report, seconds, session.get_runtime().jobs.all()[0]


def test_a_restyle_without_style_images(scene):
    add_object("cube")
    assert "Add 1 to 16 images" in panel_texts(ATELIER_PT_restyle)
    assert_refused(*run_restyle(), "no_style_images", "no style images are listed")


def test_a_restyle_with_a_missing_style_file(scene, tmp_path):
    add_object("cube")
    scene.restyle_styles.add().filepath = str(write_style_image(tmp_path / "here.png"))
    scene.restyle_styles.add().filepath = str(tmp_path / "gone.png")  # moved away after it was listed
    assert_refused(*run_restyle(), "style_missing", "style image 2 of 2")
    assert "does not exist" in session.get_runtime().jobs.all()[0].message


def test_a_restyle_with_too_many_style_images(scene, tmp_path):
    add_object("cube")
    style = str(write_style_image(tmp_path / "style.png"))
    for _ in range(17):
        scene.restyle_styles.add().filepath = style
    assert_refused(*run_restyle(), "too_many_styles", "17 style images are listed, over the 16 limit")


def test_a_restyle_with_a_bad_palette(scene, tmp_path):
    add_object("cube")
    scene.restyle_styles.add().filepath = str(write_style_image(tmp_path / "style.png"))
    scene.restyle_palette = "#ff0000, crimson"
    assert_refused(*run_restyle(), "invalid_input", "palette colour 2 of 2 'crimson' is not a hex colour")


def test_the_style_list_refuses_missing_files_duplicates_and_a_seventeenth_image(scene, tmp_path):
    outcome, report, seconds = call(lambda: bpy.ops.atelier.restyle_style_add(filepath=str(tmp_path / "gone.png")))
    assert outcome == {"CANCELLED"} and "does not exist" in report and len(scene.restyle_styles) == 0
    outcome, report, _ = call(lambda: bpy.ops.atelier.restyle_style_add(filepath=""))
    assert outcome == {"CANCELLED"} and "no style image was chosen" in report
    styles = [write_style_image(tmp_path / f"s{i}.png", seed=i) for i in range(17)]
    for style in styles[:16]:
        assert bpy.ops.atelier.restyle_style_add(filepath=str(style)) == {"FINISHED"}
    assert bpy.ops.atelier.restyle_style_add(filepath=str(styles[0])) == {"FINISHED"}  # already listed: no-op
    assert len(scene.restyle_styles) == 16 and "16 of at most 16" in panel_texts(ATELIER_PT_restyle)
    outcome, report, _ = call(lambda: bpy.ops.atelier.restyle_style_add(filepath=str(styles[16])))
    assert outcome == {"CANCELLED"} and "holds 16 images" in report and len(scene.restyle_styles) == 16
    scene.restyle_style_index = 3
    assert bpy.ops.atelier.restyle_style_remove() == {"FINISHED"}
    assert len(scene.restyle_styles) == 15 and str(styles[3]) not in [i.filepath for i in scene.restyle_styles]
    assert bpy.ops.atelier.restyle_style_remove(index=0) == {"FINISHED"}
    assert scene.restyle_styles[0].filepath == str(styles[1])
    assert session.get_runtime().state == "stopped"


def test_the_file_browser_adds_several_images_and_the_list_flags_missing_ones(scene, tmp_path):
    from blender_addon.ui.panels import ATELIER_UL_style_images

    class Row:  # a UILayout row that keeps its labels
        def __init__(self):
            self.labels = []

        def label(self, text="", icon="NONE"):
            self.labels.append((text, icon))

    for i in range(2):
        write_style_image(tmp_path / f"pick{i}.png", seed=i)
    files = [{"name": "pick0.png"}, {"name": "pick1.png"}]
    assert bpy.ops.atelier.restyle_style_add(directory=str(tmp_path), files=files) == {"FINISHED"}
    assert [item.filepath for item in scene.restyle_styles] == [str(tmp_path / f"pick{i}.png") for i in range(2)]
    (tmp_path / "pick1.png").unlink()
    for item, expected in zip(scene.restyle_styles, [("pick0.png", "IMAGE_DATA"), ("pick1.png", "ERROR")]):
        row = Row()
        ATELIER_UL_style_images.draw_item(None, bpy.context, row, scene, item, 0, scene, "restyle_style_index")
        assert row.labels == [expected]
    assert bpy.ops.atelier.restyle_style_remove(index=1) == {"FINISHED"}
    assert_refused(*run_restyle(), "no_selection", "no object is selected")  # the mesh is checked too


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
    from blender_addon.ui.panels import ATELIER_PT_backend
    assert "no answer from" in panel_texts(ATELIER_PT_backend).replace("\n", " ")
    assert "no answer from" in panel_texts(ATELIER_PT_jobs).replace("\n", " ")


# -- Search Library panel: refused before anything is sent ------------------------------------------------

@pytest.fixture
def library(scene, tmp_path):
    s = bpy.context.scene.atelier
    s.library_folder, s.library_db, s.library_views = str(tmp_path / "lib"), str(tmp_path / "db"), 0
    s.search_text, s.search_mode, s.search_image, s.search_k, s.search_category = "a box", "TEXT", "", 4, ""
    yield s
    s.library_folder = s.library_db = s.search_text = s.search_image = ""
    s.search_mode = "TEXT"


def refused_in_the_library_panel(operator, code: str, words: str) -> None:
    from blender_addon.ui.panels import ATELIER_PT_library

    ids_before = {job.id for job in session.get_runtime().jobs.all()}
    outcome, report, seconds = call(operator)
    record = session.get_runtime().jobs.all()[0]
    # The failed entry only (counted by id: the history keeps at most 50 finished jobs, so its length may not grow).
    assert [job for job in session.get_runtime().jobs.all() if job.id not in ids_before] == [record]
    assert record.frames is None and record.result is None, "nothing may be queued"
    assert_refused(outcome, report, seconds, record, code, words)
    assert words in panel_texts(ATELIER_PT_library).replace("\n", " ")


def test_a_search_without_a_database_folder(library):
    library.library_db = "  "
    refused_in_the_library_panel(bpy.ops.atelier.search_library, "invalid_input", "the database folder is empty")


def test_an_index_without_a_library_or_database_folder(library):
    library.library_folder = ""
    refused_in_the_library_panel(bpy.ops.atelier.index_library, "invalid_input", "the library folder is empty")
    library.library_folder, library.library_db = "/somewhere", ""
    refused_in_the_library_panel(bpy.ops.atelier.index_library, "invalid_input", "the database folder is empty")


def test_an_empty_search_query(library):
    library.search_text = "   "
    refused_in_the_library_panel(bpy.ops.atelier.search_library, "empty_query", "the search query is empty")


def test_a_sketch_or_photo_search_without_a_usable_image(library, tmp_path):
    library.search_mode, library.search_text = "SKETCH", ""
    refused_in_the_library_panel(bpy.ops.atelier.search_library, "search_image_missing", "no sketch image is chosen")
    library.search_image = str(tmp_path / "gone.png")
    refused_in_the_library_panel(bpy.ops.atelier.search_library, "search_image_missing", "does not exist")
    library.search_mode, library.search_image = "PHOTO", str(write_style_image(tmp_path / "photo.png"))
    library.search_text = "a box"
    refused_in_the_library_panel(bpy.ops.atelier.search_library, "invalid_input", "a photo search takes no text")


def test_importing_a_hit_of_a_search_that_is_gone(library):
    outcome, report, seconds = call(lambda: bpy.ops.atelier.import_hit(job_id="no-such-job", index=0))
    record = session.get_runtime().jobs.all()[0]
    assert_refused(outcome, report, seconds, record, "no_search_hit", "that search result is no longer available")


# -- Generate panel: refused before anything is sent ------------------------------------------------------

@pytest.fixture
def generate(scene):
    s = bpy.context.scene.atelier
    prefs = bpy.context.preferences.addons["blender_addon"].preferences
    s.generate_prompt, s.generate_samples, s.generate_refine, s.generate_style = "a chair", 2, 0, False
    prefs.generator_checkpoint = "/srv/generator.pt"
    session.get_runtime().stop()  # whatever ran before: these must be refused without starting one
    s.generate_from, s.generate_picture_source, s.generate_picture, s.generate_image = "TEXT", "FILE", "", None
    yield s
    s.generate_prompt, prefs.generator_checkpoint, s.generate_from = "", "", "TEXT"


def refused_in_the_generate_panel(code: str, words: str) -> None:
    from blender_addon.ui.panels import ATELIER_PT_generate

    outcome, report, seconds = call(bpy.ops.atelier.generate)
    record = session.get_runtime().jobs.all()[0]
    assert record.frames is None and record.result is None, "nothing may be queued"
    assert_refused(outcome, report, seconds, record, code, words)
    assert words in panel_texts(ATELIER_PT_generate).replace("\n", " ")


def test_a_generate_with_an_empty_prompt(generate):
    generate.generate_prompt = "   "
    refused_in_the_generate_panel("empty_prompt", "the prompt is empty")


def test_a_generate_with_an_over_long_generator_checkpoint(generate):
    # An empty one is no longer refused (the backend's shipped generator: tests/addon/test_addon_generate.py).
    bpy.context.preferences.addons["blender_addon"].preferences.generator_checkpoint = "/" + "x" * 4096
    refused_in_the_generate_panel("invalid_input", "the generator checkpoint path is over")


def test_a_generate_with_out_of_range_numbers(generate):
    # The panel's fields clamp what a user types; a script (or a stored job) can still ask for too much.
    from blender_addon.core import kinds
    from blender_addon.core.errors import AddonError

    with pytest.raises(AddonError, match=r"samples must be in \[1, 16\]"):
        kinds.generate_params("a chair", "/g.pt", samples=17)
    with pytest.raises(AddonError, match=r"refine steps must be in \[0, 500\]"):
        kinds.generate_params("a chair", "/g.pt", refine=501)
    generate.generate_samples = 99  # clamped to 16 by the property
    assert generate.generate_samples == 16


def test_a_generate_from_a_picture_that_is_missing(generate, tmp_path):
    generate.generate_from, generate.generate_prompt = "PICTURE", ""  # the prompt is optional with a picture
    refused_in_the_generate_panel("no_picture", "no picture is chosen")
    generate.generate_picture = str(tmp_path / "no-such-chair.png")
    refused_in_the_generate_panel("no_picture", "does not exist")
    assert "no-such-chair" in session.get_runtime().jobs.all()[0].message
    generate.generate_picture = str(tmp_path)
    refused_in_the_generate_panel("no_picture", "is a folder")
    generate.generate_picture_source = "IMAGE"
    refused_in_the_generate_panel("no_picture", "no picture image is chosen")


def test_a_generate_from_a_picture_with_auto_style_and_no_prompt(generate, tmp_path):
    from blender_addon.ui.panels import ATELIER_PT_generate

    generate.generate_from, generate.generate_prompt = "PICTURE", " "
    generate.generate_picture = str(write_style_image(tmp_path / "chair.png"))
    generate.generate_style, generate.generate_style_text = True, ""  # "auto": splits a prompt there is not
    assert "Type a style text" in panel_texts(ATELIER_PT_generate)
    refused_in_the_generate_panel("empty_style", "splits the prompt, and there is none")
    generate.generate_from = "TEXT"  # in Text mode the empty prompt is what is wrong
    refused_in_the_generate_panel("empty_prompt", "the prompt is empty")
