"""What a texture restyle returns (`backend.stylize.restyle.restyle`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from backend.geometry.mesh import Mesh


@dataclass
class RestyleResult:
    """A finished run: textures are display (sRGB-encoded) values, row 0 at the top (glTF v = 0)."""

    mesh: Mesh
    """The mesh the textures map onto (the input's UVs, or a fresh unwrap when it had none)."""
    base_texture: np.ndarray
    """[H, W, 3] uint8: what the style texture was added to (the input's texture at its own size, its
    baked vertex colours, or the plain base colour)."""
    style_texture: np.ndarray
    """[T, T, 3] float32 in [-1, 1]: the learned style texture alone (signed: it may darken)."""
    combined_texture: np.ndarray
    """[H, W, 3] uint8: clamp(base + style upsampled to the base's size): the restyled base colour map."""
    losses: list[float]
    """The weighted objective at every step."""
    metrics_first: dict[str, float]
    """The loss parts at the first step."""
    metrics_last: dict[str, float]
    """The loss parts at the last step."""
    palette: np.ndarray | None
    """[K, 3] float32 display RGB the palette term pulled toward (None: no palette term)."""
    palette_source: Literal["user", "auto", "none"]
    """Whether the palette was given, extracted from the style images, or not used."""
    neighbour_share: list[float]
    """Per style image, the fraction of final-render features whose nearest neighbour it supplied."""
    base_source: str
    """Where the base colour came from: "texture", "vertex_colors" or "plain"."""
    unwrapped: bool
    """Whether the mesh had no UVs and was unwrapped with xatlas."""
    extractor: str
    """The feature network and layers, e.g. "clip-resnet:layer2+layer3"."""
    seconds: float
    """Wall time of the optimisation loop."""

    @property
    def steps(self) -> int:
        return len(self.losses)

    @property
    def style_png(self) -> np.ndarray:
        """[T, T, 3] uint8 the style texture encoded for a PNG: 128 + 127.5 * S (128 is "no change").
        In Blender's shader graph (Non-Color): base + 2 * (value - 0.5) adds it back."""
        return np.clip(np.round(127.5 * self.style_texture + 128.0), 0, 255).astype(np.uint8)
