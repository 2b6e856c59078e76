"""The optimised 3D Gaussians: raw parameters, their activations, and DreamGaussian's densify / prune schedule.

Parameters are stored unconstrained: means, log scales, quaternions (normalised when used), opacity and colour
logits (sigmoids). Densification follows 3DGS: Gaussians whose mean gradient stays large are cloned where they are
small and split in two where they are large; nearly transparent ones are pruned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from backend.errors import InvalidInputError
from backend.render.splat_torch import quat_to_rotmat


@dataclass
class DensifyConfig:
    """When and how the Gaussians are densified and pruned."""

    every: int = 25
    """Steps between densify-and-prune rounds."""
    until: float = 0.6
    """No densification after this fraction of the steps (the last ones settle the Gaussians)."""
    grad_threshold: float = 5e-4
    """Mean gradient norm of a Gaussian's mean over the round above which it is densified."""
    split_scale: float = 0.03
    """Gaussians larger than this (their largest scale, unit-sphere frame) are split, smaller ones cloned."""
    min_opacity: float = 0.01
    """Gaussians below this opacity are pruned."""
    max_scale: float = 0.35
    """Gaussians with a scale above this are pruned (they blur the whole view)."""
    max_gaussians: int = 6000
    """No densification beyond this many Gaussians (bounds the CPU's time per step)."""

    def check(self) -> None:
        if self.every < 1:
            raise InvalidInputError(f"densify every must be >= 1 step, got {self.every}", hint="25 is the default")
        if not 0.0 <= self.until <= 1.0:
            raise InvalidInputError(f"densify until is a fraction of the steps in [0, 1], got {self.until}",
                                    hint="0.6 is the default")
        if self.max_gaussians < 8:
            raise InvalidInputError(f"max_gaussians must be >= 8, got {self.max_gaussians}", hint="6000 is the default")


def _logit(p: torch.Tensor) -> torch.Tensor:
    p = p.clamp(1e-4, 1 - 1e-4)
    return torch.log(p / (1 - p))


class GaussianModel:
    """N Gaussians as leaf tensors (`parameters()`), with their activated values (`activated()`)."""

    def __init__(self, means: torch.Tensor, log_scales: torch.Tensor, quats: torch.Tensor,
                 opacity_logits: torch.Tensor, color_logits: torch.Tensor):
        self.means = means.detach().float().clone().requires_grad_(True)
        self.log_scales = log_scales.detach().float().clone().requires_grad_(True)
        self.quats = quats.detach().float().clone().requires_grad_(True)
        self.opacity_logits = opacity_logits.detach().float().clone().requires_grad_(True)
        self.color_logits = color_logits.detach().float().clone().requires_grad_(True)
        self.grad_sum = torch.zeros(len(means))
        self.grad_count = torch.zeros(len(means))

    def __len__(self) -> int:
        return int(self.means.shape[0])

    def to(self, device: torch.device | str) -> "GaussianModel":
        """The same Gaussians as leaves on `device` (their gradient statistics start afresh)."""
        return GaussianModel(*[t.detach().to(device) for t in self.parameters()])

    @classmethod
    def from_points(cls, points: np.ndarray | torch.Tensor, colors: np.ndarray | torch.Tensor,
                    opacity: float = 0.8, scale: float | None = None) -> "GaussianModel":
        """Isotropic Gaussians at `points` [N, 3] with `colors` [N, 3] in [0, 1]; their size is the mean distance
        to the 3 nearest neighbours (or `scale`)."""
        points = torch.as_tensor(np.asarray(points), dtype=torch.float32)
        colors = torch.as_tensor(np.asarray(colors), dtype=torch.float32)
        if points.ndim != 2 or points.shape[1] != 3 or len(points) < 1:
            raise InvalidInputError(f"points must be [N >= 1, 3], got {tuple(points.shape)}",
                                    hint="sample the prior's surface first")
        if colors.shape != points.shape:
            raise InvalidInputError(f"colors {tuple(colors.shape)} must match points {tuple(points.shape)}",
                                    hint="one RGB colour per point")
        if scale is None:
            scale_per = nearest_spacing(points)
        else:
            scale_per = torch.full((len(points),), float(scale))
        log_scales = torch.log(scale_per.clamp(min=1e-3))[:, None].repeat(1, 3)
        quats = torch.zeros(len(points), 4)
        quats[:, 0] = 1.0
        return cls(points, log_scales, quats, _logit(torch.full((len(points),), opacity)), _logit(colors))

    @classmethod
    def sphere(cls, count: int, radius: float = 0.5, seed: int = 0) -> "GaussianModel":
        """DreamGaussian's start: `count` Gaussians uniformly inside a sphere of `radius`, random colours, low
        opacity."""
        g = torch.Generator().manual_seed(seed)
        direction = torch.nn.functional.normalize(torch.randn(count, 3, generator=g), dim=1)
        points = direction * radius * torch.rand(count, 1, generator=g) ** (1 / 3)
        return cls.from_points(points, torch.rand(count, 3, generator=g), opacity=0.1)

    def parameters(self) -> list[torch.Tensor]:
        return [self.means, self.log_scales, self.quats, self.opacity_logits, self.color_logits]

    def param_groups(self, lr_means: float, lr_scales: float, lr_quats: float, lr_opacity: float,
                     lr_colors: float) -> list[dict]:
        return [{"params": [self.means], "lr": lr_means}, {"params": [self.log_scales], "lr": lr_scales},
                {"params": [self.quats], "lr": lr_quats}, {"params": [self.opacity_logits], "lr": lr_opacity},
                {"params": [self.color_logits], "lr": lr_colors}]

    def activated(self) -> dict[str, torch.Tensor]:
        """The render's inputs: means, scales, quats (normalised), opacities, colors."""
        return {"means": self.means, "scales": torch.exp(self.log_scales),
                "quats": torch.nn.functional.normalize(self.quats, dim=1),
                "opacities": torch.sigmoid(self.opacity_logits), "colors": torch.sigmoid(self.color_logits)}

    def detached(self) -> dict[str, torch.Tensor]:
        return {k: v.detach() for k, v in self.activated().items()}

    def track_gradients(self) -> None:
        """After a backward pass: accumulate each Gaussian's mean-gradient norm for the next densification."""
        if self.means.grad is not None:
            self.grad_sum += self.means.grad.detach().norm(dim=1).cpu()
            self.grad_count += 1

    def densify_and_prune(self, config: DensifyConfig, generator: torch.Generator,
                          densify: bool = True) -> dict[str, int]:
        """Clones small and splits large Gaussians with a large mean gradient, prunes transparent and huge ones.
        Replaces the leaf tensors (rebuild the optimiser after). Returns the counts of each."""
        device = self.means.device
        with torch.no_grad():
            grad = self.grad_sum / self.grad_count.clamp(min=1)
            scales = torch.exp(self.log_scales).max(dim=1).values
            room = max(config.max_gaussians - len(self), 0)
            hot = (grad > config.grad_threshold) if densify else torch.zeros(len(self), dtype=torch.bool)
            if hot.sum() > room:  # the hottest first, within the budget
                keep = torch.argsort(grad, descending=True)[:room]
                hot = torch.zeros_like(hot)
                hot[keep] = True
            hot = hot.to(device)
            clone = hot & (scales <= config.split_scale)
            split = hot & (scales > config.split_scale)
            tensors = [self.means, self.log_scales, self.quats, self.opacity_logits, self.color_logits]
            parts = [[t.detach() for t in tensors]]
            if clone.any():
                parts.append([t.detach()[clone] for t in tensors])
            if split.any():
                means, log_scales, quats, opacity, color = (t.detach()[split] for t in tensors)
                # Two children drawn from the parent's Gaussian, each 1.6x smaller (3DGS).
                rotation = quat_to_rotmat(quats)
                offsets = torch.randn(2, *means.shape, generator=generator).to(device) * torch.exp(log_scales)
                children = means + torch.einsum("nij,knj->kni", rotation, offsets)
                parts.append([children.reshape(-1, 3), (log_scales - math.log(1.6)).repeat(2, 1), quats.repeat(2, 1),
                              opacity.repeat(2), color.repeat(2, 1)])
                keep_parent = ~split
            else:
                keep_parent = torch.ones(len(self), dtype=torch.bool, device=device)
            parts[0] = [t[keep_parent] for t in parts[0]]
            merged = [torch.cat([p[i] for p in parts]) for i in range(5)]
            alive = (torch.sigmoid(merged[3]) >= config.min_opacity) & \
                (torch.exp(merged[1]).max(dim=1).values <= config.max_scale)
            pruned = int((~alive).sum())
            self.__init__(*[t[alive] for t in merged])
        return {"cloned": int(clone.sum()), "split": int(split.sum()), "pruned": pruned, "gaussians": len(self)}


def nearest_spacing(points: torch.Tensor, k: int = 3, chunk: int = 2048) -> torch.Tensor:
    """[N] mean distance of each point to its k nearest others (1e-2 for a lone point)."""
    n = len(points)
    if n < 2:
        return torch.full((n,), 1e-2)
    k = min(k, n - 1)
    out = []
    for start in range(0, n, chunk):
        d = torch.cdist(points[start:start + chunk], points)
        out.append(d.topk(k + 1, largest=False).values[:, 1:].mean(dim=1))
    return torch.cat(out)
