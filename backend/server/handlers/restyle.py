"""The `restyle` job: NNFM texture style transfer on the submitted mesh from style images.

blobs: "style_0", "style_1", ... (1-16): encoded style images (PNG, JPEG, ...; any mode; EXIF rotation honoured).
params: `shared_protocol.requests.RestyleRequest` (quality, steps, seed, palette, palette_weight, pattern_scale,
        texture_size, features, clip: default "RN50:openai", preview_every). Needs a mesh payload.
progress: stage "restyle", every step: loss, loss_style, loss_content, loss_palette, palette_weight, eta_s;
        a PNG preview of the first view every `preview_every` steps and at the last.
result: blobs {"mesh": GLB (combined texture as base colour map, UVs; a fresh unwrap when the mesh had none),
        "style_texture": PNG of the style texture alone, 128 + 127.5 * S (128: no change)};
        fields: steps, loss_first, loss_last, loss_style_first, loss_style_last, seconds, quality, clip,
        extractor, palette (hex list), palette_source, neighbour_share (per style image), unwrapped,
        base_source, texture_size, styles.
"""

from __future__ import annotations

from backend.errors import InvalidInputError
from backend.server.context import JobContext, JobOutput
from backend.server.meshes import to_backend_mesh
from backend.server.params import read_request
from shared_protocol.requests import RestyleRequest


def run(ctx: JobContext) -> JobOutput:
    # Heavy imports here, not at server start-up.
    from backend.geometry.png import encode_png
    from backend.images import load_image
    from backend.stylize.service import run_restyle

    request = read_request(RestyleRequest, ctx)  # the style blobs are numbered style_0, style_1, ... without gaps
    if ctx.mesh is None:
        raise InvalidInputError("the restyle job needs a mesh", hint="send the object's mesh in the submit message")
    styles = [load_image(ctx.blobs[f"style_{i}"], what=f"style image {i}") for i in range(len(ctx.blobs))]
    pending: dict[str, bytes] = {}

    def on_preview(step: int, image) -> None:
        pending["png"] = encode_png(image, compress_level=1)

    def progress(step: int, total: int, **metrics: float) -> None:
        ctx.progress(step, total, stage="restyle", preview_png=pending.pop("png", None), **metrics)

    outcome = run_restyle(request, to_backend_mesh(ctx.mesh), styles, ctx.device, progress=progress,
                          cancel=ctx.cancel, on_preview=on_preview, on_load=lambda: ctx.progress(0, 1, stage="load"))
    ctx.cancel.check()
    return JobOutput(fields=outcome.fields, blobs=outcome.files)
