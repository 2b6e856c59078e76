"""The `stylize` job: Text2Mesh on the submitted mesh.

params: `shared_protocol.requests.StylizeRequest` (prompt, quality, steps, seed, subdivide, subdivide_vertices,
        bake_texture, texture_size, clip: default "ViT-B-32:openai", preview_every). Needs a mesh payload.
progress: stage "load" (once the mesh and settings are checked), then "stylize", every step: loss, loss_global, loss_local, loss_geometry, eta_s; a PNG preview
        of the front view every `preview_every` steps and at the last.
result: blobs {"mesh": GLB (vertex colours, shape key "Text2Mesh" = the displacement, UVs/texture kept)};
        arrays, in Blender's frame and the submitted vertex order: "colors" [N, 3] float32 linear,
        "displacement" [N, 3] float32 object-local offsets; when subdivided, the new mesh instead:
        "vertices" [N', 3], "faces" [F', 3] int32, "colors", "displacement" (N' rows).
        fields: prompt, steps, loss_first, loss_last, seconds, seconds_per_step, quality, clip, subdivided,
        vertices, faces, max_displacement (`backend.stylize.service.run_stylize`).
"""

from __future__ import annotations

import numpy as np

from backend.errors import InvalidInputError
from backend.geometry.color import srgb_to_linear
from backend.geometry.mesh import gltf_to_blender
from backend.geometry.png import encode_png
from backend.server.context import JobContext, JobOutput
from backend.server.meshes import to_backend_mesh
from backend.server.params import read_request
from shared_protocol.requests import StylizeRequest

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
    from backend.stylize.service import run_stylize

    request = read_request(StylizeRequest, ctx)
    if ctx.mesh is None:
        raise InvalidInputError("the stylize job needs a mesh", hint="send the object's mesh in the submit message")
    pending: dict[str, bytes] = {}

    def on_preview(step: int, image) -> None:
        pending["png"] = encode_png(image, compress_level=1)

    def progress(step: int, total: int, **metrics: float) -> None:
        ctx.progress(step, total, stage="stylize", preview_png=pending.pop("png", None), **metrics)

    mesh = to_backend_mesh(ctx.mesh)
    outcome = run_stylize(request, mesh, ctx.device, progress=progress, cancel=ctx.cancel,
                          on_preview=on_preview, on_load=lambda: ctx.progress(0, 1, stage="load"))
    ctx.cancel.check()
    result = outcome.result
    if outcome.fields["subdivided"]:
        arrays = blender_arrays(result.colors, result.displacement, None, result.mesh.num_vertices)
        arrays["vertices"] = gltf_to_blender(result.mesh.vertices)
        arrays["faces"] = result.mesh.faces.astype(np.int32)
    else:
        arrays = blender_arrays(result.colors, result.displacement, result.mesh.metadata.get("source_vertex"),
                                int(ctx.mesh.vertices.shape[0]))
    return JobOutput(fields=outcome.fields, arrays=arrays, blobs=outcome.files)
