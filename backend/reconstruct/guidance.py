"""Novel-view guidance for the Gaussians: what unseen sides should look like.

- CLIP: the cosine between each novel view's CLIP embedding and the photo's (object on white). The domain CLIP
  here; real CLIP where its weights exist. Always available.
- Zero123 score distillation (DreamGaussian's guidance): a view-conditioned diffusion model, loaded with
  diffusers from a local folder only (`zero123_model`); without diffusers or the weights it fails fast with the
  fix, and the reconstruction falls back to CLIP only when the user allowed it (`allow_clip_fallback`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from backend.errors import DependencyMissingError, InvalidInputError, WeightsMissingError
from backend.external import require_diffusers

GUIDANCES = ("clip", "zero123")
ZERO123_PARTS = ("vae", "unet", "image_encoder", "clip_camera_projection", "scheduler")
"""The folders of a diffusers Zero123 checkpoint (e.g. ashawkey/zero123-xl-diffusers, as DreamGaussian loads)."""


@dataclass
class GuidanceConfig:
    """Which novel-view guidance runs."""

    kind: str = "clip"
    """"clip" or "zero123" (score distillation; needs `zero123_model`)."""
    zero123_model: str | None = None
    """A local diffusers Zero123 folder (never downloaded here)."""
    allow_clip_fallback: bool = False
    """With kind "zero123": use CLIP instead when diffusers or the weights are missing (else that is an error)."""

    def check(self) -> None:
        if self.kind not in GUIDANCES:
            raise InvalidInputError(f"guidance must be one of {', '.join(GUIDANCES)}, got {self.kind!r}",
                                    hint="clip works everywhere; zero123 needs its weights on this machine")


class ClipGuidance:
    """1 - cosine between novel views and the photo in CLIP's image space."""

    name = "clip"

    def __init__(self, clip, reference: torch.Tensor):
        """reference: [S, S, 3] the object on white."""
        self.clip = clip
        with torch.no_grad():
            self.target = clip.encode_image(reference.permute(2, 0, 1)[None].float())[0]

    def loss(self, images: torch.Tensor, **_: object) -> torch.Tensor:
        """images: [B, S, S, 3] renders on white -> scalar."""
        embedding = self.clip.encode_image(images.permute(0, 3, 1, 2))
        return (1.0 - embedding @ self.target.to(embedding.device)).mean()


def zero123_model_check(path: str | None) -> Path:
    """The Zero123 folder; DependencyMissingError without diffusers, WeightsMissingError without the weights, each
    naming the fix."""
    fallback = "or run with --guidance clip (or --allow-clip-fallback) to use the CLIP guidance instead"
    require_diffusers(fallback)
    if not path:
        raise WeightsMissingError("Zero123 guidance needs its weights: no --zero123-model folder was given",
                                     hint="download a diffusers Zero123 checkpoint (ashawkey/zero123-xl-diffusers) "
                                          f"on a machine with network and pass its folder, {fallback}")
    folder = Path(path).expanduser()
    missing = [part for part in ZERO123_PARTS if not (folder / part).is_dir()]
    if not folder.is_dir() or missing:
        what = "does not exist" if not folder.is_dir() else f"lacks {', '.join(missing)}"
        raise WeightsMissingError(f"the Zero123 weights folder {folder} {what}",
                                     hint=f"point --zero123-model at a diffusers Zero123 checkpoint folder, {fallback}")
    return folder


def make_guidance(config: GuidanceConfig, clip, reference: torch.Tensor, device, notes: list[str]):
    """The configured guidance; with zero123 missing and `allow_clip_fallback`, CLIP (noted in `notes`)."""
    config.check()
    if config.kind == "zero123":
        try:
            folder = zero123_model_check(config.zero123_model)
        except (DependencyMissingError, WeightsMissingError) as exc:
            if not config.allow_clip_fallback:
                raise
            notes.append(f"Zero123 guidance unavailable ({exc.message}); CLIP guidance used instead")
        else:
            from backend.reconstruct.zero123 import Zero123Guidance

            return Zero123Guidance(folder, reference, device)
    return ClipGuidance(clip, reference)
