"""Helpers of the stylization tests: a shrunken Text2Mesh config and a colour oracle."""

from __future__ import annotations

from dataclasses import replace

import torch

from backend.stylize.text2mesh import StyleFieldConfig, Text2MeshConfig, preset

TINY_FIELD = StyleFieldConfig(width=32, depth=1, color_depth=1, displacement_depth=1, frequencies=16)
"""The style field shrunk for CPU tests (the paper's is 256 wide, 4 + 2 layers)."""


def tiny_config(steps: int = 3, **changes) -> Text2MeshConfig:
    """The draft preset shrunk further: 2 views, one augmentation of each kind, a width-32 field."""
    base = preset("draft", steps=steps, views=2, local_augs=1, geometry_augs=1, preview_every=2, renderer="torch")
    return replace(base, **{"network": TINY_FIELD, **changes})


class _Tokenizer:
    def encode(self, text: str) -> list[int]:
        return list(range(len(text.split())))


class ColourOracle:
    """A stand-in for CLIP whose only knowledge is colour: an image's embedding is its mean RGB minus grey,
    a text's is the direction of the colour word it names. It makes `stylize` prove that the gradient
    reaches the vertex colours with the right sign, in milliseconds; meaning with a real CLIP is the
    domain tests' job."""

    image_size = 32
    context_length = 77
    spec = "colour-oracle"
    tokenizer = _Tokenizer()
    WORDS = {"red": (1.0, -0.5, -0.5), "green": (-0.5, 1.0, -0.5), "blue": (-0.5, -0.5, 1.0)}

    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        x = torch.nn.functional.interpolate(images, size=(self.image_size, self.image_size), mode="bilinear")
        return x.mean(dim=(2, 3)) - 0.5

    def encode_text(self, texts, normalize: bool = True) -> torch.Tensor:
        rows = []
        for text in texts:
            word = next(w for w in self.WORDS if w in text)
            rows.append(self.WORDS[word])
        return torch.tensor(rows)
