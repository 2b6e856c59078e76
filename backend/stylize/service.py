"""What `atelier stylize` / `atelier restyle` and the stylize / restyle jobs share: from a request
(`shared_protocol.requests`) and a mesh to the result and its files, assembled once.

The CLI writes the files and prints; the job handler sends them. Both report the same `fields`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from backend.geometry.mesh import Mesh
from backend.progress import CancelToken, ProgressFn, no_progress
from shared_protocol.requests import RestyleRequest, StylizeRequest

STYLIZE_DEFAULT_CLIP = "ViT-B-32:openai"
"""The CLIP Text2Mesh uses when the request names none (the paper's)."""
RESTYLE_DEFAULT_CLIP = "RN50:openai"
"""The CLIP whose image-tower features NNFM matches when the request names none (the paper's)."""

PreviewFn = Callable[[int, np.ndarray], None]
"""on_preview(step, front view [H, W, 3] uint8)."""


@dataclass
class Outcome:
    """A finished stylize or restyle."""

    result: object
    """The `StylizeResult` / `RestyleResult`."""
    files: dict[str, bytes]
    """"mesh": the GLB; restyle also "style_texture": the style texture alone as PNG."""
    fields: dict
    """The figures both the CLI report and the job result carry."""


class LazyClip:
    """Loads the CLIP when first called: stylize() and restyle() call it once they have checked their input, so
    bad input fails before a model loads. `on_load()` runs just before (the job reports its "load" stage)."""

    def __init__(self, spec: str, device: torch.device, allow_download: bool,
                 on_load: Callable[[], None] | None = None):
        self.spec, self.device, self.allow_download, self.on_load = spec, device, allow_download, on_load
        self.clip = None

    def __call__(self):
        from backend.models.clip import load_clip

        if self.on_load is not None:
            self.on_load()
        self.clip = load_clip(self.spec, self.device, allow_download=self.allow_download)
        return self.clip

    @property
    def loaded_spec(self) -> str | None:
        return self.clip.spec if self.clip is not None else None


def run_stylize(request: StylizeRequest, mesh: Mesh, device: torch.device, *, renderer: str = "auto",
                allow_download: bool = False, progress: ProgressFn = no_progress, cancel: CancelToken | None = None,
                on_preview: PreviewFn | None = None, on_load: Callable[[], None] | None = None) -> Outcome:
    """Text2Mesh on `mesh` (glTF frame) after `request`. The mesh, prompt and settings are checked before the CLIP
    loads (`on_load()` runs just before it does)."""
    from backend.stylize.output import export_stylized_glb
    from backend.stylize.text2mesh import preset, stylize

    config = preset(request.quality, steps=request.steps or None, seed=request.seed, subdivide=request.subdivide,
                    subdivide_min_vertices=request.subdivide_vertices, preview_every=request.preview_every or None,
                    renderer=renderer)
    config.check()
    clip = LazyClip(request.clip or STYLIZE_DEFAULT_CLIP, device, allow_download, on_load)
    result = stylize(mesh, request.prompt, clip, config, device=device, progress=progress, cancel=cancel,
                     on_preview=on_preview)
    glb = export_stylized_glb(result, bake_texture=request.bake_texture, texture_size=request.texture_size,
                              name=mesh.name or None)
    fields = {
        "prompt": result.prompt, "steps": result.steps, "loss_first": result.losses[0],
        "loss_last": result.losses[-1], "seconds": round(result.seconds, 3),
        "seconds_per_step": result.seconds / result.steps, "quality": request.quality, "clip": clip.loaded_spec,
        "subdivided": result.subdivision_levels > 0, "vertices": result.mesh.num_vertices,
        "faces": result.mesh.num_faces, "max_displacement": result.max_displacement,
    }
    return Outcome(result=result, files={"mesh": glb}, fields=fields)


def run_restyle(request: RestyleRequest, mesh: Mesh, styles: list[np.ndarray], device: torch.device, *,
                renderer: str = "auto", allow_download: bool = False, progress: ProgressFn = no_progress,
                cancel: CancelToken | None = None, on_preview: PreviewFn | None = None,
                on_load: Callable[[], None] | None = None) -> Outcome:
    """NNFM texture transfer onto `mesh` from `styles` (arrays from `backend.images.load_image`) after `request`.
    The mesh, images and settings are checked (and the mesh unwrapped) before the CLIP loads."""
    from backend.stylize.features import FeatureConfig
    from backend.stylize.output import export_restyled
    from backend.stylize.palette import parse_palette, to_hex
    from backend.stylize.restyle import preset, restyle

    use_palette = request.palette != "none"
    palette = parse_palette(request.palette) if use_palette else None
    config = preset(request.quality, steps=request.steps or None, seed=request.seed,
                    pattern_scale=request.pattern_scale, texture_size=request.texture_size or None,
                    palette_weight=request.palette_weight, preview_every=request.preview_every or None,
                    renderer=renderer, features=FeatureConfig(extractor=request.features))
    config.check()
    clip = None
    if request.features == "clip":
        clip = LazyClip(request.clip or RESTYLE_DEFAULT_CLIP, device, allow_download, on_load)
    result = restyle(mesh, styles, clip, config, palette=palette, use_palette=use_palette, device=device,
                     progress=progress, cancel=cancel, on_preview=on_preview)
    glb, style_png = export_restyled(result, name=mesh.name or None)
    fields = {
        "steps": result.steps, "loss_first": result.losses[0], "loss_last": result.losses[-1],
        "loss_style_first": result.metrics_first["loss_style"], "loss_style_last": result.metrics_last["loss_style"],
        "seconds": round(result.seconds, 3), "seconds_per_step": result.seconds / result.steps,
        "quality": request.quality, "clip": clip.loaded_spec if clip is not None else None,
        "extractor": result.extractor, "palette": [] if result.palette is None else to_hex(result.palette),
        "palette_source": result.palette_source, "neighbour_share": result.neighbour_share,
        "unwrapped": result.unwrapped, "base_source": result.base_source, "texture_size": config.texture_size,
        "styles": len(styles),
    }
    return Outcome(result=result, files={"mesh": glb, "style_texture": style_png}, fields=fields)
