"""Zero123 score distillation (DreamGaussian's novel-view guidance), loaded with diffusers from a local folder.

A diffusers Zero123 checkpoint (the ashawkey/zero123-xl-diffusers layout): `vae`, `unet` (8 input channels: the
noisy latents and the reference's latents), `image_encoder` (CLIPVisionModelWithProjection), `clip_camera_projection`
(a Linear from the image embedding plus [polar, sin az, cos az, radius] to the UNet's cross-attention width) and
`scheduler`. Never downloaded: everything loads with local_files_only. fp16 on CUDA, fp32 elsewhere.
Only imported through `backend.reconstruct.guidance` (diffusers and transformers are the optional extra `zero123`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from transformers import CLIPVisionModelWithProjection

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class Zero123Config:
    """Score distillation settings (DreamGaussian's)."""

    guidance_scale: float = 5.0
    """Classifier-free guidance scale."""
    min_step: float = 0.02
    """Lowest noise level, as a fraction of the schedule's steps."""
    max_step: float = 0.98
    size: int = 256
    """The model's image size (renders and the reference are resized to it)."""


class CLIPCameraProjection(ModelMixin, ConfigMixin):
    """The image embedding and the relative camera -> the UNet's conditioning (the `clip_camera_projection` part)."""

    @register_to_config
    def __init__(self, embedding_dim: int = 768, additional_embeddings: int = 4):
        super().__init__()
        self.proj = torch.nn.Linear(embedding_dim + additional_embeddings, embedding_dim)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.proj(embedding)


def camera_angles(eye: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """eye: [B, 3] positions around the origin -> (elevation, azimuth) in degrees and radius, each [B]
    (the frame of `backend.render.camera`: Y up, azimuth from +Z toward +X)."""
    radius = eye.norm(dim=-1).clamp_min(1e-8)
    elevation = torch.rad2deg(torch.asin((eye[:, 1] / radius).clamp(-1.0, 1.0)))
    azimuth = torch.rad2deg(torch.atan2(eye[:, 0], eye[:, 2]))
    return elevation, azimuth, radius


def relative_camera(eye: torch.Tensor, reference_eye: torch.Tensor) -> torch.Tensor:
    """Zero123's camera embedding [B, 4]: [polar change (radians; up is negative), sin and cos of the azimuth change,
    radius change] from the reference camera to each novel camera."""
    el, az, r = camera_angles(eye.float())
    ref_el, ref_az, ref_r = camera_angles(reference_eye.float().reshape(1, 3))
    polar = torch.deg2rad(-(el - ref_el))
    azimuth = torch.deg2rad(torch.remainder(az - ref_az, 360.0))
    return torch.stack([polar, torch.sin(azimuth), torch.cos(azimuth), r - ref_r], dim=-1)


class Zero123Guidance:
    """SDS loss of renders at novel cameras, conditioned on the reference photo."""

    name = "zero123"

    def __init__(self, folder: str | Path, reference: torch.Tensor, device, config: Zero123Config | None = None):
        """folder: a local diffusers Zero123 checkpoint; reference: [S, S, 3] in [0, 1], the object on white."""
        self.config = config or Zero123Config()
        self.device = torch.device(device)
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        folder = Path(folder)
        kwargs = dict(local_files_only=True, torch_dtype=self.dtype)
        self.vae = AutoencoderKL.from_pretrained(folder / "vae", **kwargs).to(self.device).eval()
        self.unet = UNet2DConditionModel.from_pretrained(folder / "unet", **kwargs).to(self.device).eval()
        self.image_encoder = CLIPVisionModelWithProjection.from_pretrained(
            folder / "image_encoder", **kwargs).to(self.device).eval()
        self.projection = CLIPCameraProjection.from_pretrained(
            folder / "clip_camera_projection", **kwargs).to(self.device).eval()
        for part in (self.vae, self.unet, self.image_encoder, self.projection):
            part.requires_grad_(False)
        self.scheduler = DDIMScheduler.from_pretrained(folder / "scheduler", local_files_only=True)
        steps = self.scheduler.config.num_train_timesteps
        self.min_step, self.max_step = int(steps * self.config.min_step), int(steps * self.config.max_step)
        self.alphas = self.scheduler.alphas_cumprod.to(self.device)
        with torch.no_grad():
            image = reference.permute(2, 0, 1)[None].to(self.device, torch.float32)
            self.embedding = self._embed(image)  # [1, 1, D]
            self.reference_latents = self.vae.encode(self._resize(image) * 2 - 1).latent_dist.mode()  # [1, 4, h, w]

    def _resize(self, images: torch.Tensor) -> torch.Tensor:
        size = self.config.size
        return F.interpolate(images, (size, size), mode="bilinear", align_corners=False).to(self.dtype)

    def _embed(self, images: torch.Tensor) -> torch.Tensor:
        size = self.image_encoder.config.image_size
        x = F.interpolate(images, (size, size), mode="bilinear", align_corners=False)
        mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
        return self.image_encoder(((x - mean) / std).to(self.dtype)).image_embeds.unsqueeze(1)

    def loss(self, images: torch.Tensor, cameras, reference, **_: object) -> torch.Tensor:
        """images: [B, S, S, 3] renders on white at `cameras` (Cameras with `.eye` [B, 3]); reference: the
        ReferenceView (its `.camera.eye`) -> scalar surrogate loss whose gradient is the SDS gradient."""
        batch = images.shape[0]
        x = self._resize(images.permute(0, 3, 1, 2).to(self.device))
        latents = self.vae.encode(x * 2 - 1).latent_dist.sample() * self.vae.config.scaling_factor
        with torch.no_grad():
            pose = relative_camera(cameras.eye.to(self.device), reference.camera.eye.to(self.device))
            t = torch.randint(self.min_step, self.max_step + 1, (batch,), device=self.device)
            noise = torch.randn_like(latents)
            noisy = self.scheduler.add_noise(latents, noise, t)
            embedding = self.embedding.expand(batch, -1, -1)
            cond = self.projection(torch.cat([embedding, pose[:, None].to(self.dtype)], dim=-1))
            ref = self.reference_latents.expand(batch, -1, -1, -1)
            x_in = torch.cat([torch.cat([noisy, ref], 1), torch.cat([noisy, torch.zeros_like(ref)], 1)])
            hidden = torch.cat([cond, torch.zeros_like(cond)])
            eps_cond, eps_uncond = self.unet(x_in, torch.cat([t, t]), encoder_hidden_states=hidden).sample.chunk(2)
            eps = eps_uncond + self.config.guidance_scale * (eps_cond - eps_uncond)
            w = (1 - self.alphas[t]).view(batch, 1, 1, 1)
            grad = torch.nan_to_num(w * (eps - noise))
            target = (latents - grad).detach()
        return 0.5 * F.mse_loss(latents.float(), target.float(), reduction="sum") / batch
