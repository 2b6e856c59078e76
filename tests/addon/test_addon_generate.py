"""The Generate panel against a real backend the add-on starts itself: a tiny generator (the `tiny` CLIP, a few
training steps: plumbing only) is trained once for the module through the backend's CLI, then the `atelier.generate`
operator's samples land side by side at the 3D cursor with the job stored on each; Run Again works from a generated
shape; a picture (a file or a Blender image) conditions the shapes without a prompt; a checkpoint that does not
exist comes back as the backend's error in the job list; an empty Generator preference sends no checkpoint and the
backend uses its default generator."""

from __future__ import annotations

import json
import struct
import subprocess
import time

import bpy
import numpy as np
import pytest

from addon_helpers import (ROOT, clear_scene, finish, newest_job, panel_texts, pump_until, running_backend,
                           write_style_image)
from blender_addon.engine import session
from blender_addon.operators.importers import COLLECTION, GENERATE_SPACING, IMPORTERS
from blender_addon.ui.panels import ATELIER_PT_generate, ATELIER_PT_jobs

SMALL = {"resolution": 32, "threshold": 0.3}
"""A coarse grid, and a threshold the barely trained generator's occupancy clears."""


def backend_cli(backend_py, *args: str) -> None:
    done = subprocess.run([str(backend_py), "-m", "backend.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, f"atelier {args[0]} failed: {done.stderr[-2000:]}"


@pytest.fixture(scope="module")
def generator(backend_py, tmp_path_factory, tiny_generator_flags) -> str:
    """A generator checkpoint trained on six procedural world shapes with the tiny CLIP (about half a minute)."""
    root = tmp_path_factory.mktemp("generator")
    backend_cli(backend_py, "world", str(root / "world"), "--shapes", "6", "--views", "0", "--size", "64",
                "--device", "cpu")
    checkpoint = root / "tiny_generator.pt"
    backend_cli(backend_py, "train-generator", "--library", str(root / "world" / "library"), "--out", str(checkpoint),
                *tiny_generator_flags)
    return str(checkpoint)


@pytest.fixture(scope="module")
def backend(addon):
    return running_backend()


@pytest.fixture
def scene(backend, generator):
    clear_scene()
    s = bpy.context.scene.atelier
    prefs = bpy.context.preferences.addons["blender_addon"].preferences
    prefs.generator_checkpoint = generator
    s.generate_prompt, s.generate_samples, s.generate_refine, s.generate_seed = "a chair", 2, 0, 3
    s.generate_from, s.generate_picture_source, s.generate_picture, s.generate_image = "TEXT", "FILE", "", None
    s.generate_style, s.generate_style_text, s.generate_style_quality, s.generate_style_steps = False, "", "draft", 0
    s.generate_resolution, s.generate_threshold, s.generate_temperature = SMALL["resolution"], SMALL["threshold"], 0.8
    bpy.context.scene.cursor.location = (0.0, 0.0, 0.0)
    yield s
    prefs.generator_checkpoint = ""


@pytest.fixture
def results(monkeypatch):
    """Every generate result the importer receives (the add-on drops it after import)."""
    seen: list = []
    importer = IMPORTERS["generate"]

    def keep(record, context):
        seen.append(record.result)
        return importer(record, context)

    monkeypatch.setitem(IMPORTERS, "generate", keep)
    return seen


def glb_positions(data: bytes) -> tuple[int, np.ndarray, np.ndarray]:
    """(vertex count, min, max) of a one-mesh GLB's POSITION accessor (glTF: Y up)."""
    assert data[:4] == b"glTF"
    length, kind = struct.unpack("<I4s", data[12:20])
    assert kind == b"JSON"
    document = json.loads(data[20:20 + length])
    accessor = document["accessors"][document["meshes"][0]["primitives"][0]["attributes"]["POSITION"]]
    return accessor["count"], np.array(accessor["min"]), np.array(accessor["max"])


def test_generate_places_each_sample_side_by_side_at_the_cursor(scene, results, generator):
    bpy.context.scene.cursor.location = (1.0, 2.0, 3.0)
    assert bpy.ops.atelier.generate() == {"FINISHED"}
    record = newest_job()
    assert record.label == "Generate 'a chair'" and record.meta["location"] == pytest.approx([1.0, 2.0, 3.0])
    bpy.context.scene.cursor.location = (9.0, 9.0, 9.0)  # moved while the job runs: the samples stay put
    finish(record, 120)
    result, fields = results[0], record.fields
    assert set(result.blobs) == {"mesh_0", "mesh_1"} and fields["samples"] == 2 and fields["clip"] == "tiny"
    assert record.params == {"prompt": "a chair", "checkpoint": generator,
                             "samples": 2, "refine": 0, "seed": 3, "temperature": 0.8, **SMALL}
    assert record.outputs == ["a chair 1", "a chair 2"]

    collection = bpy.data.collections[COLLECTION]
    for index, name in enumerate(record.outputs):
        obj = bpy.data.objects[name]
        assert obj.users_collection[0] == collection and obj.select_get()
        assert tuple(obj.location) == pytest.approx((1.0 + index * GENERATE_SPACING, 2.0, 3.0))
        assert tuple(obj.rotation_euler) == pytest.approx((0, 0, 0)) and tuple(obj.scale) == pytest.approx((1, 1, 1))
        count, low, high = glb_positions(result.blobs[f"mesh_{index}"])
        assert len(obj.data.vertices) == count == fields["vertices"][index]
        assert len(obj.data.polygons) == fields["faces"][index]
        # Y up in the GLB, Z up here: Blender (x, y, z) = glTF (x, -z, y); every shape lies in the decoding grid's
        # [-1, 1]^3 (a trained generator keeps to the unit sphere of its library; this one barely trained).
        corners = np.array([v.co for v in obj.data.vertices])
        np.testing.assert_allclose(corners.min(0), [low[0], -high[2], low[1]], atol=1e-5)
        np.testing.assert_allclose(corners.max(0), [high[0], -low[2], high[1]], atol=1e-5)
        assert np.abs(corners).max() <= 1.0 + 1e-4
        # The job travels with each sample: Run Again / Variation, and the figures to choose by.
        assert obj["atelier_kind"] == "generate" and obj["atelier_source"] == "" and obj["atelier_seed"] == 3
        assert json.loads(obj["atelier_params"]) == record.params and obj["atelier_sample"] == fields["sample"][index]
        assert obj["atelier_rank"] == index
        assert obj["atelier_clip_score"] == pytest.approx(fields["clip_score"][index])
        assert obj["atelier_clip_score_before"] == pytest.approx(fields["clip_score_before"][index])
        assert obj["atelier_clip_score_after"] == pytest.approx(fields["clip_score_after"][index])
    # Best first: the objects run from the highest CLIP score down, and each flow draw appears once.
    scores = [bpy.data.objects[name]["atelier_clip_score"] for name in record.outputs]
    assert scores == sorted(scores, reverse=True) and sorted(fields["sample"]) == [0, 1]
    assert bpy.context.view_layer.objects.active.name == "a chair 1"
    shown = panel_texts(ATELIER_PT_generate)
    assert "Run Again" in shown
    lines = [line for line in shown.splitlines() if ": CLIP score" in line]
    assert lines == [f"#1 a chair 1: CLIP score {fields['clip_score_before'][0]:.3f}",
                     f"#2 a chair 2: CLIP score {fields['clip_score_before'][1]:.3f}"]
    assert "Generate 'a chair' - done" in panel_texts(ATELIER_PT_jobs)


def test_a_styled_generate_colours_the_shape_through_a_color_attribute_node(scene, results):
    scene.generate_prompt, scene.generate_samples = "a chair made of oak", 1
    scene.generate_style, scene.generate_style_steps = True, 2  # no style text: the backend splits the prompt
    assert bpy.ops.atelier.generate() == {"FINISHED"}
    record = finish(newest_job(), 180)
    assert record.params["style"] == "auto" and record.params["style_steps"] == 2
    assert record.fields["shape_prompt"] == "a chair" and record.fields["style"] == "a chair made of oak"
    obj = bpy.data.objects[record.outputs[0]]
    assert obj.name == "a chair 1" and len(obj.data.vertices) == record.fields["vertices"][0]
    tree = obj.active_material.node_tree
    node = next(n for n in tree.nodes if n.type == "VERTEX_COLOR")
    bsdf = next(n for n in tree.nodes if n.type == "BSDF_PRINCIPLED")
    assert any(link.from_node == node and link.to_socket == bsdf.inputs["Base Color"] for link in tree.links)
    assert node.layer_name in obj.data.color_attributes
    keys = obj.data.shape_keys.key_blocks
    assert keys["Text2Mesh"].value == 1.0
    assert len(results[0].blobs) == 1


def test_run_again_and_variation_from_a_generated_shape(scene):
    scene.generate_samples = 1
    assert bpy.ops.atelier.generate() == {"FINISHED"}
    first = bpy.data.objects[finish(newest_job(), 120).outputs[0]]
    scene.generate_prompt = "a table"  # the panel changed since: Run Again uses what made the shape
    bpy.context.scene.cursor.location = (0.0, 5.0, 0.0)

    assert bpy.ops.atelier.run_again(variation=False) == {"FINISHED"}
    again = finish(newest_job(), 120)
    assert again.params == json.loads(first["atelier_params"]) and again.label == "Generate 'a chair'"
    assert tuple(bpy.data.objects[again.outputs[0]].location) == pytest.approx((0.0, 5.0, 0.0))

    bpy.context.view_layer.objects.active = first
    assert bpy.ops.atelier.run_again(variation=True) == {"FINISHED"}
    variation = finish(newest_job(), 120)
    assert variation.params["seed"] != first["atelier_seed"]
    assert variation.params == {**json.loads(first["atelier_params"]), "seed": variation.params["seed"]}
    assert bpy.data.objects[variation.outputs[0]]["atelier_seed"] == variation.params["seed"]
    assert len(bpy.data.collections[COLLECTION].objects) == 3


def test_generate_from_a_picture_without_a_prompt(scene, results, tmp_path):
    # The tiny generator does not care what the picture shows: any small PNG conditions it.
    picture = write_style_image(tmp_path / "my chair.png", size=32)
    scene.generate_from, scene.generate_picture, scene.generate_prompt, scene.generate_samples = \
        "PICTURE", str(picture), "", 1
    assert bpy.ops.atelier.generate() == {"FINISHED"}
    record = finish(newest_job(), 120)
    assert record.label == "Generate from my chair" and "prompt" not in record.params
    assert record.meta["picture"] == {"file": str(picture)} and record.fields["condition"] == "image"
    assert record.outputs == ["my chair 1"] and set(results[0].blobs) == {"mesh_0"}
    obj = bpy.data.objects["my chair 1"]
    assert len(obj.data.vertices) == record.fields["vertices"][0]
    assert json.loads(obj["atelier_fields"])["condition"] == "image"
    assert json.loads(obj["atelier_picture"]) == {"file": str(picture)}

    # Run Again sends the picture again (without it the backend would refuse a job with no prompt).
    scene.generate_from = "TEXT"
    assert bpy.ops.atelier.run_again(variation=False) == {"FINISHED"}
    again = finish(newest_job(), 120)
    assert again.params == record.params and again.fields["condition"] == "image"
    assert again.outputs[0].startswith("my chair 1") and again.label == "Generate from my chair"

    # Or an image open in Blender (its file's bytes), with a prompt too: the objects take the shape prompt's name.
    image = bpy.data.images.load(str(picture))
    scene.generate_from, scene.generate_picture_source, scene.generate_image = "PICTURE", "IMAGE", image
    scene.generate_prompt = "a chair"
    assert bpy.ops.atelier.generate() == {"FINISHED"}
    record = finish(newest_job(), 120)
    assert record.label == "Generate 'a chair' from my chair" and record.meta["picture"] == {"image": image.name}
    assert record.params["prompt"] == "a chair" and record.fields["condition"] == "image"
    assert record.outputs[0].startswith("a chair 1")


def test_a_checkpoint_that_does_not_exist_fails_with_the_backends_reason(scene, tmp_path):
    missing = tmp_path / "no-such-generator.pt"
    bpy.context.preferences.addons["blender_addon"].preferences.generator_checkpoint = str(missing)
    started = time.monotonic()
    outcome = bpy.ops.atelier.generate()
    seconds = time.monotonic() - started
    assert outcome == {"FINISHED"} and seconds < 1.0, "the operator must queue the job and return"
    record = newest_job()
    pump_until(lambda: not record.active, 60, "the job to fail")
    assert record.state == "failed" and record.code == "invalid_input", record.error_text()
    assert "no generator checkpoint at" in record.message and str(missing) in record.message and record.hint
    assert "Traceback" not in record.error_text() and record.outputs == []
    assert "no generator checkpoint at" in panel_texts(ATELIER_PT_generate).replace("\n", " ")
    assert "no generator checkpoint at" in panel_texts(ATELIER_PT_jobs).replace("\n", " ")
    assert COLLECTION not in bpy.data.collections or not bpy.data.collections[COLLECTION].objects
    assert session.get_runtime().ready


def test_an_empty_generator_preference_sends_no_checkpoint_and_the_backend_uses_its_default(scene, results,
                                                                                           generator, monkeypatch):
    # The backend reads its default generator ($ATELIER_GENERATOR, else the shipped file) from the environment it
    # starts in: restart it with the tiny generator as the default, as this checkout may not hold the shipped one.
    runtime = session.get_runtime()
    runtime.stop(wait=True)
    monkeypatch.setenv("ATELIER_GENERATOR", generator)
    try:
        running_backend()
        bpy.context.preferences.addons["blender_addon"].preferences.generator_checkpoint = "  "
        assert "Using the backend's shipped generator" in panel_texts(ATELIER_PT_generate).replace("\n", " ")
        assert bpy.ops.atelier.generate() == {"FINISHED"}
        record = finish(newest_job(), 120)
        assert "checkpoint" not in record.params and record.params["prompt"] == "a chair"
        assert record.fields["clip"] == "tiny" and set(results[0].blobs) == {"mesh_0", "mesh_1"}
        assert record.outputs == ["a chair 1", "a chair 2"]
    finally:
        monkeypatch.delenv("ATELIER_GENERATOR")
        session.get_runtime().stop(wait=True)
        running_backend()  # the rest of the session gets a backend without the override
