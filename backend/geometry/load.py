"""Meshes into `Mesh`: from files (via trimesh) and from protocol arrays.

Conventions applied here once, so no later stage has to know where a mesh came from:
- UVs: trimesh keeps every format's UVs with v pointing up (OBJ's convention; it flips glTF's on
  load), so `Mesh.uv = (u, 1 - v)` for every format, giving glTF's (0, 0) = top-left of the image.
- Vertex colours: glTF COLOR_0 is linear by the glTF spec. 8-bit colours in PLY, OBJ and OFF are
  sRGB-encoded by convention (Blender's and MeshLab's importers read them so) and are linearised.
- Scenes are flattened: every triangle mesh in the node graph, with its world transform applied.
  Points, lines and empty nodes are ignored.
- A glTF material colour (baseColorFactor other than white) on a part with neither texture nor
  COLOR_0 becomes that part's vertex colour, so multi-material models keep their look. Factors
  that multiply a texture or COLOR_0 are not applied; OBJ material colours (Kd) are not read.
- Files are loaded as they are (`process=False`): no vertex merging or reordering, except STL,
  whose triangle soup is joined at identical positions.

`load_mesh` does not apply size limits or drop degenerate faces: run `validate_mesh` on the result.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

from backend.errors import InvalidInputError
from backend.geometry.color import srgb_to_linear, to_unit_float
from backend.geometry.mesh import Mesh
from backend.geometry.validate import check_faces, check_mesh_arrays, check_vertex_colors, check_vertices

SUPPORTED_EXTENSIONS = (".obj", ".ply", ".stl", ".off", ".glb", ".gltf")
"""File types `load_mesh` reads (case-insensitive)."""
MAX_TEXTURE_SIDE = 8192
"""Largest texture width or height accepted; bigger images exhaust GPU memory when sampled."""

_GLTF = (".glb", ".gltf")


@dataclass
class _Part:
    """One triangle mesh of a scene, already transformed, as arrays in `Mesh` conventions."""

    vertices: np.ndarray  # [n, 3] float32
    faces: np.ndarray  # [f, 3] int32
    uv: np.ndarray | None  # [n, 2] float32, glTF convention
    colors: np.ndarray | None  # [n, 4] float32 linear
    image: np.ndarray | None  # [h, w, 3|4] uint8


def load_mesh(path: str | Path) -> Mesh:
    """Read obj, ply, stl, off, glb or gltf into one `Mesh` (glTF frame for glb/gltf; others as stored).

    Returns vertices [N, 3] float32, faces [F, 3] int32, and when the file has them uv [N, 2]
    (glTF convention), vertex_colors [N, 3|4] float32 linear, texture [H, W, 3|4] uint8.
    name is the file stem; metadata has "source_path" and "format".
    Raises InvalidInputError (naming the file) for an unknown extension, a missing file, a file
    trimesh cannot parse, or one with no triangles.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise InvalidInputError(
            f"cannot load {path.name}: unsupported file type '{ext or '(none)'}'",
            "use one of " + ", ".join(e[1:] for e in SUPPORTED_EXTENSIONS),
        )
    if not path.is_file():
        raise InvalidInputError(f"mesh file not found: {path}", "check the path and that the file exists")
    try:
        # force="scene" rather than trimesh.load_scene, which trimesh 4.4 (our lower bound) lacks.
        scene = trimesh.load(str(path), file_type=ext[1:], process=False, force="scene")
    # trimesh's parsers fail on corrupt input with whatever the parser hit (ValueError, IndexError,
    # KeyError, struct.error, JSONDecodeError, even FileNotFoundError for a garbled .gltf): all mean
    # "this file cannot be read", so they are reported as one input error naming the file.
    except Exception as exc:
        raise InvalidInputError(
            f"cannot read {path}: {type(exc).__name__}: {exc}",
            f"the file is corrupt or not a valid {ext[1:].upper()} file; re-export it",
        ) from exc

    try:
        return _mesh_from_scene(scene, path, ext)
    except InvalidInputError as exc:
        # Checks deeper down do not know the file; the user needs to know which one failed.
        raise InvalidInputError(f"{path}: {exc.message}", exc.hint) from exc


def _mesh_from_scene(scene: trimesh.Scene, path: Path, ext: str) -> Mesh:
    is_gltf = ext in _GLTF
    geometries = _scene_triangle_meshes(scene)
    if not geometries:
        raise InvalidInputError(
            "the file contains no triangles",
            "export a surface mesh; point clouds, curves and empty scenes cannot be used",
        )
    parts = [_part_from_trimesh(geometry, transform, is_gltf) for geometry, transform in geometries]
    if len(parts) > 1 and _needs_texture_packing(parts):
        # Different textures per part: let trimesh pack them into one atlas (it remaps the UVs).
        joined = trimesh.util.concatenate([_transformed_copy(g, t) for g, t in geometries])
        parts = [_part_from_trimesh(joined, np.eye(4), is_gltf)]
    part = _concatenate(parts)
    if ext == ".stl":
        part = _merge_stl_corners(part)
    mesh = Mesh(
        vertices=part.vertices,
        faces=part.faces,
        uv=part.uv,
        vertex_colors=None if part.colors is None else _drop_opaque_alpha(part.colors),
        texture=None if part.image is None or part.uv is None else part.image,
        name=path.stem,
        metadata={"source_path": str(path), "format": ext[1:]},
    )
    return check_mesh_arrays(mesh)


def mesh_from_arrays(
    vertices,
    faces,
    uv=None,
    vertex_colors=None,
    texture_png: bytes | None = None,
    *,
    name: str = "",
    uv_domain: str = "auto",
) -> Mesh:
    """Build a `Mesh` from protocol arrays.

    vertices: [N, 3] float; faces: [F, 3] int; uv: [N, 2] per vertex or [3F, 2] per face corner (row
    3f + k belongs to faces[f, k]), glTF convention; vertex_colors: [N, 3|4] float linear in [0, 1];
    texture_png: encoded image bytes (PNG; anything Pillow decodes is accepted), row 0 at the top.

    Per-corner UVs are made per-vertex by splitting each vertex into one copy per distinct UV it
    carries (corners with equal UVs share a copy), so the output may have more vertices than the
    input. metadata["source_vertex"] ([N'] int32) always maps each output vertex to its input vertex
    (identity when nothing was split) so results can be mapped back. uv_domain "vertex" or "corner"
    says which the uv rows are; "auto" reads [N, 2] as per vertex (also when N == 3F).
    Raises InvalidInputError for wrong shapes/dtypes, non-finite values, bad indices, an undecodable
    or oversized texture, or a texture without UVs. Does not apply size limits or drop degenerate
    faces: run `validate_mesh` on the result.
    """
    vertices = check_vertices(vertices)
    n = vertices.shape[0]
    faces = check_faces(faces, n)
    colors = None if vertex_colors is None else check_vertex_colors(vertex_colors, n)
    source = np.arange(n, dtype=np.int32)
    if uv is not None:
        uv_array = np.asarray(uv)
        if uv_domain not in ("auto", "vertex", "corner"):
            raise InvalidInputError(f"uv_domain must be 'auto', 'vertex' or 'corner', got {uv_domain!r}")
        corner = uv_domain == "corner" or (uv_domain == "auto" and uv_array.ndim == 2 and uv_array.shape[0] != n)
        if corner and uv_array.ndim == 2 and uv_array.shape[0] == 3 * faces.shape[0]:
            vertices, faces, uv_array, source = split_corner_uv(vertices, faces, uv_array)
            if colors is not None:
                colors = colors[source]
        elif uv_array.ndim != 2 or uv_array.shape[0] != n:
            raise InvalidInputError(
                f"uv must have shape ({n}, 2) per vertex or ({3 * faces.shape[0]}, 2) per face corner, "
                f"got {tuple(uv_array.shape)}",
                "send one (u, v) pair per vertex or per face corner",
            )
        uv = uv_array
    texture = None if texture_png is None else decode_texture(texture_png)
    return check_mesh_arrays(
        Mesh(vertices=vertices, faces=faces, uv=uv, vertex_colors=colors, texture=texture, name=name,
             metadata={"source_vertex": source})
    )


def split_corner_uv(
    vertices: np.ndarray, faces: np.ndarray, corner_uv
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Turn per-corner UVs into per-vertex UVs by splitting vertices along UV seams.

    vertices: [N, 3] float32; faces: [F, 3] int32 (checked); corner_uv: [3F, 2] real.
    Returns (vertices [N', 3] float32, faces [F, 3] int32, uv [N', 2] float32, source [N'] int32) where
    source[i] is the input vertex that output vertex i copies. Corners that share a vertex and an
    exactly equal UV share one output vertex; output vertices are ordered by source vertex, then UV.
    """
    corner_uv = np.asarray(corner_uv)
    if corner_uv.dtype.kind not in "fiu" or corner_uv.shape != (3 * faces.shape[0], 2):
        raise InvalidInputError(
            f"per-corner uv must be a ({3 * faces.shape[0]}, 2) real array, "
            f"got {corner_uv.dtype} {tuple(corner_uv.shape)}",
            "send one (u, v) pair per face corner, in face order",
        )
    corner_uv = corner_uv.astype(np.float32)
    if not np.all(np.isfinite(corner_uv)):
        raise InvalidInputError("uv contain NaN or infinite values", "re-unwrap the mesh or drop its UVs")
    # + 0.0 turns -0.0 into 0.0 so equal UVs have equal bit patterns; keys are compared exactly.
    bits = (corner_uv + np.float32(0.0)).view(np.int32).astype(np.int64)
    keys = np.column_stack([faces.reshape(-1).astype(np.int64), bits])
    unique, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    source = unique[:, 0].astype(np.int32)
    return (
        np.ascontiguousarray(vertices[source]),
        inverse.reshape(-1, 3).astype(np.int32),
        np.ascontiguousarray(corner_uv[first]),
        source,
    )


def decode_texture(data: bytes) -> np.ndarray:
    """Encoded image bytes -> [H, W, 3|4] uint8, row 0 at the top (alpha kept only if not all opaque)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            _check_texture_size(image)  # from the header, before decoding pixels we would refuse
            image.load()
            array = _image_to_array(image)
    # What Pillow raises for bytes that are not a whole image: not recognised (UnidentifiedImageError
    # is an OSError), truncated (OSError), bad header fields (ValueError, SyntaxError), too many pixels.
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise InvalidInputError(
            f"the texture could not be decoded: {exc}", "send the texture as a valid PNG file"
        ) from exc
    return array


def _image_to_array(image: Image.Image) -> np.ndarray:
    """A PIL image of any mode -> [H, W, 3|4] uint8."""
    _check_texture_size(image)
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    array = np.asarray(image.convert("RGBA" if has_alpha else "RGB"), dtype=np.uint8)
    if array.shape[2] == 4 and np.all(array[:, :, 3] == 255):
        array = array[:, :, :3]
    return np.ascontiguousarray(array)


def _check_texture_size(image: Image.Image) -> None:
    if max(image.size) > MAX_TEXTURE_SIDE:
        raise InvalidInputError(
            f"the texture is {image.size[0]}x{image.size[1]} pixels, larger than {MAX_TEXTURE_SIDE} on a side",
            f"downscale the texture to at most {MAX_TEXTURE_SIDE} pixels",
        )


def _scene_triangle_meshes(scene: trimesh.Scene) -> list[tuple[trimesh.Trimesh, np.ndarray]]:
    """(geometry, [4, 4] world transform) for every Trimesh with faces in the scene graph."""
    out = []
    for node in scene.graph.nodes_geometry:
        transform, geometry_name = scene.graph[node]
        geometry = scene.geometry.get(geometry_name)
        if isinstance(geometry, trimesh.Trimesh) and len(geometry.faces) > 0:
            out.append((geometry, np.asarray(transform, dtype=np.float64)))
    return out


def _transformed_copy(geometry: trimesh.Trimesh, transform: np.ndarray) -> trimesh.Trimesh:
    copy = geometry.copy()
    # trimesh reverses the winding when the transform mirrors, so outward faces stay outward.
    copy.apply_transform(transform)
    return copy


def _part_from_trimesh(geometry: trimesh.Trimesh, transform: np.ndarray, is_gltf: bool) -> _Part:
    # Transform the arrays here rather than a trimesh copy: Trimesh.copy drops the COLOR_0 that
    # glTF puts in visual.vertex_attributes.
    vertices = trimesh.transform_points(np.asarray(geometry.vertices, dtype=np.float64), transform).astype(np.float32)
    faces = np.asarray(geometry.faces, dtype=np.int32)
    if np.linalg.det(transform[:3, :3]) < 0:
        faces = np.ascontiguousarray(faces[:, ::-1])  # a mirror turns faces inside out; flip them back
    n = vertices.shape[0]
    visual = geometry.visual
    uv = colors = image = None
    if isinstance(visual, trimesh.visual.TextureVisuals):
        if visual.uv is not None and len(visual.uv) == n:
            raw = np.asarray(visual.uv, dtype=np.float32)[:, :2]
            uv = np.column_stack([raw[:, 0], 1.0 - raw[:, 1]]).astype(np.float32)
        image = _material_image(visual.material)
        # glTF COLOR_0 next to a material sits here as the raw accessor data (trimesh's choice).
        # (DataStore.get does not behave like dict.get, hence the explicit lookup.)
        attributes = visual.vertex_attributes
        raw_colors = attributes["color"] if "color" in attributes else None
        if raw_colors is not None and len(raw_colors) == n:
            colors = _rgba(to_unit_float(raw_colors))
        elif image is None and is_gltf:
            factor = getattr(visual.material, "baseColorFactor", None)
            if factor is not None:
                factor = _rgba(to_unit_float(np.asarray(factor)[None, :]))
                # White is glTF's neutral factor (and what export_glb writes): no colour to keep.
                if np.any(factor < 1.0):
                    colors = np.tile(factor, (n, 1))
    elif isinstance(visual, trimesh.visual.ColorVisuals) and visual.kind in ("vertex", "face"):
        # Face colours are averaged onto vertices by trimesh; splitting vertices per face would
        # triple the mesh for a rare case.
        colors = to_unit_float(np.asarray(visual.vertex_colors))
        colors = _rgba(colors)
    if colors is not None and not is_gltf:
        colors[:, :3] = srgb_to_linear(colors[:, :3])
    return _Part(vertices=vertices, faces=faces, uv=uv, colors=colors, image=image)


def _material_image(material) -> np.ndarray | None:
    """The base-colour image of a trimesh material, or None (also for trimesh's 2x2 placeholder)."""
    image = getattr(material, "baseColorTexture", None)
    if image is None:
        image = getattr(material, "image", None)
    if not isinstance(image, Image.Image):
        return None
    array = _image_to_array(image)
    # trimesh invents a uniform 2x2 image for UVs without a texture (PLY, OBJ without mtl): not real.
    if array.shape[:2] == (2, 2) and np.all(array == array[0, 0]):
        return None
    return array


def _rgba(colors: np.ndarray) -> np.ndarray:
    """[n, 3|4] float -> [n, 4] float32 (opaque alpha added)."""
    colors = np.asarray(colors, dtype=np.float32)
    if colors.shape[1] == 3:
        colors = np.column_stack([colors, np.ones(len(colors), dtype=np.float32)])
    return np.ascontiguousarray(colors[:, :4], dtype=np.float32)


def _drop_opaque_alpha(colors: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(colors[:, :3]) if np.all(colors[:, 3] >= 1.0) else colors


def _needs_texture_packing(parts: list[_Part]) -> bool:
    """True when the parts do not all share one texture (or all have none)."""
    images = [p.image for p in parts]
    if all(image is None for image in images):
        return False
    first = images[0]
    return any(image is None or image.shape != first.shape or not np.array_equal(image, first) for image in images)


def _merge_stl_corners(part: _Part) -> _Part:
    """STL stores every triangle with its own three corners; join corners at identical positions so
    the mesh is connected (smooth normals, unwrapping and validation need shared vertices). STL has
    no other attributes, so this loses nothing. Vertex order follows first appearance."""
    _, first, inverse = np.unique(part.vertices, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return _Part(
        vertices=np.ascontiguousarray(part.vertices[first[order]]),
        faces=rank[inverse.reshape(-1)].reshape(-1, 3).astype(np.int32),
        uv=None, colors=None, image=None,
    )


def _concatenate(parts: list[_Part]) -> _Part:
    """Join parts sharing one texture (or none). UVs survive only if every part has them; parts
    without colours get white where others have colours."""
    if len(parts) == 1:
        return parts[0]
    offsets = np.cumsum([0] + [len(p.vertices) for p in parts[:-1]])
    vertices = np.concatenate([p.vertices for p in parts])
    faces = np.concatenate([p.faces + o for p, o in zip(parts, offsets)]).astype(np.int32)
    uv = np.concatenate([p.uv for p in parts]) if all(p.uv is not None for p in parts) else None
    colors = None
    if any(p.colors is not None for p in parts):
        colors = np.concatenate(
            [p.colors if p.colors is not None else np.ones((len(p.vertices), 4), np.float32) for p in parts]
        )
    return _Part(vertices=vertices, faces=faces, uv=uv, colors=colors, image=parts[0].image)
