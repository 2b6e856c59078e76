"""A spatial-frequency term: the amplitude spectrum of each (unlit) render of the object against that of the
style image seen through the same window.

The random-feature Gram and sliced Wasserstein terms see patches of at most their filters' reach, so a pattern
whose order spans the object (bands that keep one direction, the slow sideways swing of waves, a lattice of
checks or dots) has nothing holding it together beyond a few periods. The Fourier amplitude of the whole view
does: a periodic pattern is a few sharp peaks at its wave vectors (and their harmonics and sidebands), wherever
its phase lies. Liu, Gousseau & Xia 2016 ("Texture synthesis through convolutional neural networks and
spectrum constraints") add such a term to the Gram loss for regular textures.

Per view: the object's coverage, eroded and with a soft edge, is the window w; the render x and the style image
s (cropped, or tiled, to the render's size) each have their mean colour inside w removed and are multiplied by
w, so the silhouette shapes both spectra alike; the loss is sum(|F(x w)| - |F(s w)|)^2 / sum |F(s w)|^2 over
frequencies and colour channels (1 for a plain render, 0 for the style's own spectrum), averaged over views.
Which part of the style image lies under the window does not matter much: the amplitude ignores shifts.
"""

from __future__ import annotations

from typing import Sequence

import torch

from backend.errors import InvalidInputError
from backend.stylize.texture import box_sum, coverage_at

EDGE = 2
"""Pixels the coverage is eroded by (antialiased silhouette pixels mix in the background)."""
SOFT = 7
"""Side of the box filter that softens the window's edge (so the silhouette adds few spectral lines)."""


def window(alpha: torch.Tensor) -> torch.Tensor:
    """[B, 1, H, W] coverage -> [B, 1, H, W] window in [0, 1]: eroded by EDGE pixels, edge softened over SOFT."""
    hard = coverage_at(alpha, tuple(alpha.shape[-2:]), EDGE)
    return box_sum(hard, SOFT // 2) / SOFT**2 * hard


def fit(style: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[1, 3, h, w] -> [1, 3, H, W]: tiled when smaller, then the centre crop."""
    height, width = size
    reps = (-(-height // style.shape[-2]), -(-width // style.shape[-1]))
    tiled = style.repeat(1, 1, *reps) if max(reps) > 1 else style
    top, left = (tiled.shape[-2] - height) // 2, (tiled.shape[-1] - width) // 2
    return tiled[..., top:top + height, left:left + width]


def windowed_amplitude(images: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """images [B, 3, H, W], weight [B, 1, H, W] -> [B, 3, H, W // 2 + 1] |rfft2((x - mean_w(x)) * w)|."""
    total = weight.sum(dim=(2, 3), keepdim=True).clamp(min=1e-6)
    mean = (images * weight).sum(dim=(2, 3), keepdim=True) / total
    return torch.fft.rfft2((images - mean) * weight, norm="ortho").abs()


class SpectrumTerm:
    """The amplitude-spectrum loss of unlit renders against style images ([1, 3, h, w] each, at the scale the
    renders should show them: `restyle`'s style tensors)."""

    def __init__(self, styles: Sequence[torch.Tensor]):
        if not styles:
            raise InvalidInputError("no style image was given", hint="pass at least one style image")
        self.styles = [s.detach() for s in styles]

    def __call__(self, images: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """0-d loss, mean over views (views with no covered pixel add nothing). images: [B, 3, H, W] unlit
        renders in [0, 1]; alpha: [B, 1, H, W] coverage."""
        if images.ndim != 4 or images.shape[1] != 3 or alpha.shape[-2:] != images.shape[-2:]:
            raise InvalidInputError(f"the spectrum term takes [B, 3, H, W] images and [B, 1, H, W] coverage, got "
                                    f"{tuple(images.shape)} and {tuple(alpha.shape)}",
                                    hint="pass unlit renders and their alpha")
        w = window(alpha)
        size = tuple(images.shape[-2:])
        with torch.no_grad():
            target = torch.stack([windowed_amplitude(fit(s.to(images.device), size).expand(len(images), -1, -1, -1), w)
                                  for s in self.styles]).mean(dim=0)
        amplitude = windowed_amplitude(images, w)
        norm = target.square().sum(dim=(1, 2, 3)).clamp(min=1e-12)
        distance = (amplitude - target).square().sum(dim=(1, 2, 3)) / norm
        has = (w.flatten(1).sum(dim=1) > 0).float()
        return (distance * has).sum() / has.sum().clamp(min=1.0)
