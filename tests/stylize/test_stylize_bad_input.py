"""Every input `stylize` refuses, with a message that says what is wrong and a hint that says the fix."""

from __future__ import annotations

import numpy as np
import pytest
from stylize_helpers import tiny_config

from backend.errors import InvalidInputError
from backend.geometry.mesh import Mesh
from backend.geometry.primitives import cube, icosphere
from backend.stylize.text2mesh import preset, stylize

CUBE = cube()


def nan_cube() -> Mesh:
    vertices = CUBE.vertices.copy()
    vertices[3, 1] = np.nan
    return CUBE.copy(vertices=vertices)


@pytest.mark.parametrize("mesh, prompt, config, words", [
    (Mesh(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int32)), "a box", tiny_config(), "the mesh is empty"),
    (nan_cube(), "a box", tiny_config(), "NaN"),
    (Mesh(CUBE.vertices, np.array([[0, 1, 2, 3]], np.int32)), "a box", tiny_config(), "faces must be triangles"),
    (CUBE, "", tiny_config(), "the prompt is empty"),
    (CUBE, "   \n ", tiny_config(), "the prompt is empty"),
    (CUBE, "brick " * 100, tiny_config(), "characters long, more than 500"),
    (CUBE, " ".join(["red"] * 80), tiny_config(), "tokens long; this CLIP reads at most 75"),
    (CUBE, "a box", tiny_config(steps=0), "steps must be an integer"),
    (CUBE, "a box", tiny_config(steps=-3), "steps must be an integer"),
    (icosphere(2), "a ball", tiny_config(max_faces=100), "the mesh has 320 faces; stylization handles at most 100"),
])
def test_refused_with_a_clear_error(tiny_clip, mesh, prompt, config, words):
    with pytest.raises(InvalidInputError) as err:
        stylize(mesh, prompt, tiny_clip, config)
    assert words in err.value.message and err.value.hint


def test_huge_mesh_hint_names_the_decimate_ratio(tiny_clip):
    with pytest.raises(InvalidInputError) as err:
        stylize(icosphere(2), "a ball", tiny_clip, tiny_config(max_faces=160))
    assert "Decimate modifier, ratio 0.50" in err.value.hint


def test_unknown_quality_is_refused():
    with pytest.raises(InvalidInputError) as err:
        preset("ultra")
    assert "unknown quality 'ultra'" in err.value.message and "draft" in err.value.hint
