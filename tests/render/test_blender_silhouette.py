"""Outside check: Blender (Cycles, one centre sample, no anti-aliasing) and Atelier agree on silhouettes."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from backend.render.camera import Cameras, perspective
from backend.render.renderer import MeshRenderer, RenderConfig

SIZE = 256
SCRIPT = Path(__file__).resolve().parents[1] / "blender_scripts" / "silhouette.py"


@pytest.fixture(scope="module")
def blender_renders(bpy_python, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("blender")
    proc = subprocess.run([str(bpy_python), str(SCRIPT), str(out), str(SIZE)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return out


@pytest.mark.parametrize("name", ["suzanne", "cube"])
def test_silhouette_iou_against_blender(blender_renders: Path, name: str):
    data = np.load(blender_renders / f"{name}.npz")
    blender_alpha = np.asarray(Image.open(blender_renders / f"{name}.png"))[..., 3] > 127
    # Blender's camera looks down its local -Z with +Y up, as OpenGL: the view matrix is its inverse.
    view = torch.tensor(np.linalg.inv(data["camera_world"]), dtype=torch.float32)[None]
    proj = perspective(float(data["fov"]), near=float(data["clip_start"]), far=float(data["clip_end"]))[None]
    cameras = Cameras(view=view, proj=proj, eye=torch.tensor(data["camera_world"][:3, 3], dtype=torch.float32)[None])
    renderer = MeshRenderer(RenderConfig(size=SIZE, antialias=False), "cpu")
    out = renderer.render(torch.tensor(data["vertices"]), torch.tensor(data["faces"]), cameras)
    atelier_alpha = out.alpha[0, ..., 0].numpy() > 0.5
    inter = np.logical_and(blender_alpha, atelier_alpha).sum()
    union = np.logical_or(blender_alpha, atelier_alpha).sum()
    iou = inter / union
    assert blender_alpha.sum() > 0.05 * SIZE * SIZE, "Blender's render is (nearly) empty"
    print(f"{name}: silhouette IoU vs Blender {iou:.4f}")
    assert iou >= 0.98, f"{name}: silhouette IoU {iou:.4f} < 0.98"
    # Blender's fov is horizontal for sensor_fit AUTO on a square image: the same as vertical here.
    assert math.isclose(float(data["fov"]), math.radians(40.0), rel_tol=1e-6)
