"""A point-cloud shape encoder whose embeddings live in a CLIP's space (issue 23; seed 002, OpenShape / ULIP).

One embedding per shape instead of a view set: coloured surface samples ([P, 6] from
`backend.geometry.point_samples.coloured_points`) go through a small Point-BERT-style network:

    farthest point sampling -> G centres; the k nearest points of each centre form its group
    mini-PointNet per group (shared MLP on relative xyz + rgb, max-pool, second MLP on [point, group], max-pool)
    transformer over the G group tokens + an MLP embedding of the centres' positions
    max and mean pooled over the tokens, projected to the CLIP's embed_dim, L2-normalised

Everything after sampling is a function of the set, not the row order: FPS starts from the point farthest from
the centroid (not row 0), the groups are max-pooled, and the transformer has no sequence positions. The encoder is
trained against one CLIP (`backend.retrieve.train_points`) and its checkpoint records that CLIP's spec;
`load_point_encoder` refuses it for another.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from backend.errors import InvalidInputError

CHECKPOINT_KIND = "point_encoder"
"""The `kind` of a point encoder checkpoint (backend.checkpoints.save_model_checkpoint)."""
CHANNELS = 6
"""Per-point channels: x, y, z in the unit sphere frame, r, g, b in [0, 1]."""
DEFAULT_CLOUD_POINTS = 1024
"""Surface samples per cloud when a checkpoint does not record its training count (PointTrainConfig.points)."""


@dataclass(frozen=True)
class PointEncoderConfig:
    """The shape of a point encoder. Recorded in its checkpoint."""

    embed_dim: int = 512
    """Output width: the CLIP's embed_dim (the trainer sets it from the teacher CLIP)."""
    centres: int = 64
    """G: farthest-point-sampled group centres (tokens)."""
    group_size: int = 32
    """k: points per group (the centre's k nearest neighbours, the centre included)."""
    width: int = 128
    """Token width of the transformer."""
    group_hidden: int = 64
    """Width of the mini-PointNet's first shared MLP."""
    layers: int = 3
    """Transformer encoder layers over the group tokens."""
    heads: int = 4
    """Attention heads (must divide width)."""
    mlp_ratio: float = 2.0
    """Hidden width of each transformer layer's MLP, as a multiple of width."""
    dropout: float = 0.0
    """Dropout inside the transformer layers."""

    def __post_init__(self) -> None:
        for name in ("embed_dim", "centres", "group_size", "width", "group_hidden", "layers", "heads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidInputError(f"PointEncoderConfig.{name} must be a positive integer, got {value!r}",
                                        hint="see the field's documentation in backend/retrieve/point_encoder.py")
        if self.width % self.heads:
            raise InvalidInputError(f"PointEncoderConfig.heads ({self.heads}) must divide width ({self.width})",
                                    hint="e.g. width 128 with 4 heads")
        if not self.mlp_ratio > 0 or not 0.0 <= self.dropout < 1.0:
            raise InvalidInputError(f"PointEncoderConfig needs mlp_ratio > 0 and dropout in [0, 1), got "
                                    f"{self.mlp_ratio} and {self.dropout}", hint="e.g. mlp_ratio 2.0, dropout 0.0")

    @property
    def min_points(self) -> int:
        """The fewest points a cloud may have: enough for every centre and for one full group."""
        return max(self.centres, self.group_size)

    @classmethod
    def from_dict(cls, values: dict) -> "PointEncoderConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def farthest_point_sample(xyz: torch.Tensor, count: int) -> torch.Tensor:
    """Indices [B, count] int64 of `count` farthest-point-sampled rows of xyz [B, P, 3].

    The first pick is the point farthest from the cloud's centroid, so the result depends on the set of points,
    not their order (ties aside, which continuous samples do not have)."""
    batch, n_points, _ = xyz.shape
    centroid = xyz.mean(dim=1, keepdim=True)
    current = (xyz - centroid).square().sum(-1).argmax(dim=1)  # [B]
    nearest = torch.full((batch, n_points), float("inf"), dtype=xyz.dtype, device=xyz.device)
    rows = torch.arange(batch, device=xyz.device)
    picked = []
    for _ in range(count):
        picked.append(current)
        nearest = torch.minimum(nearest, (xyz - xyz[rows, current][:, None]).square().sum(-1))
        current = nearest.argmax(dim=1)
    return torch.stack(picked, dim=1)


def group_points(points: torch.Tensor, centres: int, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Point-BERT's grouping. points: [B, P, 6]. Returns (centre positions [B, G, 3], groups [B, G, k, 6] with xyz
    relative to their centre and rgb as given)."""
    xyz = points[..., :3]
    rows = torch.arange(points.shape[0], device=points.device)[:, None]
    with torch.no_grad():
        centre_index = farthest_point_sample(xyz.detach(), centres)
        centre_xyz = xyz[rows, centre_index]  # [B, G, 3]
        neighbours = torch.cdist(centre_xyz, xyz).topk(group_size, dim=-1, largest=False).indices  # [B, G, k]
    groups = points[rows[:, :, None], neighbours]  # [B, G, k, 6]
    relative = groups[..., :3] - centre_xyz[:, :, None]
    return centre_xyz, torch.cat([relative, groups[..., 3:]], dim=-1)


class MiniPointNet(nn.Module):
    """Point-BERT's group tokenizer: [B, G, k, 6] -> [B, G, width], max-pooled so the order inside a group is
    irrelevant."""

    def __init__(self, hidden: int, width: int) -> None:
        super().__init__()
        self.first = nn.Sequential(nn.Linear(CHANNELS, hidden), nn.GELU(), nn.Linear(hidden, 2 * hidden))
        self.second = nn.Sequential(nn.Linear(4 * hidden, 2 * width), nn.GELU(), nn.Linear(2 * width, width))

    def forward(self, groups: torch.Tensor) -> torch.Tensor:
        features = self.first(groups)  # [B, G, k, 2h]
        pooled = features.amax(dim=2, keepdim=True)  # [B, G, 1, 2h]
        # second[0] on [features, pooled] (Point-BERT's concatenation), computed as its two halves: the pooled half
        # once per group instead of once per point (a third of the encoder's time on CPU; the same result).
        joint, width = self.second[0], features.shape[-1]
        hidden = F.linear(features, joint.weight[:, :width]) + F.linear(pooled, joint.weight[:, width:], joint.bias)
        return self.second[2](self.second[1](hidden)).amax(dim=2)


class PointEncoder(nn.Module):
    """Coloured point clouds [B, P, 6] -> unit embeddings [B, embed_dim] in the teacher CLIP's space."""

    def __init__(self, config: PointEncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.tokenizer = MiniPointNet(config.group_hidden, config.width)
        self.position = nn.Sequential(nn.Linear(3, config.width), nn.GELU(), nn.Linear(config.width, config.width))
        layer = nn.TransformerEncoderLayer(config.width, config.heads, int(config.width * config.mlp_ratio),
                                           config.dropout, activation="gelu", batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(2 * config.width)
        self.project = nn.Linear(2 * config.width, config.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        """log(1 / temperature) of the training losses (CLIP's init); kept here so a checkpoint carries it."""
        self.clip_spec = ""
        """The CLIP whose space the embeddings are in (set by the trainer and by `load_point_encoder`)."""
        self.cloud_points = DEFAULT_CLOUD_POINTS
        """Surface samples per cloud it was trained on (`load_point_encoder` reads it from the checkpoint): index
        shapes are sampled with the same count, since the kNN groups' extent depends on the density."""

    @property
    def device(self) -> torch.device:
        return self.project.weight.device

    def check_points(self, points: torch.Tensor) -> torch.Tensor:
        """points as a float [B, P, 6] tensor on the encoder's device ([P, 6] becomes a batch of one);
        InvalidInputError naming the problem otherwise."""
        points = torch.as_tensor(points)
        if points.ndim == 2:
            points = points[None]
        hint = "sample clouds with backend.geometry.point_samples.coloured_points(mesh, count)"
        if points.ndim != 3 or points.shape[-1] != CHANNELS:
            raise InvalidInputError(f"a point cloud must be [P, {CHANNELS}] or [B, P, {CHANNELS}] (xyz + rgb), got "
                                    f"shape {tuple(points.shape)}", hint=hint)
        if points.shape[1] < self.config.min_points:
            raise InvalidInputError(f"a point cloud of {points.shape[1]} points is too small for this encoder: it "
                                    f"needs at least {self.config.min_points} ({self.config.centres} centres, "
                                    f"groups of {self.config.group_size})", hint=hint + " with a larger count")
        if not points.is_floating_point() or not bool(torch.isfinite(points).all()):
            raise InvalidInputError("a point cloud must hold finite floating-point values", hint=hint)
        return points.to(self.device, torch.float32)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        """points: [B, P, 6] or [P, 6] float (xyz in the unit sphere frame, rgb in [0, 1]), any row order, P >=
        config.min_points. Returns [B, embed_dim] float32, unit rows."""
        points = self.check_points(points)
        centre_xyz, groups = group_points(points, self.config.centres, self.config.group_size)
        groups = torch.cat([groups[..., :3], groups[..., 3:] - 0.5], dim=-1)  # colours centred like the positions
        tokens = self.tokenizer(groups) + self.position(centre_xyz)
        tokens = self.transformer(tokens)
        pooled = torch.cat([tokens.max(dim=1).values, tokens.mean(dim=1)], dim=-1)
        return F.normalize(self.project(self.norm(pooled)), dim=-1)

    @torch.no_grad()
    def encode(self, points: torch.Tensor, batch: int = 64) -> torch.Tensor:
        """Embeddings [B, embed_dim] float32 on the CPU of clouds [B, P, 6], in eval mode and in chunks of `batch`."""
        points = self.check_points(points)
        was_training = self.training
        self.eval()
        try:
            return torch.cat([self(points[i:i + batch]).cpu() for i in range(0, len(points), batch)])
        finally:
            self.train(was_training)


def save_point_encoder(path: str | os.PathLike, model: PointEncoder, train_config, optimizer, step: int,
                       losses: list[float]) -> Path:
    """The checkpoint of a point encoder with the spec of the CLIP it was trained against (model.clip_spec)."""
    from backend.checkpoints import save_model_checkpoint

    if not model.clip_spec:
        raise ValueError("the point encoder has no clip_spec: set it to the teacher CLIP's spec before saving")
    return save_model_checkpoint(path, CHECKPOINT_KIND, model, model.config, train_config, optimizer, step, losses,
                                 extra={"clip": {"spec": model.clip_spec, "embed_dim": model.config.embed_dim}})


def load_point_encoder(path: str | os.PathLike, clip_spec: str | None = None,
                       device: str | torch.device = "cpu") -> PointEncoder:
    """The encoder saved at `path`, in eval mode on `device`, with `clip_spec` set to the CLIP it was trained for.

    clip_spec: the CLIP the caller embeds queries with; None takes the recorded one. InvalidInputError when there is
    no file, the file is not a point encoder, or it was trained for another CLIP (its embeddings would be in another
    space: the error names both specs and the fix)."""
    from backend.checkpoints import read_model_checkpoint
    from backend.retrieve.taskformer import canonical_clip_spec

    state = read_model_checkpoint(
        path, CHECKPOINT_KIND,
        missing=(f"no point encoder at {path}", "train one with python -m backend.retrieve.train_points --out PATH"),
        wrong=(f"{path} is not a point encoder checkpoint", "pass a file written by backend.retrieve.train_points"))
    recorded = str(state.get("clip", {}).get("spec", ""))
    if clip_spec is not None and canonical_clip_spec(clip_spec) != canonical_clip_spec(recorded):
        raise InvalidInputError(
            f"the point encoder {path} was trained for the CLIP {recorded!r}, not {clip_spec!r}: its embeddings are "
            f"in the other CLIP's space",
            hint=f"use --clip {recorded}, or train a point encoder for {clip_spec} "
                 f"(python -m backend.retrieve.train_points --clip {clip_spec} --out PATH)")
    model = PointEncoder(PointEncoderConfig.from_dict(state["model_config"]))
    model.load_state_dict(state["model"])
    model.clip_spec = recorded
    model.cloud_points = int(state.get("train_config", {}).get("points", DEFAULT_CLOUD_POINTS))
    return model.to(device).eval()

