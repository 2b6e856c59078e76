"""Runs inside the bpy environment (no torch): imports a stylized GLB with Blender's own glTF importer.

Usage: python stylize_import.py IN.glb OUT.npz
Writes the imported object's basis positions, the positions of every shape key (names as an array), and
its colour attributes (name, domain, data type, values per point).
"""

import sys

import bpy
import numpy as np

glb_path, out_path = sys.argv[1], sys.argv[2]
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.import_scene.gltf(filepath=glb_path)
objects = [o for o in bpy.context.scene.objects if o.type == "MESH"]
assert len(objects) == 1, f"expected one mesh object, got {[o.name for o in objects]}"
mesh = objects[0].data
count = len(mesh.vertices)


def positions(data) -> np.ndarray:
    out = np.zeros(count * 3, dtype=np.float32)
    data.foreach_get("co", out)
    return out.reshape(count, 3)


basis = positions(mesh.vertices)
keys = mesh.shape_keys.key_blocks if mesh.shape_keys else []
arrays = {"basis": basis, "key_names": np.array([k.name for k in keys])}
for i, key in enumerate(keys):
    arrays[f"key_{i}"] = positions(key.data)
    arrays[f"key_{i}_value"] = np.float32(key.value)
colour_info = []
for attribute in mesh.color_attributes:
    values = np.zeros(len(attribute.data) * 4, dtype=np.float32)
    attribute.data.foreach_get("color", values)
    values = values.reshape(-1, 4)
    if attribute.domain == "CORNER":  # average the loops of each vertex (they agree for per-vertex colours)
        loops = np.zeros(len(mesh.loops), dtype=np.int64)
        mesh.loops.foreach_get("vertex_index", loops)
        summed = np.zeros((count, 4))
        np.add.at(summed, loops, values)
        values = (summed / np.maximum(np.bincount(loops, minlength=count), 1)[:, None]).astype(np.float32)
    arrays[f"colour_{attribute.name}"] = values
    colour_info.append(f"{attribute.name}:{attribute.domain}:{attribute.data_type}")
arrays["colour_info"] = np.array(colour_info)
np.savez(out_path, **arrays)
print("imported", count, "vertices, shape keys", list(arrays["key_names"]), "colours", colour_info)
