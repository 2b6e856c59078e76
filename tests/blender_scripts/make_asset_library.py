"""Runs inside the bpy environment: builds a Blender asset library from a spec (tests/assets/asset_library.py).

Usage: python make_asset_library.py SPEC.json OUT_DIR
Spec (JSON; the pure-Python helper fills in catalog UUIDs and writes blender_assets.cats.txt itself):
  {"blends": [{"path": "rel/x.blend", "compress": false,
               "assets": [ASSET, ...],            # marked objects and collections
               "meshes": [MESH, ...]}],           # unmarked mesh objects (linked in the scene)
   "exports": [{"path": "rel/y.fbx", "format": "fbx"|"usd"|"abc", "meshes": [MESH, ...]}]}
  MESH  = {"name", "source": "primitive:cube|cylinder|uv_sphere|ico_sphere|cone|torus|monkey" | "glb:/abs/path",
           "material": name, "color": [r, g, b, a] linear, "texture": bool (a packed 8x8 checker on Base Color),
           "modifiers": ["BEVEL", "SUBSURF", ...], "location": [x, y, z], "hidden": bool (hide_viewport)}
  ASSET = MESH + {"kind": "object"|"collection", "catalog_id", "tags", "description", "author", "license",
                  "copyright", "preview": [r, g, b] (a 32x32 preview image of that colour), "in_scene": bool,
                  "members": [MESH, ...] (collection: its objects), "children": [[MESH, ...], ...]
                  (collection: nested child collections)}
After saving, every file is reopened and each asset's preview, tags and catalog are checked; exit 1 on a loss.
"""

import json
import sys
from pathlib import Path

import bpy

PRIMITIVES = {
    "cube": lambda: bpy.ops.mesh.primitive_cube_add(size=1.0),
    "cylinder": lambda: bpy.ops.mesh.primitive_cylinder_add(radius=0.4, depth=1.0, vertices=16),
    "uv_sphere": lambda: bpy.ops.mesh.primitive_uv_sphere_add(radius=0.5, segments=16, ring_count=8),
    "ico_sphere": lambda: bpy.ops.mesh.primitive_ico_sphere_add(radius=0.5, subdivisions=2),
    "cone": lambda: bpy.ops.mesh.primitive_cone_add(radius1=0.5, depth=1.0, vertices=16),
    "torus": lambda: bpy.ops.mesh.primitive_torus_add(major_radius=0.5, minor_radius=0.15, major_segments=16,
                                                       minor_segments=8),
    "monkey": lambda: bpy.ops.mesh.primitive_monkey_add(size=1.0),
}


def fresh_scene():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return bpy.context.scene


def make_object(spec: dict):
    """One mesh object from a primitive or a GLB (its parts joined), linked in the current scene."""
    kind, _, value = spec["source"].partition(":")
    before = set(bpy.data.objects)
    if kind == "primitive":
        PRIMITIVES[value]()
    elif kind == "glb":
        bpy.ops.import_scene.gltf(filepath=value)
    else:
        raise ValueError(f"unknown source {spec['source']!r}")
    made = [ob for ob in bpy.data.objects if ob not in before and ob.type == "MESH"]
    for extra in [ob for ob in bpy.data.objects if ob not in before and ob.type != "MESH"]:
        bpy.data.objects.remove(extra)
    if not made:
        raise RuntimeError(f"{spec['source']} made no mesh")
    if len(made) > 1:
        with bpy.context.temp_override(active_object=made[0], selected_editable_objects=made,
                                       selected_objects=made):
            bpy.ops.object.join()
    ob = made[0]
    ob.parent = None
    ob.name = spec["name"]
    ob.data.name = spec["name"] + "_mesh"
    ob.location = spec.get("location", (0.0, 0.0, 0.0))
    if spec.get("material"):
        assign_material(ob, spec)
    for mod in spec.get("modifiers", []):
        modifier = ob.modifiers.new(mod.title(), mod)
        if mod == "BEVEL":
            modifier.width = 0.03
            modifier.segments = 2
        elif mod == "SUBSURF":
            modifier.levels = 1
            modifier.render_levels = 1
    ob.hide_viewport = bool(spec.get("hidden", False))
    return ob


def assign_material(ob, spec: dict):
    material = bpy.data.materials.new(spec["material"])
    if hasattr(material, "use_nodes") and not material.use_nodes:
        material.use_nodes = True  # always on (and deprecated) from 5.0
    tree = material.node_tree
    bsdf = next(n for n in tree.nodes if n.type == "BSDF_PRINCIPLED")
    color = spec.get("color", (0.8, 0.8, 0.8, 1.0))
    bsdf.inputs["Base Color"].default_value = color
    material.diffuse_color = color
    if spec.get("texture"):
        image = bpy.data.images.new(spec["name"] + "_checker", 8, 8, alpha=True)
        pixels = []
        for y in range(8):
            for x in range(8):
                pixels += list(color) if (x + y) % 2 else [1.0, 1.0, 1.0, 1.0]
        image.pixels = pixels
        image.pack()
        node = tree.nodes.new("ShaderNodeTexImage")
        node.image = image
        tree.links.new(node.outputs["Color"], bsdf.inputs["Base Color"])
    elif ob.data.color_attributes:
        # Imported world shapes carry their colours per vertex: route them to the material, or the glTF exporter
        # drops them (it writes COLOR_0 only when a material uses it).
        node = tree.nodes.new("ShaderNodeVertexColor")
        node.layer_name = ob.data.color_attributes[0].name
        tree.links.new(node.outputs["Color"], bsdf.inputs["Base Color"])
    ob.data.materials.clear()
    ob.data.materials.append(material)


def set_preview(datablock, rgb):
    datablock.preview_ensure()
    preview = datablock.preview
    preview.image_size = (32, 32)
    pixels = []
    for y in range(32):
        shade = 0.5 + 0.5 * y / 31  # a vertical ramp: a test can tell the image was not flipped or replaced
        for _ in range(32):
            pixels += [rgb[0] * shade, rgb[1] * shade, rgb[2] * shade, 1.0]
    preview.image_pixels_float = pixels


def mark(datablock, spec: dict):
    datablock.asset_mark()
    data = datablock.asset_data
    if spec.get("catalog_id"):
        data.catalog_id = spec["catalog_id"]
    for tag in spec.get("tags", []):
        data.tags.new(tag)
    for field in ("description", "author", "license", "copyright"):
        if spec.get(field) and hasattr(data, field):
            setattr(data, field, spec[field])
    if spec.get("preview"):
        set_preview(datablock, spec["preview"])


def make_collection(spec: dict, scene):
    collection = bpy.data.collections.new(spec["name"])
    for member in spec.get("members", []):
        ob = make_object(member)
        relink(ob, collection, scene)
    for index, child_members in enumerate(spec.get("children", [])):
        child = bpy.data.collections.new(f"{spec['name']}_part{index}")
        collection.children.link(child)
        for member in child_members:
            relink(make_object(member), child, scene)
    if spec.get("in_scene", True):
        scene.collection.children.link(collection)
    return collection


def relink(ob, collection, scene):
    collection.objects.link(ob)
    for owner in list(ob.users_collection):
        if owner != collection:
            owner.objects.unlink(ob)


def build_blend(entry: dict, out_dir: Path):
    scene = fresh_scene()
    for spec in entry.get("assets", []):
        if spec.get("kind", "object") == "collection":
            datablock = make_collection(spec, scene)
        else:
            datablock = make_object(spec)
            if not spec.get("in_scene", True):
                scene.collection.objects.unlink(datablock)  # an asset in no scene: kept by its fake user
        mark(datablock, spec)
    for spec in entry.get("meshes", []):
        make_object(spec)
    path = out_dir / entry["path"]
    path.parent.mkdir(parents=True, exist_ok=True)
    bpy.ops.wm.save_as_mainfile(filepath=str(path), compress=bool(entry.get("compress", False)))
    check_blend(entry, path)


def check_blend(entry: dict, path: Path):
    """Reopen the saved file: previews, tags and catalogs must have survived the save."""
    bpy.ops.wm.open_mainfile(filepath=str(path), load_ui=False)
    for spec in entry.get("assets", []):
        pool = bpy.data.collections if spec.get("kind", "object") == "collection" else bpy.data.objects
        datablock = pool.get(spec["name"])
        problems = []
        if datablock is None or datablock.asset_data is None:
            problems.append("not marked after reload")
        else:
            if sorted(t.name for t in datablock.asset_data.tags) != sorted(spec.get("tags", [])):
                problems.append("tags lost")
            if spec.get("catalog_id") and datablock.asset_data.catalog_id != spec["catalog_id"]:
                problems.append("catalog lost")
            if spec.get("preview"):
                preview = datablock.preview
                if preview is None or tuple(preview.image_size) != (32, 32) or not any(preview.image_pixels[:]):
                    problems.append("preview lost")
        if problems:
            sys.exit(f"{path.name}: {spec['name']}: {', '.join(problems)}")


def build_export(entry: dict, out_dir: Path):
    fresh_scene()
    for spec in entry["meshes"]:
        make_object(spec)
    path = out_dir / entry["path"]
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = entry["format"]
    if fmt == "fbx":
        bpy.ops.export_scene.fbx(filepath=str(path), use_selection=False, use_mesh_modifiers=True)
    elif fmt == "usd":
        bpy.ops.wm.usd_export(filepath=str(path))
    elif fmt == "abc":
        bpy.ops.wm.alembic_export(filepath=str(path), as_background_job=False)
    else:
        raise ValueError(f"unknown export format {fmt!r}")
    if not path.is_file():
        sys.exit(f"Blender wrote no {path}")


def main():
    spec = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    out_dir = Path(sys.argv[2])
    for entry in spec.get("blends", []):
        build_blend(entry, out_dir)
    for entry in spec.get("exports", []):
        build_export(entry, out_dir)
    print("ASSET-LIBRARY-OK")


main()
