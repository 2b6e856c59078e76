"""The Blender stage of the demo, its scene side: the error it stops on, messages, operators, object placement,
camera and light, Workbench and Cycles renders, and the procedural style image (`tools/blender_demo.py` drives it).

Run inside the bpy module; bpy and numpy are imported where used.
"""

from __future__ import annotations

from pathlib import Path

class DemoError(RuntimeError):
    """A step of the demo failed; main() prints it as one line and exits 1."""


def say(text: str) -> None:
    print(f"[blender-demo] {text}", flush=True)




def run_operator(op, what: str) -> None:
    outcome = op()
    if "FINISHED" not in outcome:
        raise DemoError(f"{what} returned {sorted(outcome)} (see the messages above)")


# -- scene helpers --------------------------------------------------------------------------------------

def make_active(obj) -> None:
    import bpy

    for other in bpy.context.selected_objects:
        other.select_set(False)
    obj.hide_set(False)
    obj.hide_render = False
    obj.select_set(True)
    bpy.context.view_layer.objects.active = obj


def stripes_png(path: Path, size: int = 256) -> Path:
    """A procedural style image: diagonal stripes in two colours with a thin dark line between them."""
    import numpy as np

    from blender_addon.core.meshpack import encode_png

    y, x = np.mgrid[0:size, 0:size]
    band = ((x + y) // 24) % 3
    colours = np.array([[230, 120, 30], [40, 90, 200], [25, 25, 30]], np.uint8)
    path.write_bytes(encode_png(colours[band]))
    return path


def object_size(obj) -> float:
    import mathutils

    corners = [obj.matrix_world @ mathutils.Vector(c) for c in obj.bound_box]
    return max(max(c[i] for c in corners) - min(c[i] for c in corners) for i in range(3))


def place(obj, x: float, target: float = 2.0) -> None:
    """Moves (and scales to about `target` units) an object to (x, 0, ~0) on the row."""
    import bpy

    size = object_size(obj)
    if size > 0:
        obj.scale = [s * target / size for s in obj.scale]
    bpy.context.view_layer.update()
    obj.location.x, obj.location.y = x, 0.0
    bpy.context.view_layer.update()


def add_camera_and_light(center_x: float, width: float):
    import math

    import bpy

    scene = bpy.context.scene
    camera = bpy.data.objects.new("Demo Camera", bpy.data.cameras.new("Demo Camera"))
    scene.collection.objects.link(camera)
    camera.data.lens = 50
    distance = max(6.0, width * 1.3)
    camera.location = (center_x, -distance, distance * 0.35)
    camera.rotation_euler = (math.radians(73), 0.0, 0.0)
    scene.camera = camera
    light = bpy.data.objects.new("Demo Sun", bpy.data.lights.new("Demo Sun", "SUN"))
    scene.collection.objects.link(light)
    light.rotation_euler = (math.radians(40), math.radians(15), math.radians(30))
    light.data.energy = 3.0
    return camera


def render_png(path: Path, colour: str, width: int, height: int) -> Path:
    """Workbench render of the scene's camera view to `path`. colour: Workbench colour type (VERTEX shows a
    colour attribute, TEXTURE an image texture, MATERIAL the material's base colour)."""
    import bpy

    scene = bpy.context.scene
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.display.shading.light = "STUDIO"
    scene.display.shading.color_type = colour
    return _render_still(scene, path, width, height)


def _render_still(scene, path: Path, width: int, height: int) -> Path:
    """Renders the scene's camera view with its engine as set, to a PNG at `path`; DemoError when none is written."""
    import bpy

    scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = width, height, 100
    scene.render.image_settings.file_format = "PNG"
    scene.render.filepath = str(path)
    run_operator(lambda: bpy.ops.render.render(write_still=True), f"rendering {path.name}")
    if not path.is_file():
        raise DemoError(f"the render {path} was not written")
    return path


def render_cycles(path: Path, width: int, height: int, samples: int) -> Path:
    """Cycles (CPU) render of the scene's camera view: materials as they are, vertex colours and textures
    included, under the sun and a grey sky."""
    import bpy

    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_denoising = False
    if scene.world is None:
        scene.world = bpy.data.worlds.new("Demo World")
    scene.world.color = (0.35, 0.35, 0.38)
    background = scene.world.node_tree and scene.world.node_tree.nodes.get("Background")
    if background is not None:  # a node world (Blender 5's default) takes its colour from the node
        background.inputs["Color"].default_value = (0.35, 0.35, 0.38, 1.0)
    return _render_still(scene, path, width, height)


def frame_one(camera, obj) -> None:
    """Points the camera at one object, filling the frame."""
    import math

    import mathutils

    size = object_size(obj)
    centre = sum((obj.matrix_world @ mathutils.Vector(c) for c in obj.bound_box), mathutils.Vector()) / 8
    distance = max(size, 0.5) * 2.6
    camera.location = centre + mathutils.Vector((0.0, -distance * math.cos(math.radians(17)),
                                                 distance * math.sin(math.radians(17))))
    camera.rotation_euler = (math.radians(73), 0.0, 0.0)


# -- the stages -----------------------------------------------------------------------------------------
