"""What the `photo_to_3d` job and `atelier photo-to-3d` share for `--method reconstruct|auto`: the config from
their options, the GLB and the report fields of a reconstruction."""

from __future__ import annotations

from dataclasses import replace

from backend.errors import InvalidInputError
from backend.reconstruct.guidance import GuidanceConfig
from backend.reconstruct.reconstruct import ReconstructConfig, ReconstructResult

METHODS = ("retrieve", "reconstruct", "auto")
"""retrieve: the library's best match, restyled after the photo; reconstruct: Gaussians fitted to the photo (init
as asked, sphere by default); auto: reconstruct, initialised by retrieval."""


def reconstruct_config(method: str, init: str | None = None, steps: int | None = None,
                       texture_steps: int | None = None, guidance: str = "clip", zero123_model: str | None = None,
                       allow_clip_fallback: bool = False, preview_every: int | None = None, category: str | None = None,
                       seed: int = 0) -> ReconstructConfig:
    """The reconstruction a method and the user's options ask for (InvalidInputError for a bad combination)."""
    if method not in ("reconstruct", "auto"):
        raise InvalidInputError(f"method {method!r} does not reconstruct", hint="use reconstruct or auto")
    if method == "auto" and init not in (None, "", "retrieve"):
        raise InvalidInputError(f"method auto starts from retrieval, so init {init!r} does not apply",
                                hint="use --method reconstruct --init " + str(init))
    config = ReconstructConfig(init=init or ("retrieve" if method == "auto" else "sphere"), category=category,
                               seed=seed, guidance=GuidanceConfig(guidance, zero123_model or None, allow_clip_fallback))
    fit = config.fit
    if steps:
        fit = replace(fit, steps=steps)
    if preview_every is not None:
        fit = replace(fit, preview_every=preview_every)
    config.fit = replace(fit, seed=seed)
    if texture_steps is not None:
        config.mesh = replace(config.mesh, refine_steps=texture_steps)
    config.check()
    return config


def needs_library(config: ReconstructConfig) -> bool:
    return config.init in ("retrieve", "best")


def prior_generator(config: ReconstructConfig, checkpoint: str | None, device):
    """The generator the init needs (`checkpoint`, else the shipped one), or None when it needs none."""
    if config.init not in ("generate", "best"):
        return None
    from backend.generate.generator import load_generator
    from backend.generate.shipped import resolve_generator

    return load_generator(resolve_generator(checkpoint), device)


def preview_png(image) -> bytes:
    """A preview ([S, S, 3] float tensor in [0, 1]) as PNG bytes, quickly compressed."""
    from backend.geometry.png import encode_png

    return encode_png((image.numpy() * 255 + 0.5).astype("uint8"), compress_level=1)


def result_fields(result: ReconstructResult) -> dict:
    """The report's fields of a reconstruction (JSON-ready)."""
    fit = result.fit
    return {
        "init": "sphere" if result.prior is None else result.prior.source,
        "prior": None if result.prior is None else result.prior.label,
        "hits": [h.as_dict() for h in result.hits],
        "azimuth": result.reference.azimuth, "elevation": result.reference.elevation,
        "silhouette_iou": result.reference.silhouette_iou,
        "guidance": result.guidance, "notes": result.notes,
        "gaussians": len(fit.model) if fit else 0, "steps": len(fit.losses) if fit else 0,
        "loss_first": fit.losses[0] if fit else None, "loss_last": fit.losses[-1] if fit else None,
        "texture_loss_first": result.texture_losses[0] if result.texture_losses else None,
        "texture_loss_last": result.texture_losses[-1] if result.texture_losses else None,
        "faces": result.mesh.num_faces, "seconds": {k: round(v, 3) for k, v in result.seconds.items()},
    }


def result_glb(result: ReconstructResult, name: str = "reconstructed") -> bytes:
    from backend.geometry.glb import export_glb

    return export_glb(result.mesh.copy(name=name), name=name)
