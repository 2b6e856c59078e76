"""Diagnostic job kinds (ServerConfig.test_jobs): they exercise the server without the GPU stack.

- `echo`:  returns its params as fields and the submitted mesh arrays / arrays / blobs unchanged.
- `sleep`: params {steps: int in [0, 100000] (default 10), seconds: per step in [0, 10] (default 0.05),
           preview: bool}: reports progress each step, honours cancel within a step.
- `fail`:  params {error: "internal" | "invalid_input"}: raises, to test error reporting.
"""

from __future__ import annotations

import time

import numpy as np

from backend.errors import InvalidInputError
from backend.server.context import JobContext, JobOutput
from backend.geometry.png import encode_png
from backend.server.params import check_known, float_param, int_param


def echo(ctx: JobContext) -> JobOutput:
    arrays = dict(ctx.arrays)
    blobs = dict(ctx.blobs)
    if ctx.mesh is not None:
        arrays.update({"mesh.vertices": ctx.mesh.vertices, "mesh.faces": ctx.mesh.faces,
                       "mesh.transform": ctx.mesh.transform})
        if ctx.mesh.uv is not None:
            arrays["mesh.uv"] = ctx.mesh.uv
        if ctx.mesh.vertex_colors is not None:
            arrays["mesh.vertex_colors"] = ctx.mesh.vertex_colors
        if ctx.mesh.texture_png is not None:
            blobs["mesh.texture"] = ctx.mesh.texture_png
    ctx.progress(1, 1, stage="echo")
    return JobOutput(fields={"params": ctx.params, "device": str(ctx.device)}, arrays=arrays, blobs=blobs)


def sleep(ctx: JobContext) -> JobOutput:
    check_known(ctx.params, ("steps", "seconds", "preview", "load_seconds"), "sleep")
    steps = int_param(ctx.params, "steps", 0, 100_000, default=10)
    seconds = float_param(ctx.params, "seconds", 0.0, 10.0, default=0.05)
    # A stand-in for a model load: one blocking call that never looks at the cancel flag.
    time.sleep(float_param(ctx.params, "load_seconds", 0.0, 30.0, default=0.0))
    preview = ctx.params.get("preview", False)
    if not isinstance(preview, bool):
        raise InvalidInputError(f"param 'preview' must be true or false, got {preview!r:.40}")
    for step in range(1, steps + 1):
        ctx.cancel.check()
        time.sleep(seconds)
        image = np.full((8, 8, 3), step % 256, dtype=np.uint8) if preview else None
        ctx.progress(step, steps, stage="sleep", preview_png=None if image is None else encode_png(image),
                     loss=1.0 / step)
    return JobOutput(fields={"steps": steps})


def fail(ctx: JobContext) -> JobOutput:
    check_known(ctx.params, ("error",), "fail")
    if ctx.params.get("error") == "invalid_input":
        raise InvalidInputError("the fail job was asked to fail", hint="this is a diagnostic job; it always fails")
    raise RuntimeError("the fail job raised on purpose")
