"""The `restyle` job: NNFM texture style transfer on the submitted mesh from style images.

blobs: "style_0", "style_1", ... (1-16): encoded style images (PNG, JPEG, ...; any mode; EXIF rotation honoured).
params: quality: "draft" | "standard" | "high" (default "standard"); steps: int in [1, 100000] (default: the
        preset's); seed: int (default 0); palette: "auto" | "none" | "#rrggbb,#rrggbb,..." (default "auto":
        k-means colours of the style images); palette_weight: number in [0, 1e6] (default 2000, the paper's:
        the palette loss weight at the first step); pattern_scale: number in [0.25, 8] (default 1: camera
        distance, smaller gives finer patterns); texture_size: int in [64, 4096] (default: the preset's);
        features: "clip" | "vgg16" (default "clip"); clip: CLIP spec (default "RN50:openai");
        preview_every: int in [1, 10000] (default: the preset's). Needs a mesh payload.
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
from backend.server.params import check_known, float_param, int_param, str_param

PARAMS = ("quality", "steps", "seed", "palette", "palette_weight", "pattern_scale", "texture_size", "features",
          "clip", "preview_every")
DEFAULT_CLIP = "RN50:openai"
"""The CLIP the paper takes its features from; a job may name another (`tiny-rn`, `domain`, a checkpoint)."""


def style_blobs(blobs: dict[str, bytes]) -> list[bytes]:
    """The style images style_0, style_1, ... in order; InvalidInputError when none or a gap/unknown name."""
    names = sorted(blobs, key=lambda n: (len(n), n))
    expected = [f"style_{i}" for i in range(len(names))]
    if not names:
        raise InvalidInputError("the restyle job needs at least one style image",
                                hint="send the images as blobs style_0, style_1, ...")
    if names != expected:
        raise InvalidInputError(f"unexpected blob names {names}; expected {expected}",
                                hint="send the style images as blobs style_0, style_1, ... without gaps")
    return [blobs[name] for name in expected]


def run(ctx: JobContext) -> JobOutput:
    # Heavy imports here, not at server start-up.
    from backend.images import load_image
    from backend.models.clip import load_clip
    from backend.stylize.features import FeatureConfig
    from backend.stylize.output import export_restyled
    from backend.stylize.palette import parse_palette, to_hex
    from backend.stylize.restyle import MAX_STEPS, QUALITY_PRESETS, RestyleConfig, preset, restyle
    from backend.stylize.surface import check_size

    check_known(ctx.params, PARAMS, "restyle")
    quality = str_param(ctx.params, "quality", "standard", tuple(QUALITY_PRESETS))
    steps = int_param(ctx.params, "steps", 1, MAX_STEPS, default=0) or None
    seed = int_param(ctx.params, "seed", 0, 2**31 - 1, default=0)
    palette_text = str_param(ctx.params, "palette", "auto")
    use_palette = palette_text.strip().lower() != "none"
    palette = parse_palette(palette_text) if use_palette else None
    palette_weight = float_param(ctx.params, "palette_weight", 0.0, 1e6, default=RestyleConfig.palette_weight)
    pattern_scale = float_param(ctx.params, "pattern_scale", 0.25, 8.0, default=1.0)
    texture_size = int_param(ctx.params, "texture_size", 64, 4096, default=0) or None
    extractor = str_param(ctx.params, "features", "clip", ("clip", "vgg16"))
    preview_every = int_param(ctx.params, "preview_every", 1, 10_000, default=0) or None
    spec = str_param(ctx.params, "clip", DEFAULT_CLIP)
    if ctx.mesh is None:
        raise InvalidInputError("the restyle job needs a mesh", hint="send the object's mesh in the submit message")
    styles = [load_image(data, what=f"style image {i}") for i, data in enumerate(style_blobs(ctx.blobs))]
    config = preset(quality, steps=steps, seed=seed, pattern_scale=pattern_scale, texture_size=texture_size,
                    palette_weight=palette_weight,
                    preview_every=preview_every, features=FeatureConfig(extractor=extractor))
    config.check()
    check_size(ctx.mesh, config.max_faces)
    mesh = to_backend_mesh(ctx.mesh)
    ctx.progress(0, config.steps, stage="load")
    clip = load_clip(spec, ctx.device) if extractor == "clip" else None

    pending: dict[str, bytes] = {}

    def on_preview(step: int, image) -> None:
        from backend.geometry.png import encode_png

        pending["png"] = encode_png(image, compress_level=1)

    def progress(step: int, total: int, **metrics: float) -> None:
        ctx.progress(step, total, stage="restyle", preview_png=pending.pop("png", None), **metrics)

    result = restyle(mesh, styles, clip, config, palette=palette, use_palette=use_palette, device=ctx.device,
                     progress=progress, cancel=ctx.cancel, on_preview=on_preview)
    ctx.cancel.check()
    glb, style_png = export_restyled(result, name=mesh.name or None)
    fields = {
        "steps": result.steps, "loss_first": result.losses[0], "loss_last": result.losses[-1],
        "loss_style_first": result.metrics_first["loss_style"], "loss_style_last": result.metrics_last["loss_style"],
        "seconds": round(result.seconds, 3), "quality": quality, "clip": clip.spec if clip else None,
        "extractor": result.extractor, "palette": [] if result.palette is None else to_hex(result.palette),
        "palette_source": result.palette_source, "neighbour_share": result.neighbour_share,
        "unwrapped": result.unwrapped, "base_source": result.base_source,
        "texture_size": config.texture_size, "styles": len(styles),
    }
    return JobOutput(fields=fields, blobs={"mesh": glb, "style_texture": style_png})
