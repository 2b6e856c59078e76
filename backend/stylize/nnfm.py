"""Nearest-neighbour feature matching (NNFM, ARF: Zhang et al. 2022) over a bank of several style images.

Every feature vector of a render is replaced by its nearest neighbour (cosine) among the feature vectors of
all style images together (Mishra & Granskog's extension to several styles), and the loss is the mean
cosine distance between the two. The search runs in blocks, so a 512-px batch against several style images
never holds the full N x M similarity matrix; the loss is then taken on the matched pairs only, which has the
same value and gradient as the minimum over the full matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from backend.errors import InvalidInputError


@torch.no_grad()
def nearest_neighbours(queries: torch.Tensor, keys: torch.Tensor,
                       chunk: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """For each query, the key with the highest cosine similarity.

    queries: [N, C] float; keys: [M, C] float (M >= 1), same device. Returns (index [N] int64 into keys,
    best cosine [N] float32); ties go to the lowest index, as argmax does. No gradient. At most
    chunk x chunk similarities exist at once: queries and keys are walked in blocks with a running maximum.
    """
    if queries.ndim != 2 or keys.ndim != 2 or queries.shape[1] != keys.shape[1]:
        raise ValueError(f"queries [N, C] and keys [M, C] must agree in C, got {tuple(queries.shape)} "
                         f"and {tuple(keys.shape)}")
    if keys.shape[0] == 0:
        raise ValueError("there are no keys to match against")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    q = F.normalize(queries.float(), dim=1)
    k = F.normalize(keys.float(), dim=1)
    index = torch.empty(q.shape[0], dtype=torch.long, device=q.device)
    best = torch.empty(q.shape[0], dtype=torch.float32, device=q.device)
    for q0 in range(0, q.shape[0], chunk):
        block = q[q0:q0 + chunk]
        block_best = torch.full((block.shape[0],), -torch.inf, device=q.device)
        block_index = torch.zeros(block.shape[0], dtype=torch.long, device=q.device)
        for k0 in range(0, k.shape[0], chunk):
            value, arg = torch.mm(block, k[k0:k0 + chunk].t()).max(dim=1)
            better = value > block_best  # strict: an equal later key does not replace an earlier one
            block_best = torch.where(better, value, block_best)
            block_index = torch.where(better, arg + k0, block_index)
        best[q0:q0 + chunk] = block_best
        index[q0:q0 + chunk] = block_index
    return index, best


def flatten_features(features: torch.Tensor) -> torch.Tensor:
    """[B, C, h, w] feature maps -> [B * h * w, C] feature vectors (batch, then row-major positions)."""
    if features.ndim != 4:
        raise ValueError(f"features must be [B, C, h, w], got shape {tuple(features.shape)}")
    return features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])


def _matched_loss(features: torch.Tensor, style: torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    queries = flatten_features(features)
    index, _ = nearest_neighbours(queries, style, chunk)
    matched = style.detach()[index]
    cosine = (F.normalize(queries.float(), dim=1) * F.normalize(matched.float(), dim=1)).sum(dim=1)
    return (1.0 - cosine).mean(), index


def nnfm_loss(features: torch.Tensor, style: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """Mean over the positions of `features` of 1 - cos(feature, its nearest style feature).

    features: [B, C, h, w] float (differentiable); style: [M, C] float bank (no gradient flows into it).
    Returns a 0-d float32 tensor in [0, 2].
    """
    return _matched_loss(features, style, chunk)[0]


@dataclass
class StyleBank:
    """The feature vectors of all style images together, per layer, and which image each came from."""

    features: list[torch.Tensor]
    """Per layer [M_l, C_l] float32 (no gradient): every position of every style image, image after image."""
    sources: list[torch.Tensor]
    """Per layer [M_l] int64 on the features' device: the index of the style image each row came from."""
    count: int
    """How many style images the bank holds."""

    def share(self, layer: int, index: torch.Tensor) -> torch.Tensor:
        """[count] float64: the fraction of `index` (neighbour rows of `layer`, e.g. from `nnfm_losses`)
        supplied by each style image; sums to 1."""
        counts = torch.bincount(self.sources[layer][index].cpu(), minlength=self.count).double()
        return counts / counts.sum().clamp(min=1.0)


@torch.no_grad()
def build_style_bank(extractor: Callable[[torch.Tensor], list[torch.Tensor]],
                     images: Sequence[torch.Tensor]) -> StyleBank:
    """The union of the style images' features, per layer of `extractor`.

    images: one or more [1, 3, H, W] float tensors in [0, 1] (sizes may differ); each goes through
    `extractor` alone (a `FeatureExtractor`, or any callable with its contract).
    """
    if len(images) == 0:
        raise InvalidInputError("no style image was given", hint="pass at least one style image")
    per_layer: list[list[torch.Tensor]] = []
    sources: list[list[torch.Tensor]] = []
    for number, image in enumerate(images):
        if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[0] != 1:
            shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise InvalidInputError(f"style image {number} must be a [1, 3, H, W] tensor, got {shape}",
                                    hint="pass each style image with its own batch axis: image[None]")
        maps = extractor(image)
        if not per_layer:
            per_layer, sources = [[] for _ in maps], [[] for _ in maps]
        for layer, feature_map in enumerate(maps):
            rows = flatten_features(feature_map.float())
            per_layer[layer].append(rows)
            sources[layer].append(torch.full((rows.shape[0],), number, dtype=torch.long, device=rows.device))
    return StyleBank(features=[torch.cat(rows) for rows in per_layer],
                     sources=[torch.cat(rows) for rows in sources], count=len(images))


def nnfm_losses(features: list[torch.Tensor], bank: StyleBank,
                chunk: int = 2048) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """NNFM averaged over the layers, and per layer the bank rows the features were matched to.

    features: per layer [B, C_l, h_l, w_l] (the extractor's output, in the bank's layer order). Returns a
    0-d loss and per layer [B * h_l * w_l] int64 indices into `bank.features[l]` (for `bank.share`).
    """
    if len(features) != len(bank.features):
        raise ValueError(f"{len(features)} feature maps for a bank of {len(bank.features)} layers")
    pairs = [_matched_loss(f, style, chunk) for f, style in zip(features, bank.features)]
    return torch.stack([loss for loss, _ in pairs]).mean(), [index for _, index in pairs]


def content_loss(features: list[torch.Tensor], reference: list[torch.Tensor]) -> torch.Tensor:
    """Mean over layers of the mean squared difference between the render's features and the original
    render's (`reference`, same shapes; no gradient flows into it). Returns a 0-d float32 tensor."""
    if len(features) != len(reference) or not features:
        raise ValueError(f"content_loss needs as many reference maps as feature maps (>= 1), got "
                         f"{len(features)} and {len(reference)}")
    return torch.stack([F.mse_loss(f.float(), r.detach().float()) for f, r in zip(features, reference)]).mean()
