"""Helpers of the texture-restyle tests: a shrunken config and procedural style images."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from backend.stylize.pattern_check import synthetic_pattern
from backend.stylize.restyle import RestyleConfig, preset
from backend.world.appearance import Appearance, pattern_texture


def pattern_tensor(pattern: str, angle: float = 0.0, size: int = 64, period: float = 16.0) -> torch.Tensor:
    """[1, 3, size, size] a synthetic pattern (`synthetic_pattern`) as a tensor."""
    return torch.as_tensor(synthetic_pattern(pattern, size, period, angle)).permute(2, 0, 1)[None]


def tiny_restyle_config(steps: int = 3, **changes) -> RestyleConfig:
    """The draft preset shrunk for CPU tests: 2 views of 64 px on a 64 px texture, previews every 2 steps, its
    texture term's pyramid cut to 2 levels of 5 px filters (reaching 10 px of the 64)."""
    texture = replace(preset("draft").texture, levels=2, kernel=5)
    values = {"steps": steps, "batch": 2, "render_size": 64, "texture_size": 64, "preview_every": 2,
              "renderer": "torch", "texture": texture, **changes}
    return preset("draft", **values)


def pattern_image(pattern: str, base=(230, 220, 200), accent=(40, 60, 160), tile: int = 32, tiles: int = 4,
                  coverage: float = 0.5) -> np.ndarray:
    """A style image of `tiles` x `tiles` periods of a world pattern ("stripes": horizontal bands, "dots",
    "checks"): [tile * tiles, tile * tiles, 3] float32 in [0, 1]."""
    appearance = Appearance("custom", pattern, tuple(base), "custom", tuple(accent), coverage, 1.0, (0.0, 0.0))
    one = pattern_texture(appearance, tile=tile)
    return np.tile(one, (tiles, tiles, 1)).astype(np.float32) / 255.0


def flat_image(rgb, side: int = 64) -> np.ndarray:
    """A flat-colour style image [side, side, 3] float32."""
    return np.broadcast_to(np.asarray(rgb, dtype=np.float32), (side, side, 3)).copy()
