"""The `stylize` job: Text2Mesh on the submitted mesh.

params: prompt: str (required, 1-500 characters); quality: "draft" | "standard" | "high" (default
        "standard"); steps: int in [1, 100000] (default: the preset's); seed: int (default 0);
        subdivide: bool (default false: subdivide sparse meshes first); subdivide_vertices: int in
        [100, 200000] (default 10000: the vertex count subdivision aims for); bake_texture: bool (default false:
        paint the colours into a UV texture too); texture_size: int in [64, 4096] (default 1024);
        clip: CLIP spec (default "ViT-B-32:openai"); preview_every: int in [1, 10000] (default: the preset's).
        Needs a mesh payload.
progress: stage "stylize", every step: loss, loss_global, loss_local, loss_geometry, eta_s; a PNG preview
        of the front view every `preview_every` steps and at the last.
result: blobs {"mesh": GLB (vertex colours, shape key "Text2Mesh" = the displacement, UVs/texture kept)};
        arrays, in Blender's frame and the submitted vertex order: "colors" [N, 3] float32 linear,
        "displacement" [N, 3] float32 object-local offsets; when subdivided, the new mesh instead:
        "vertices" [N', 3], "faces" [F', 3] int32, "colors", "displacement" (N' rows).
        fields: prompt, steps, loss_first, loss_last, seconds, quality, clip, subdivided, vertices, faces,
        max_displacement.
"""

from __future__ import annotations

import numpy as np

from backend.errors import InvalidInputError
from backend.geometry.color import srgb_to_linear
from backend.geometry.mesh import gltf_to_blender
from backend.geometry.png import encode_png
from backend.geometry.validate import validate_mesh
from backend.server.context import JobContext, JobOutput
from backend.server.meshes import to_backend_mesh
from backend.server.params import bool_param, check_known, int_param, str_param

PARAMS = ("prompt", "quality", "steps", "seed", "subdivide", "subdivide_vertices", "bake_texture", "texture_size",
          "clip", "preview_every")
DEFAULT_CLIP = "ViT-B-32:openai"
"""The CLIP the paper uses; a job may name another (`tiny` for tests, `domain`, a local checkpoint)."""


def blender_arrays(colors: np.ndarray, displacement: np.ndarray, source: np.ndarray | None,
                   count: int) -> dict[str, np.ndarray]:
    """Per-vertex results mapped onto the submitted vertices, in Blender's frame.

    colors, displacement: [N, 3] per backend vertex (glTF frame); source: [N] int, the submitted vertex each
    backend vertex copies (None: identity); count: submitted vertex count. Vertices no face used get
    Text2Mesh's grey and no displacement.
    """
    rows = np.arange(len(colors)) if source is None else np.asarray(source, dtype=np.int64)
    out_colors = np.full((count, 3), srgb_to_linear(np.float32(0.5)), dtype=np.float32)  # the start grey, linear
    out_displacement = np.zeros((count, 3), dtype=np.float32)
    out_colors[rows] = colors[:, :3]
    out_displacement[rows] = displacement
    return {"colors": out_colors, "displacement": gltf_to_blender(out_displacement)}


def run(ctx: JobContext) -> JobOutput:
    # Heavy imports here, not at server start-up: most sessions never stylize.
    from backend.models.clip import load_clip
    from backend.stylize.losses import check_prompt
    from backend.stylize.output import export_stylized_glb
    from backend.stylize.surface import check_size
    from backend.stylize.text2mesh import MAX_STEPS, QUALITY_PRESETS, preset, stylize

    check_known(ctx.params, PARAMS, "stylize")
    prompt = check_prompt(str_param(ctx.params, "prompt", None))  # again with the tokenizer once CLIP is loaded
    quality = str_param(ctx.params, "quality", "standard", tuple(QUALITY_PRESETS))
    steps = int_param(ctx.params, "steps", 1, MAX_STEPS, default=0) or None
    seed = int_param(ctx.params, "seed", 0, 2**31 - 1, default=0)
    subdivide = bool_param(ctx.params, "subdivide", False)
    subdivide_vertices = int_param(ctx.params, "subdivide_vertices", 100, 200_000, default=10_000)
    bake = bool_param(ctx.params, "bake_texture", False)
    texture_size = int_param(ctx.params, "texture_size", 64, 4096, default=1024)
    preview_every = int_param(ctx.params, "preview_every", 1, 10_000, default=0) or None
    spec = str_param(ctx.params, "clip", DEFAULT_CLIP)
    if ctx.mesh is None:
        raise InvalidInputError("the stylize job needs a mesh", hint="send the object's mesh in the submit message")
    config = preset(quality, steps=steps, seed=seed, subdivide=subdivide, subdivide_min_vertices=subdivide_vertices,
                    preview_every=preview_every)
    check_size(ctx.mesh, config.max_faces)  # before decoding: a huge mesh gets the stylize-specific fix
    mesh = validate_mesh(to_backend_mesh(ctx.mesh), max_faces=config.max_faces)
    ctx.progress(0, config.steps, stage="load")
    clip = load_clip(spec, ctx.device)

    pending: dict[str, bytes] = {}

    def on_preview(step: int, image: np.ndarray) -> None:
        pending["png"] = encode_png(image, compress_level=1)

    def progress(step: int, total: int, **metrics: float) -> None:
        ctx.progress(step, total, stage="stylize", preview_png=pending.pop("png", None), **metrics)

    result = stylize(mesh, prompt, clip, config, device=ctx.device, progress=progress, cancel=ctx.cancel,
                     on_preview=on_preview)
    ctx.cancel.check()
    glb = export_stylized_glb(result, bake_texture=bake, texture_size=texture_size, name=mesh.name or None)
    subdivided = result.subdivision_levels > 0
    if subdivided:
        arrays = blender_arrays(result.colors, result.displacement, None, result.mesh.num_vertices)
        arrays["vertices"] = gltf_to_blender(result.mesh.vertices)
        arrays["faces"] = result.mesh.faces.astype(np.int32)
    else:
        arrays = blender_arrays(result.colors, result.displacement, result.mesh.metadata.get("source_vertex"),
                                int(ctx.mesh.vertices.shape[0]))
    fields = {
        "prompt": result.prompt, "steps": result.steps, "loss_first": result.losses[0],
        "loss_last": result.losses[-1], "seconds": round(result.seconds, 3), "quality": quality, "clip": clip.spec,
        "subdivided": subdivided, "vertices": result.mesh.num_vertices, "faces": result.mesh.num_faces,
        "max_displacement": result.max_displacement,
    }
    return JobOutput(fields=fields, arrays=arrays, blobs={"mesh": glb})
