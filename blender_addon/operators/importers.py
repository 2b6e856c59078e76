"""Results in: one importer per wired job kind, `IMPORTERS[kind](record, context) -> names created`.

Meshes come back as GLB in the source object's local space and go through Blender's own glTF importer
(so vertex colours, UVs, images and morph targets land as Blender makes them: colour attribute, UV map,
packed images, shape keys); the add-on then places the object at the source's transform in the "Atelier"
collection, wires the colours through a Color Attribute node, stores the job on the object, and hides the
source. The import runs inside the `atelier.import_result` operator: one undo step per result.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Callable

import bpy
import mathutils

from ..core.errors import AddonError
from ..core.kinds import picture_name
from ..engine.jobs import JobRecord

COLLECTION = "Atelier"
"""The collection every imported result goes into."""
PROP_PREFIX = "atelier_"
"""Custom properties on created objects: atelier_kind, atelier_params (JSON), atelier_seed, atelier_source,
atelier_job, atelier_fields (JSON), for restyle atelier_styles (JSON list of the style image paths), for generate
atelier_sample (the flow draw it came from), atelier_rank (0 = best), atelier_clip_score (the score the samples are
ranked by), atelier_clip_score_before / atelier_clip_score_after and, from a picture,
atelier_picture (JSON: {"file": path} or {"image": Blender image name})."""
STYLE_NODE = "Atelier style texture"
"""Name of the unconnected Image Texture node a restyle result's material gets (the style texture alone)."""


# -- shared helpers -----------------------------------------------------------------------------------

def atelier_collection(scene: bpy.types.Scene) -> bpy.types.Collection:
    """The scene's "Atelier" collection, made and linked on first use."""
    collection = bpy.data.collections.get(COLLECTION)
    if collection is None:
        collection = bpy.data.collections.new(COLLECTION)
    if scene.collection.children.get(collection.name) is None and collection not in scene.collection.children_recursive:
        scene.collection.children.link(collection)
    return collection


def move_to_collection(obj: bpy.types.Object, collection: bpy.types.Collection) -> None:
    for other in list(obj.users_collection):
        if other != collection:
            other.objects.unlink(obj)
    if obj.name not in collection.objects:
        collection.objects.link(obj)


def import_glb(data: bytes, context) -> list[bpy.types.Object]:
    """Imports GLB bytes with Blender's glTF importer; returns the objects it created."""
    if not data.startswith(b"glTF"):
        raise AddonError("the backend's mesh is not a GLB file", "this is a backend bug: see its log")
    before = set(bpy.data.objects)
    options = {"import_pack_images": True, "merge_vertices": False, "import_shading": "NORMALS",
               "import_select_created_objects": True, "import_scene_as_collection": False}
    known = {p.identifier for p in bpy.ops.import_scene.gltf.get_rna_type().properties}
    with tempfile.TemporaryDirectory(prefix="atelier-") as folder:
        path = Path(folder) / "result.glb"
        path.write_bytes(data)
        result = bpy.ops.import_scene.gltf(filepath=str(path), **{k: v for k, v in options.items() if k in known})
        if "FINISHED" not in result:
            raise AddonError("Blender's glTF importer refused the result", "see the console for its message")
        # Images must live in the .blend before the temporary file goes.
        for image in bpy.data.images:
            if image.filepath and Path(bpy.path.abspath(image.filepath)).parent == Path(folder) and not image.packed_file:
                image.pack()
    return [obj for obj in bpy.data.objects if obj not in before]


def load_png_image(name: str, data: bytes) -> bpy.types.Image:
    """A packed Blender image from PNG bytes (saved under //atelier/NAME.png if the user unpacks it)."""
    with tempfile.TemporaryDirectory(prefix="atelier-") as folder:
        path = Path(folder) / "image.png"
        path.write_bytes(data)
        image = bpy.data.images.load(str(path), check_existing=False)
        image.pack()
    image.name = name
    image.filepath_raw = f"//atelier/{bpy.path.clean_name(name)}.png"
    return image


def store_job(obj: bpy.types.ID, record: JobRecord) -> None:
    """The job's parameters and seed on the created object, for "Run again" and "Variations"."""
    obj[PROP_PREFIX + "kind"] = record.kind
    obj[PROP_PREFIX + "params"] = json.dumps(record.params, sort_keys=True)
    obj[PROP_PREFIX + "seed"] = int(record.params.get("seed", 0))
    obj[PROP_PREFIX + "source"] = record.source
    obj[PROP_PREFIX + "job"] = record.id
    obj[PROP_PREFIX + "fields"] = json.dumps(record.fields, sort_keys=True, default=str)
    if "styles" in record.meta:
        obj[PROP_PREFIX + "styles"] = json.dumps(list(record.meta["styles"]))
    if "picture" in record.meta:
        obj[PROP_PREFIX + "picture"] = json.dumps(dict(record.meta["picture"]), sort_keys=True)


def job_of(obj: bpy.types.ID | None) -> tuple[str, dict, str] | None:
    """(kind, params, source name) stored on an object made by a job, or None."""
    if obj is None or PROP_PREFIX + "kind" not in obj:
        return None
    try:
        params = json.loads(obj[PROP_PREFIX + "params"])
    except (KeyError, TypeError, ValueError):
        return None
    return str(obj[PROP_PREFIX + "kind"]), params, str(obj.get(PROP_PREFIX + "source", ""))


def stored_styles(obj: bpy.types.ID | None) -> list[str]:
    """The style image paths a restyle result was made from ([] when none are stored)."""
    try:
        styles = json.loads(obj[PROP_PREFIX + "styles"]) if obj is not None else []
    except (KeyError, TypeError, ValueError):
        return []
    return [str(path) for path in styles] if isinstance(styles, list) else []


def stored_picture(obj: bpy.types.ID | None) -> dict | None:
    """The picture a generate result was made from ({"file": path} or {"image": name}), or None."""
    try:
        picture = json.loads(obj[PROP_PREFIX + "picture"]) if obj is not None else None
    except (KeyError, TypeError, ValueError):
        return None
    return picture if isinstance(picture, dict) and picture else None


def source_matrix(record: JobRecord) -> mathutils.Matrix:
    """Where the result goes: the source object's transform now, or the one sent with the job."""
    source = bpy.data.objects.get(record.source) if record.source else None
    if source is not None:
        return source.matrix_world.copy()
    flat = record.meta.get("transform")
    if flat and len(flat) == 16:
        return mathutils.Matrix([flat[0:4], flat[4:8], flat[8:12], flat[12:16]])
    return mathutils.Matrix.Identity(4)


def hide_source(record: JobRecord, context) -> None:
    """Hides (never deletes) the object the job started from."""
    source = bpy.data.objects.get(record.source) if record.source else None
    if source is None:
        return
    try:
        source.hide_set(True, view_layer=context.view_layer)
    except RuntimeError:  # not in this view layer
        source.hide_viewport = True
    source.hide_render = True


def make_active(obj: bpy.types.Object, context) -> None:
    for other in context.selected_objects:
        other.select_set(False)
    if obj.name in context.view_layer.objects:
        obj.select_set(True)
        context.view_layer.objects.active = obj


def wire_color_attribute(obj: bpy.types.Object) -> bpy.types.ShaderNode | None:
    """Makes the object's material show its colour attribute in Material Preview: a Color Attribute node
    naming the attribute, feeding the Principled BSDF's Base Color (multiplied with a texture if there is one).
    Returns the node (None when the mesh has no colour attribute)."""
    mesh = obj.data
    attribute = mesh.color_attributes.active_color or (mesh.color_attributes[0] if len(mesh.color_attributes) else None)
    if attribute is None:
        return None
    mesh.color_attributes.active_color = attribute
    mesh.color_attributes.render_color_index = mesh.color_attributes.active_color_index
    if not mesh.materials:
        mesh.materials.append(bpy.data.materials.new(f"{obj.name} colours"))
    found = None
    for material in mesh.materials:
        if material is None:
            continue
        if material.node_tree is None:  # Blender < 5 makes node trees on request only
            material.use_nodes = True
        tree = material.node_tree
        nodes = [n for n in tree.nodes if n.type == "VERTEX_COLOR"]
        for node in nodes:
            node.layer_name = attribute.name
        bsdf = next((n for n in tree.nodes if n.type == "BSDF_PRINCIPLED"), None)
        if bsdf is None:
            continue
        if not nodes:
            node = tree.nodes.new("ShaderNodeVertexColor")
            node.layer_name = attribute.name
            node.location = bsdf.location + mathutils.Vector((-500, 0))
            base = bsdf.inputs["Base Color"]
            if base.is_linked:  # a texture: multiply, as glTF does
                mix = tree.nodes.new("ShaderNodeMix")
                mix.data_type, mix.blend_type = "RGBA", "MULTIPLY"
                mix.inputs["Factor"].default_value = 1.0
                tree.links.new(base.links[0].from_socket, mix.inputs["A"])
                tree.links.new(node.outputs["Color"], mix.inputs["B"])
                tree.links.new(mix.outputs["Result"], base)
            else:
                tree.links.new(node.outputs["Color"], base)
            nodes = [node]
        found = found or nodes[0]
    return found


def pack_images_of(obj: bpy.types.Object) -> None:
    for slot in obj.material_slots:
        if slot.material is None or slot.material.node_tree is None:
            continue
        for node in slot.material.node_tree.nodes:
            if node.type == "TEX_IMAGE" and node.image is not None and node.image.packed_file is None:
                node.image.pack()


# -- per kind -----------------------------------------------------------------------------------------

def import_render(record: JobRecord, context) -> list[str]:
    """`render`: each view a packed image "Atelier <source> view_000"."""
    result = record.result
    names = result.fields.get("names") or sorted(result.blobs)
    created = []
    for view in names:
        data = result.blobs.get(view)
        if data is None:
            raise AddonError(f"the render result lacks the image {view!r}", "this is a backend bug: see its log")
        image = load_png_image(f"Atelier {record.source or 'render'} {view}", data)
        image["atelier_job"] = record.id
        created.append(image.name)
    return created


def import_single_mesh(record: JobRecord, context, what: str, blob: str = "mesh") -> bpy.types.Object:
    """The result's GLB (the `blob`, "mesh" by default) as exactly one new, unparented mesh object (the importer's
    other objects removed); AddonError naming `what` (and nothing left behind) when the GLB lacks or holds more than
    one mesh."""
    glb = record.result.blobs.get(blob)
    if glb is None:
        raise AddonError(f"the {record.kind} result has no {'mesh' if blob == 'mesh' else blob}",
                         "this is a backend bug: see its log")
    objects = import_glb(glb, context)
    meshes = [o for o in objects if o.type == "MESH"]
    if len(meshes) != 1:
        for obj in objects:
            bpy.data.objects.remove(obj)
        raise AddonError(f"{what} holds {len(meshes)} meshes, expected one", "see the backend log")
    obj = meshes[0]
    for other in objects:
        if other is not obj:
            bpy.data.objects.remove(other)
    obj.parent = None
    return obj


def import_result_mesh(record: JobRecord, context, suffix: str) -> bpy.types.Object:
    """The result's GLB ("mesh" blob) as one new object "<source> <suffix>" at the source's transform, in the
    Atelier collection; AddonError (and nothing left behind) when the GLB lacks or holds more than one mesh."""
    obj = import_single_mesh(record, context, f"the {record.kind} result")
    obj.matrix_world = source_matrix(record)
    base = record.source or "Atelier"
    obj.name = f"{base} {suffix}"
    obj.data.name = f"{base} {suffix}"
    move_to_collection(obj, atelier_collection(context.scene))
    return obj


def show_stylized(obj: bpy.types.Object, material_name: str) -> None:
    """A Text2Mesh result as it was made: the shape key "Text2Mesh" (the displacement) at full strength and active
    (its slider goes back to the plain shape), the colours through a Color Attribute node, the materials named."""
    keys = obj.data.shape_keys
    if keys is not None:
        index = keys.key_blocks.find("Text2Mesh")
        if index >= 0:
            keys.key_blocks[index].value = 1.0
            obj.active_shape_key_index = index
    wire_color_attribute(obj)
    for slot in obj.material_slots:
        if slot.material is not None:
            slot.material.name = material_name


def import_stylize(record: JobRecord, context) -> list[str]:
    """`stylize`: the GLB as a new object at the source's transform, colours via a Color Attribute node,
    the displacement as the shape key "Text2Mesh" at full strength (its slider goes back to the source shape)."""
    obj = import_result_mesh(record, context, "stylized")
    show_stylized(obj, f"{record.source or 'Atelier'} stylized")
    pack_images_of(obj)
    store_job(obj, record)
    hide_source(record, context)
    make_active(obj, context)
    return [obj.name]


def add_style_texture_node(material: bpy.types.Material, image: bpy.types.Image) -> bpy.types.ShaderNode:
    """An Image Texture node showing `image`, left unconnected beside the base colour texture, so the artist
    can blend it in (e.g. a Mix node in Linear Light mode over the base: 0.5 grey is no change)."""
    if material.node_tree is None:  # Blender < 5 makes node trees on request only
        material.use_nodes = True
    tree = material.node_tree
    node = tree.nodes.get(STYLE_NODE) or tree.nodes.new("ShaderNodeTexImage")
    node.name, node.label, node.image = STYLE_NODE, "Style texture (0.5 grey: no change)", image
    bsdf = next((n for n in tree.nodes if n.type == "BSDF_PRINCIPLED"), None)
    base = bsdf.inputs["Base Color"] if bsdf is not None else None
    anchor = base.links[0].from_node if base is not None and base.is_linked else bsdf
    if anchor is not None:
        node.location = anchor.location + mathutils.Vector((0, -320))
    return node


def import_restyle(record: JobRecord, context) -> list[str]:
    """`restyle`: the GLB as a new object at the source's transform with its restyled base colour texture
    wired as Blender's glTF importer makes it; the style texture alone ("style_texture" PNG, 128 = no change)
    as a packed image "<source> style texture" in an unconnected Image Texture node of the material."""
    result = record.result
    style_png = result.blobs.get("style_texture")
    if style_png is None or not style_png.startswith(b"\x89PNG"):
        raise AddonError("the restyle result has no style texture PNG", "this is a backend bug: see its log")
    obj = import_result_mesh(record, context, "restyled")
    base = record.source or "Atelier"
    image = load_png_image(f"{base} style texture", style_png)
    image.colorspace_settings.name = "Non-Color"  # signed offsets around 0.5, not colours
    image[PROP_PREFIX + "job"] = record.id
    materials = [slot.material for slot in obj.material_slots if slot.material is not None]
    if not materials:  # the GLB always carries one; be safe rather than lose the texture
        material = bpy.data.materials.new(f"{base} restyled")
        obj.data.materials.append(material)
        materials = [material]
    for material in materials:
        material.name = f"{base} restyled"
        add_style_texture_node(material, image)
    pack_images_of(obj)
    store_job(obj, record)
    hide_source(record, context)
    make_active(obj, context)
    return [obj.name, image.name]


def import_index(record: JobRecord, context) -> list[str]:
    """`index`: nothing enters the scene; the report (shapes, indexed, skipped, failed) stays in `record.fields`."""
    return []


def import_search(record: JobRecord, context) -> list[str]:
    """`search`: nothing enters the scene; the hits stay in `record.fields["hits"]` (best first) and their
    thumbnail PNGs go into the add-on's previews collection (`session.hit_preview(record.id, index)`), which the
    Search Library panel shows as a grid; its Import buttons fetch a hit with a `fetch_shape` job."""
    from ..engine import session

    result = record.result
    hits = result.fields.get("hits")
    if not isinstance(hits, list):
        raise AddonError("the search result has no hits list", "this is a backend bug: see its log")
    record.fields["hits"] = hits
    thumbnails = []
    for hit in hits:
        data = result.blobs.get(str(hit.get("thumbnail") or ""))
        thumbnails.append(data if data is not None and data.startswith(b"\x89PNG") else None)
    session.load_hit_thumbnails(record, thumbnails)
    return []


def import_fetch_shape(record: JobRecord, context) -> list[str]:
    """`fetch_shape`: the library shape's GLB as a new object named after it, at the 3D cursor, in the Atelier
    collection, with the job stored on it."""
    obj = import_single_mesh(record, context, "the library shape")
    obj.location = context.scene.cursor.location.copy()
    obj.name = str(record.result.fields.get("name") or "Library shape")
    move_to_collection(obj, atelier_collection(context.scene))
    pack_images_of(obj)
    store_job(obj, record)
    make_active(obj, context)
    return [obj.name]


def import_segment(record: JobRecord, context) -> list[str]:
    """`segment`: the mask (grayscale, white on the object) and the cut-out (RGBA) as packed images
    "Atelier <prompt> mask" / "... cutout", the cut-out also as the Segment Photo panel's `segment_cutout`; nothing
    enters the scene. The method and scores stay in `record.fields`."""
    prompt = str(record.params.get("prompt") or "segment")[:40]
    created = []
    for blob in ("mask", "cutout"):
        data = record.result.blobs.get(blob)
        if data is None:
            raise AddonError(f"the segment result lacks its {blob} image", "this is a backend bug: see its log")
        image = load_png_image(f"Atelier {prompt} {blob}", data)
        image["atelier_job"] = record.id
        created.append(image.name)
    settings = getattr(context.scene, "atelier", None)
    if settings is not None:  # the Segment Photo panel's cut-out: a search query or a style image
        settings.segment_cutout = bpy.data.images[created[1]]
    return created


def photo_to_3d_method(record: JobRecord) -> str:
    """How a `photo_to_3d` job made its shape: the result's `method`, else the one asked for (retrieve when none)."""
    return str(record.result.fields.get("method") or record.params.get("method") or "retrieve")


def import_photo_to_3d(record: JobRecord, context) -> list[str]:
    """`photo_to_3d`. Method retrieve: the chosen library shape, restyled after the photo, at the 3D cursor (as
    `fetch_shape`), with the style texture alone in an unconnected Image Texture node (as `restyle`). Method
    reconstruct or auto: the reconstruction's GLB (UVs, the baked base-colour texture wired by Blender's glTF
    importer, packed) as one object "<prompt> reconstruction" at the 3D cursor in the Atelier collection."""
    if photo_to_3d_method(record) in ("reconstruct", "auto"):
        return [import_reconstruction(record, context).name]
    style_png = record.result.blobs.get("style_texture")
    if style_png is None or not style_png.startswith(b"\x89PNG"):
        raise AddonError("the photo_to_3d result has no style texture PNG", "this is a backend bug: see its log")
    chosen = record.result.fields.get("chosen") or {}
    obj = bpy.data.objects[import_fetch_shape(record, context)[0]]
    obj.name = f"{chosen.get('name') or 'Library shape'} from photo"
    image = load_png_image(f"{obj.name} style texture", style_png)
    image.colorspace_settings.name = "Non-Color"
    image[PROP_PREFIX + "job"] = record.id
    for material in [slot.material for slot in obj.material_slots if slot.material is not None]:
        add_style_texture_node(material, image)
    pack_images_of(obj)
    return [obj.name, image.name]


def import_reconstruction(record: JobRecord, context) -> bpy.types.Object:
    """A reconstruct/auto `photo_to_3d` result as a new object "<prompt> reconstruction" at the 3D cursor."""
    obj = import_single_mesh(record, context, "the reconstruction")
    if obj.data.uv_layers.active is None or not any(
            node.type == "TEX_IMAGE" and node.image is not None
            for slot in obj.material_slots if slot.material is not None and slot.material.node_tree is not None
            for node in slot.material.node_tree.nodes):
        mesh = obj.data
        bpy.data.objects.remove(obj)
        if mesh.users == 0:
            bpy.data.meshes.remove(mesh)
        raise AddonError("the reconstruction came without its UVs or baked texture", "this is a backend bug: see its "
                         "log")
    prompt = str(record.params.get("prompt") or "Photo").strip()
    prompt = prompt if len(prompt) <= 40 else prompt[:37] + "..."
    obj.location = context.scene.cursor.location.copy()
    obj.name = obj.data.name = f"{prompt} reconstruction"
    for slot in obj.material_slots:
        if slot.material is not None:
            slot.material.name = f"{prompt} reconstruction"
    move_to_collection(obj, atelier_collection(context.scene))
    pack_images_of(obj)
    store_job(obj, record)
    make_active(obj, context)
    return obj


GENERATE_SPACING = 2.5
"""Blender units between the generate job's samples along X: each shape fits the unit sphere (2 units across)."""


def generate_origin(record: JobRecord, context) -> mathutils.Vector:
    """Where a generate job's first sample goes: the 3D cursor when the job was submitted (`meta["location"]`),
    else the cursor now."""
    location = record.meta.get("location")
    if location and len(location) == 3:
        return mathutils.Vector([float(v) for v in location])
    return context.scene.cursor.location.copy()


def import_generate(record: JobRecord, context) -> list[str]:
    """`generate`: each sample's GLB ("mesh_0" ... "mesh_{N-1}", unit sphere, Y up: Blender's importer turns it Z up) as
    a new object "<shape prompt> <n>" (no prompt: "<picture name> <n>") in the Atelier collection, side by side along X
    from the 3D cursor (GENERATE_SPACING apart), all selected, the first active. The backend sends the samples best
    first (by their held-out-view CLIP score), so "<prompt> 1" is the best and the row runs from best to worst. Each
    keeps the job (`store_job`) plus its place (`atelier_rank`, the blob's number, 0 = best), its flow draw
    (`atelier_sample`; the blob's number from a backend that does not say) and CLIP scores (`atelier_clip_score`, the
    ranking score, and `atelier_clip_score_before` / `_after`), so Run Again and Variation work from any of them. Styled samples show their colours through a Color Attribute node and
    the relief as the shape key "Text2Mesh". A sample that cannot be imported removes the ones before it."""
    fields = record.result.fields
    count = int(fields.get("samples") or sum(1 for name in record.result.blobs if name.startswith("mesh_")))
    if count < 1:
        raise AddonError("the generate result has no shapes", "this is a backend bug: see its log")
    base = str(fields.get("shape_prompt") or record.params.get("prompt") or picture_name(record.meta.get("picture"))
               or "Generated").strip()
    base = base if len(base) <= 40 else base[:37] + "..."
    before = list(fields.get("clip_score_before") or [])
    after = list(fields.get("clip_score_after") or [])
    ranking = list(fields.get("clip_score") or after)
    draws = list(fields.get("sample") or [])
    origin = generate_origin(record, context)
    collection = atelier_collection(context.scene)
    created: list[bpy.types.Object] = []
    try:
        for index in range(count):
            obj = import_single_mesh(record, context, f"generated sample {index}", blob=f"mesh_{index}")
            created.append(obj)
            obj.matrix_world = mathutils.Matrix.Translation(origin + mathutils.Vector((index * GENERATE_SPACING, 0, 0)))
            obj.name = obj.data.name = f"{base} {index + 1}"
            move_to_collection(obj, collection)
            if fields.get("style"):
                show_stylized(obj, f"{obj.name} styled")
            pack_images_of(obj)
            store_job(obj, record)
            obj[PROP_PREFIX + "rank"] = index
            obj[PROP_PREFIX + "sample"] = int(draws[index]) if index < len(draws) else index
            if index < len(ranking) and ranking[index] is not None:
                obj[PROP_PREFIX + "clip_score"] = float(ranking[index])
            if index < len(before) and before[index] is not None:
                obj[PROP_PREFIX + "clip_score_before"] = float(before[index])
            if index < len(after) and after[index] is not None:
                obj[PROP_PREFIX + "clip_score_after"] = float(after[index])
    except Exception:
        for obj in created:
            mesh = obj.data
            bpy.data.objects.remove(obj)
            if mesh is not None and mesh.users == 0:
                bpy.data.meshes.remove(mesh)
        raise
    make_active(created[0], context)
    for obj in created[1:]:
        if obj.name in context.view_layer.objects:
            obj.select_set(True)
    return [obj.name for obj in created]


IMPORTERS: dict[str, Callable[[JobRecord, object], list[str]]] = {
    "render": import_render,
    "stylize": import_stylize,
    "restyle": import_restyle,
    "index": import_index,
    "search": import_search,
    "fetch_shape": import_fetch_shape,
    "segment": import_segment,
    "photo_to_3d": import_photo_to_3d,
    "generate": import_generate,
}
"""Job kind -> importer; the keys equal `kinds.JOB_KINDS` (a test checks)."""
