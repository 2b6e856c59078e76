"""The stylized GLB in Blender itself: the displacement arrives as a shape key, the colours as an attribute."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from stylize_helpers import tiny_config

from backend.geometry.mesh import gltf_to_blender
from backend.geometry.primitives import icosphere
from backend.stylize.output import SHAPE_KEY, export_stylized_glb
from backend.stylize.text2mesh import stylize

SCRIPT = Path(__file__).resolve().parents[1] / "blender_scripts" / "stylize_import.py"

pytestmark = pytest.mark.blender


def test_morph_target_imports_as_a_shape_key_with_colours(tiny_clip, bpy_python, tmp_path):
    mesh = icosphere(1)
    mesh = mesh.copy(vertices=(mesh.vertices * 2.0 + np.array([0.5, 1.0, 0.0], np.float32)).astype(np.float32))
    result = stylize(mesh, "a red ball", tiny_clip, tiny_config(steps=3, learning_rate=5e-3))
    assert np.abs(result.displacement).max() > 1e-4, "need a visible displacement to compare"
    export_stylized_glb(result, tmp_path / "stylized.glb", name="ball")
    proc = subprocess.run([str(bpy_python), str(SCRIPT), str(tmp_path / "stylized.glb"), str(tmp_path / "out.npz")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    data = np.load(tmp_path / "out.npz")
    assert list(data["key_names"]) == ["Basis", SHAPE_KEY]
    # Blender converts glTF's Y-up to its Z-up; vertex order is kept (merge_vertices is off by default).
    np.testing.assert_allclose(data["basis"], gltf_to_blender(result.mesh.vertices), atol=1e-6)
    np.testing.assert_allclose(data["key_1"] - data["basis"], gltf_to_blender(result.displacement), atol=1e-6)
    colours = [name for name in data.files if name.startswith("colour_") and name != "colour_info"]
    assert len(colours) == 1, list(data["colour_info"])
    np.testing.assert_allclose(data[colours[0]][:, :3], result.colors, atol=2e-3)
