"""The CLIP-Forge latent flow: a conditional RealNVP that maps a shape latent to a standard Gaussian given a
CLIP embedding, so that sampling the Gaussian and running the flow backwards gives shape latents for an
image or a text.

Direction: `forward(z, cond)` goes latent -> Gaussian (the density direction, used for training by
negative log-likelihood); `inverse(u, cond)` and `sample` go Gaussian -> latent.

Conditions are CLIP embeddings [B, C]: image embeddings of rendered views in training, text embeddings at
inference. With `normalize_condition` the flow L2-normalises them itself, so both kinds arrive on the
unit sphere whatever the caller did.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class FlowConfig:
    """The flow's shape (CLIP-Forge: 128-d latent, 5 couplings, batch-norm between, CLIP-width condition)."""

    latent_dim: int = 128
    """Size of the shape latent (the autoencoder's `latent_dim`)."""
    condition_dim: int = 512
    """Width of the CLIP embedding that conditions the flow (512 for ViT-B/32)."""
    coupling_layers: int = 5
    """Affine coupling layers; their masks alternate so every latent dimension gets transformed."""
    hidden: int = 1024
    """Width of each coupling's scale/shift network."""
    hidden_layers: int = 2
    """Hidden layers in each scale/shift network."""
    batch_norm: bool = True
    """A batch-norm layer after every coupling (RealNVP/CLIP-Forge); it is invertible with running stats."""
    batch_norm_momentum: float = 0.1
    """Weight of the current batch in the running mean/variance of the batch-norm layers."""
    normalize_condition: bool = True
    """L2-normalise conditions inside the flow (CLIP image and text embeddings then share one scale)."""
    mean_hidden: int = 0
    """Width of a conditional mean network (0: none, as in CLIP-Forge). With one, the couplings model the latent's
    residual from m(c), a regression of the standardised latent on the condition trained by its own squared
    error (`FlowTrainConfig.mean_weight`), so the flow's mode (T=0) lands near m(c). On 2400 world shapes (6000
    steps, 5 couplings of width 256) the view-conditioned mode's held-out voxel IoU went from 0.46 without it to
    0.67 with it, and "a photo of a <category>" samples' category accuracy from 0.84 to 1.0."""

    def __post_init__(self) -> None:
        if self.latent_dim < 2:
            raise ValueError(f"latent_dim must be >= 2 (a coupling splits it in two), got {self.latent_dim}")
        for name in ("condition_dim", "coupling_layers", "hidden", "hidden_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.mean_hidden < 0:
            raise ValueError(f"mean_hidden must be >= 0, got {self.mean_hidden}")
        if not 0.0 < self.batch_norm_momentum <= 1.0:
            raise ValueError(f"batch_norm_momentum must be in (0, 1], got {self.batch_norm_momentum}")


class AffineCoupling(nn.Module):
    """Keeps the masked half of z and scales/shifts the other half by a net of [masked z, condition].

    mask: [D] float {0, 1}, 1 = passed through unchanged. log-scales go through tanh, so one coupling
    changes a coordinate by at most a factor e; the last layer starts at zero, so a new coupling is the
    identity.
    """

    def __init__(self, mask: torch.Tensor, condition_dim: int, hidden: int, hidden_layers: int):
        super().__init__()
        d = mask.numel()
        self.register_buffer("mask", mask.float())
        layers: list[nn.Module] = []
        width = d + condition_dim
        for _ in range(hidden_layers):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        last = nn.Linear(width, 2 * d)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(*layers, last)

    def _scale_shift(self, kept: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw_s, t = self.net(torch.cat([kept, cond], dim=1)).chunk(2, dim=1)
        free = 1.0 - self.mask
        return torch.tanh(raw_s) * free, t * free

    def forward(self, z: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kept = z * self.mask
        s, t = self._scale_shift(kept, cond)
        return kept + (1.0 - self.mask) * (z * torch.exp(s) + t), s.sum(dim=1)

    def inverse(self, u: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        kept = u * self.mask
        s, t = self._scale_shift(kept, cond)
        return kept + (1.0 - self.mask) * (u - t) * torch.exp(-s)


class FlowBatchNorm(nn.Module):
    """RealNVP batch normalisation as a flow layer: u = (z - mean) / sqrt(var + eps) * exp(log_gamma) + beta.

    Training-mode forward uses the batch's statistics and updates the running ones; eval-mode forward and
    every inverse use the running statistics, so in eval the layer is an exact, per-sample bijection.
    """

    def __init__(self, dim: int, momentum: float, eps: float = 1e-5):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.log_gamma = nn.Parameter(torch.zeros(dim))
        self.beta = nn.Parameter(torch.zeros(dim))
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training:
            if len(z) < 2:
                raise ValueError("batch-norm needs a batch of at least 2 latents in training mode; "
                                 "call flow.eval() to score single latents")
            mean, var = z.mean(dim=0), z.var(dim=0, unbiased=False)
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), self.momentum)
                self.running_var.lerp_(var.detach().to(self.running_var.dtype), self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        u = (z - mean) / torch.sqrt(var + self.eps) * torch.exp(self.log_gamma) + self.beta
        log_det = (self.log_gamma - 0.5 * torch.log(var + self.eps)).sum()
        return u, log_det.expand(len(z))

    def inverse(self, u: torch.Tensor) -> torch.Tensor:
        std = torch.sqrt(self.running_var + self.eps)
        return (u - self.beta) * torch.exp(-self.log_gamma) * std + self.running_mean


class ConditionalRealNVP(nn.Module):
    """z: [B, latent_dim] latent, cond: [B, condition_dim] CLIP embedding -> u: [B, latent_dim] ~ N(0, I).

    Layers: a fixed standardisation of the latent (the training latents' mean and std, `standardize`), then
    coupling, batch-norm, coupling, batch-norm, ... with alternating even/odd masks. In eval mode `forward` and
    `inverse` are exact inverses (batch-norm uses its running statistics). The standardisation matters: the
    autoencoder's latents have stds of ~20, and coupling nets fed such inputs train poorly.
    """

    def __init__(self, config: FlowConfig | None = None):
        super().__init__()
        self.config = config = config or FlowConfig()
        even = (torch.arange(config.latent_dim) % 2 == 0).float()
        self.couplings = nn.ModuleList(
            AffineCoupling(even if i % 2 == 0 else 1.0 - even, config.condition_dim, config.hidden,
                           config.hidden_layers)
            for i in range(config.coupling_layers))
        self.norms = nn.ModuleList(
            FlowBatchNorm(config.latent_dim, config.batch_norm_momentum) if config.batch_norm else nn.Identity()
            for _ in range(config.coupling_layers))
        self.mean_net = nn.Sequential(
            nn.Linear(config.condition_dim, config.mean_hidden), nn.ReLU(),
            nn.Linear(config.mean_hidden, config.mean_hidden), nn.ReLU(),
            nn.Linear(config.mean_hidden, config.latent_dim)) if config.mean_hidden else None
        self.register_buffer("latent_mean", torch.zeros(config.latent_dim))
        self.register_buffer("latent_std", torch.ones(config.latent_dim))

    @torch.no_grad()
    def standardize(self, latents: torch.Tensor) -> None:
        """Sets the fixed standardisation from training latents [N, D] (per-dimension mean and std)."""
        self.latent_mean.copy_(latents.mean(dim=0))
        self.latent_std.copy_(latents.std(dim=0).clamp_min(1e-3) if len(latents) > 1 else torch.ones_like(self.latent_std))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Flows saved before the standardisation existed had none: the identity.
        for name, fill in (("latent_mean", torch.zeros_like), ("latent_std", torch.ones_like)):
            state_dict.setdefault(prefix + name, fill(getattr(self, name)))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _check(self, name: str, x: torch.Tensor, width: int, what: str) -> None:
        if x.dim() != 2 or x.shape[1] != width:
            raise ValueError(f"{name} must be [B, {width}] ({what}), got {tuple(x.shape)}")

    def _condition(self, cond: torch.Tensor, batch: int, like: torch.Tensor) -> torch.Tensor:
        self._check("cond", cond, self.config.condition_dim, "condition_dim of the flow's CLIP embedding")
        if len(cond) != batch:
            raise ValueError(f"cond has {len(cond)} rows but there are {batch} latents; give one condition per latent")
        cond = cond.to(device=like.device, dtype=like.dtype)
        return F.normalize(cond, dim=1) if self.config.normalize_condition else cond

    def forward(self, z: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent -> Gaussian: (u [B, D], log|det du/dz| [B])."""
        self._check("z", z, self.config.latent_dim, "latent_dim of the flow")
        cond = self._condition(cond, len(z), z)
        z = (z - self.latent_mean) / self.latent_std
        if self.mean_net is not None:  # a plain regression: it learns from `mean_error` only, not the likelihood
            z = z - self.mean_net(cond).detach()
        log_det = -torch.log(self.latent_std).sum().expand(len(z))
        for coupling, norm in zip(self.couplings, self.norms):
            z, ld = coupling(z, cond)
            log_det = log_det + ld
            if isinstance(norm, FlowBatchNorm):
                z, ld = norm(z)
                log_det = log_det + ld
        return z, log_det

    def inverse(self, u: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Gaussian -> latent: u [B, D] -> z [B, D] (batch-norm always uses its running statistics)."""
        self._check("u", u, self.config.latent_dim, "latent_dim of the flow")
        cond = self._condition(cond, len(u), u)
        for coupling, norm in zip(reversed(self.couplings), reversed(self.norms)):
            if isinstance(norm, FlowBatchNorm):
                u = norm.inverse(u)
            u = coupling.inverse(u, cond)
        if self.mean_net is not None:
            u = u + self.mean_net(cond)
        return u * self.latent_std + self.latent_mean

    def mean_error(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Mean squared error per latent entry of the conditional mean network against standardised latents z
        ([B]; zeros without a mean network)."""
        if self.mean_net is None:
            return torch.zeros(len(z), dtype=z.dtype, device=z.device)
        target = (z - self.latent_mean) / self.latent_std
        return (self.mean_net(self._condition(cond, len(z), z)) - target).pow(2).mean(dim=1)

    def log_prob(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """log p(z | cond) in nats: [B]. The standard-normal base density plus the forward log-det."""
        u, log_det = self(z, cond)
        base = -0.5 * (u.pow(2).sum(dim=1) + u.shape[1] * math.log(2.0 * math.pi))
        return base + log_det

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, n: int = 1, generator: torch.Generator | None = None,
               temperature: float = 1.0) -> torch.Tensor:
        """Latents for a condition: cond [C] -> [n, D]; cond [B, C] -> [B, n, D].

        Gaussian draws are scaled by `temperature` (below 1: typical shapes, above: variety) and run
        backwards through the flow. `generator` must live on the flow's device.
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        single = cond.dim() == 1
        conds = cond.unsqueeze(0) if single else cond
        self._check("cond", conds, self.config.condition_dim, "condition_dim of the flow's CLIP embedding")
        param = next(self.parameters())
        b, d = len(conds), self.config.latent_dim
        u = torch.randn(b * n, d, generator=generator, device=param.device, dtype=param.dtype) * temperature
        z = self.inverse(u, conds.to(param.device).repeat_interleave(n, dim=0)).view(b, n, d)
        return z[0] if single else z
