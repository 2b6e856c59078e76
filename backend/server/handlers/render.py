"""The `render` job: shaded turntable views of the submitted mesh, as PNGs.

params: `shared_protocol.requests.RenderRequest`: views (1-64, default 8), size (16-2048 px, default 256),
        background ([r, g, b] in [0, 1], default white). Needs a mesh payload.
result: fields {"views": V, "size": S, "names": ["view_000", ...]}, blobs view_000.. (PNG, S x S RGB).
"""

from __future__ import annotations

from backend.errors import InvalidInputError
from backend.geometry.validate import validate_mesh
from backend.render.renderer import RenderConfig
from backend.render.turntable import render_turntable
from backend.server.context import JobContext, JobOutput
from backend.geometry.png import encode_png
from backend.server.meshes import to_backend_mesh
from backend.server.params import read_request
from shared_protocol.requests import RenderRequest


def run(ctx: JobContext) -> JobOutput:
    request = read_request(RenderRequest, ctx)
    views, size, background = request.views, request.size, tuple(request.background)
    if ctx.mesh is None:
        raise InvalidInputError("the render job needs a mesh", hint="send the object's mesh in the submit message")
    mesh = validate_mesh(to_backend_mesh(ctx.mesh))

    def progress(step: int, total: int, **metrics: float) -> None:
        ctx.progress(step, total, stage="render", **metrics)

    images = render_turntable(mesh, views=views, size=size, device=ctx.device, progress=progress,
                              cancel=ctx.cancel, config=RenderConfig(background=background))
    names = [f"view_{i:03d}" for i in range(len(images))]
    blobs = {}
    for name, image in zip(names, images):
        ctx.cancel.check()
        blobs[name] = encode_png(image)
    return JobOutput(fields={"views": len(names), "size": size, "names": names}, blobs=blobs)
