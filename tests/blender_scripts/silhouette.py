"""Runs inside the bpy environment (no torch): renders silhouettes with Blender itself.

Usage: python silhouette.py OUT_DIR SIZE
Writes, per object (suzanne, cube): NAME.png (RGBA render, film transparent, no anti-aliasing) and
NAME.npz (world-space vertices and triangles, Blender's camera world matrix and field of view).
"""

import math
import sys
from pathlib import Path

import bpy
import numpy as np

out_dir = Path(sys.argv[1])
size = int(sys.argv[2])
out_dir.mkdir(parents=True, exist_ok=True)


def reset_scene():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.resolution_x = size
    scene.render.resolution_y = size
    scene.render.resolution_percentage = 100
    scene.render.film_transparent = True
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGBA"
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 1
    scene.cycles.use_denoising = False
    # A 0.01-px box filter: one sample at the pixel centre, i.e. no anti-aliasing.
    scene.cycles.pixel_filter_type = "BOX"
    scene.cycles.filter_width = 0.01
    scene.cycles.use_adaptive_sampling = False
    return scene


def add_camera(scene, location, target):
    cam_data = bpy.data.cameras.new("cam")
    cam_data.angle = math.radians(40.0)
    cam_data.clip_start = 0.05
    cam_data.clip_end = 50.0
    cam = bpy.data.objects.new("cam", cam_data)
    scene.collection.objects.link(cam)
    cam.location = location
    direction = np.array(target, dtype=float) - np.array(location, dtype=float)
    from mathutils import Vector

    cam.rotation_euler = Vector(direction).to_track_quat("-Z", "Y").to_euler()
    scene.camera = cam
    return cam


for name in ("suzanne", "cube"):
    scene = reset_scene()
    if name == "suzanne":
        bpy.ops.mesh.primitive_monkey_add(size=1.6)
        obj = bpy.context.active_object
        obj.rotation_euler = (0.0, 0.0, math.radians(25.0))
    else:
        bpy.ops.mesh.primitive_cube_add(size=1.2)
        obj = bpy.context.active_object
        obj.rotation_euler = (math.radians(15.0), math.radians(10.0), math.radians(30.0))
    cam = add_camera(scene, (1.2, -3.6, 1.4), (0.0, 0.0, 0.0))
    bpy.context.view_layer.update()
    mesh = obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).to_mesh()
    mesh.calc_loop_triangles()
    verts = np.array([obj.matrix_world @ v.co for v in mesh.vertices], dtype=np.float32)
    tris = np.array([list(t.vertices) for t in mesh.loop_triangles], dtype=np.int32)
    scene.render.filepath = str(out_dir / f"{name}.png")
    bpy.ops.render.render(write_still=True)
    np.savez(out_dir / f"{name}.npz", vertices=verts, faces=tris,
             camera_world=np.array(cam.matrix_world, dtype=np.float64), fov=cam.data.angle,
             clip_start=cam.data.clip_start, clip_end=cam.data.clip_end)
    print(name, verts.shape, tris.shape)
