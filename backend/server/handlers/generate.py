"""The `generate` job: CLIP-Forge shapes from a text prompt or a picture, optionally refined (ISS) and stylized
(Text2Mesh).

blobs:  "image" (optional): an encoded picture of the shape (PNG, JPEG, ...) whose CLIP image embedding conditions
        the flow instead of the prompt (and is what refinement aims at); then `prompt` may be left out (the "auto"
        style needs one).
params: prompt: str (1-500 characters; required without an image); checkpoint: path of a generator on the backend's machine
        (`atelier train-generator` writes one; default "": the shipped generator, or the file $ATELIER_GENERATOR
        names, `backend.generate.shipped`); samples: int in [1, 16] (default 1); refine: int in
        [0, 500] ISS steps per sample (default 0); style: "" (default: none) | "auto" (split the prompt: "a chair
        made of oak" -> shape "a chair", style the whole prompt) | a style text; style_quality: "draft" |
        "standard" | "high" (default "draft"); style_steps: int in [1, 100000] (default: the preset's);
        resolution: int in [32, 256] (default 64; decoded coarse to fine); threshold: number in [0.01, 0.99]
        (default 0.5); temperature: number in [0, 3] (default 0.5); seed: int (default 0); clip: CLIP spec
        (default: the one the checkpoint records; another is refused). No mesh payload.
progress: stage "load", then "refine" (every step: clip_score, loss, sample), "sample" (after each shape),
        "style" (every Text2Mesh step: loss, sample).
result: blobs {"mesh_0", ..., "mesh_{N-1}": GLB, Y up, inside the cube [-1, 1]^3 (stylized: vertex colours and the
        shape key "Text2Mesh")}, best first: ranked by the held-out-view CLIP score against the condition;
        fields: samples, prompt, shape_prompt, condition ("text" | "image"), style, clip, refine, seed,
        ranked_by ("clip_score_after"), and per sample in blob order: clip_score (the ranking score),
        clip_score_before, clip_score_after, sample (the draw index), cleanup ({pieces, pieces_removed,
        volume_removed, largest_floating, smooth_iterations, smooth_volume_change}), vertices, faces; seconds.
"""

from __future__ import annotations

import time

from backend.errors import InvalidInputError
from backend.server.context import JobContext, JobOutput
from backend.server.params import check_known, float_param, int_param, str_param

PARAMS = ("prompt", "checkpoint", "samples", "refine", "style", "style_quality", "style_steps", "resolution",
          "threshold", "temperature", "seed", "clip")


def run(ctx: JobContext) -> JobOutput:
    from backend.generate.decode import DecodeConfig
    from backend.generate.generate import (GenerateConfig, check_generate_prompt, generate, image_condition,
                                           prompt_condition, resolve_style, shape_glbs, stylize_shapes)
    from backend.generate.generator import load_generator
    from backend.generate.shipped import resolve_generator
    from backend.images import load_image
    from backend.models.clip import load_clip

    started = time.perf_counter()
    check_known(ctx.params, PARAMS, "generate")
    unknown = sorted(set(ctx.blobs) - {"image"})
    if unknown:
        raise InvalidInputError(f"the generate job takes no blob {unknown[0]!r}",
                                hint="send a picture of the shape as blob 'image', or only a prompt")
    image = load_image(ctx.blobs["image"], what="shape picture") if "image" in ctx.blobs else None
    text = str_param(ctx.params, "prompt", "" if image is not None else None)
    prompt = check_generate_prompt(text) if image is None or text.strip() else ""
    checkpoint = resolve_generator(str_param(ctx.params, "checkpoint", ""))
    shape_prompt, style = resolve_style(prompt, str_param(ctx.params, "style", ""))
    config = GenerateConfig(
        samples=int_param(ctx.params, "samples", 1, 16, default=1),
        refine_steps=int_param(ctx.params, "refine", 0, 500, default=0),
        temperature=float_param(ctx.params, "temperature", 0.0, 3.0, default=0.5),
        seed=int_param(ctx.params, "seed", 0, 2**31 - 1, default=0),
        decode=DecodeConfig(resolution=int_param(ctx.params, "resolution", 32, 256, default=64),
                            threshold=float_param(ctx.params, "threshold", 0.01, 0.99, default=0.5)))
    style_quality = str_param(ctx.params, "style_quality", "draft", ("draft", "standard", "high"))
    style_steps = int_param(ctx.params, "style_steps", 1, 100_000, default=0) or None

    ctx.progress(0, 1, stage="load")
    generator = load_generator(checkpoint, ctx.device)
    clip = load_clip(str_param(ctx.params, "clip", generator.clip_spec), ctx.device)

    def progress(step: int, total: int, stage: str = "sample", **metrics) -> None:
        ctx.progress(step, total, stage=stage, **metrics)

    condition = image_condition(clip, image) if image is not None else prompt_condition(clip, shape_prompt)
    shapes = generate(generator, clip, condition, config, progress=progress, cancel=ctx.cancel)
    styled = stylize_shapes(shapes, style, clip, style_quality, style_steps, config.seed, ctx.device,
                            progress=progress, cancel=ctx.cancel) if style else None
    ctx.cancel.check()
    blobs = {f"mesh_{i}": glb for i, glb in enumerate(shape_glbs(shapes, styled))}
    fields = {
        "samples": len(shapes), "prompt": prompt, "shape_prompt": shape_prompt,
        "condition": "image" if image is not None else "text", "style": style or None,
        "clip": clip.spec, "refine": config.refine_steps, "seed": config.seed,
        "ranked_by": "clip_score_after", "clip_score": [s.clip_score for s in shapes],
        "sample": [s.sample for s in shapes], "cleanup": [s.cleanup for s in shapes],
        "clip_score_before": [s.clip_score_before for s in shapes],
        "clip_score_after": [s.clip_score_after for s in shapes],
        "vertices": [s.mesh.num_vertices for s in shapes], "faces": [s.mesh.num_faces for s in shapes],
        "seconds": round(time.perf_counter() - started, 3),
    }
    return JobOutput(fields=fields, blobs=blobs)
