"""Stylization results as GLB files.

Text2Mesh: vertex colours, the displacement as a morph target, UVs and texture kept.
Texture restyle: the combined texture as the base colour map, and the style texture alone as a PNG.

The morph target sits on the *original* positions, so Blender imports it as a shape key and the artist
keeps a strength slider (0: the source shape, 1: the stylized one). Normals are left to the importer:
glTF normals would become custom normals in Blender, which a shape key does not update, and the relief
would not shade.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from backend.geometry.glb import export_glb
from backend.geometry.mesh import Mesh
from backend.geometry.png import encode_png
from backend.geometry.unwrap import ensure_uv
from backend.stylize.bake import bake_vertex_colors, uv_in_unit_square
from backend.stylize.restyle import RestyleResult
from backend.stylize.text2mesh import StylizeResult

SHAPE_KEY = "Text2Mesh"
"""Name of the morph target (Blender shape key) carrying the displacement."""


def stylized_mesh(result: StylizeResult, bake_texture: bool = False,
                  texture_size: int = 1024) -> tuple[Mesh, dict[str, np.ndarray]]:
    """The mesh to export and its morph targets {SHAPE_KEY: [N', 3] deltas}, in the source frame.

    Without baking: result.mesh with COLOR_0 = result.colors (its UVs and texture kept; glTF multiplies
    the two). With baking: the display colours painted into a new base-colour texture over the mesh's
    UVs when they lie in [0, 1], otherwise over a fresh xatlas unwrap (vertices split at its seams, so N' >= N);
    no vertex colours then, so they are not applied twice.
    """
    mesh = result.mesh
    displacement = result.displacement
    if not bake_texture:
        return mesh.copy(vertex_colors=result.colors), {SHAPE_KEY: displacement}
    display = result.display_colors
    if uv_in_unit_square(mesh.uv):
        target = mesh
    else:
        # Drop any mapping to the caller's vertices so source_vertex indexes result.mesh's rows.
        target, _ = ensure_uv(mesh.copy(uv=None, texture=None, vertex_colors=None, metadata={}))
        rows = target.metadata["source_vertex"]
        display, displacement = display[rows], displacement[rows]
        metadata = dict(mesh.metadata)
        if "source_vertex" in metadata:  # keep mapping the split vertices to the caller's
            metadata["source_vertex"] = np.asarray(metadata["source_vertex"])[rows]
        target = target.copy(metadata=metadata)
    texture = bake_vertex_colors(target.uv, target.faces, display, size=texture_size)
    return target.copy(texture=texture, vertex_colors=None), {SHAPE_KEY: displacement}


def export_stylized_glb(result: StylizeResult, path: str | Path | None = None, *, bake_texture: bool = False,
                        texture_size: int = 1024, name: str | None = None) -> bytes:
    """GLB bytes of a stylization (written to `path` when given); see `stylized_mesh`."""
    mesh, targets = stylized_mesh(result, bake_texture=bake_texture, texture_size=texture_size)
    return export_glb(mesh, path, morph_targets=targets, normals=False, name=name or mesh.name or "stylized")


def export_restyled(result: RestyleResult, path: str | Path | None = None, *,
                    name: str | None = None) -> tuple[bytes, bytes]:
    """(GLB bytes, style-texture PNG bytes) of a texture restyle. The GLB carries the combined texture as its
    base colour map (no vertex colours: they are baked into it); the PNG is the style texture alone, signed,
    encoded 128 + 127.5 * S (`RestyleResult.style_png`). With `path` (OUT.glb) both are written: OUT.glb and
    OUT_style.png beside it."""
    mesh = result.mesh.copy(texture=result.combined_texture, vertex_colors=None)
    glb = export_glb(mesh, path, normals=True, name=name or mesh.name or "restyled")
    png = encode_png(result.style_png)
    if path is not None:
        style_path(path).write_bytes(png)
    return glb, png


def style_path(glb_path: str | Path) -> Path:
    """Where `export_restyled` writes the style texture for OUT.glb: OUT_style.png."""
    path = Path(glb_path)
    return path.with_name(f"{path.stem}_style.png")
