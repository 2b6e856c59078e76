"""Texture style transfer from style images (Mishra & Granskog, "CLIP-based Neural Neighbor Style Transfer
for 3D Assets", Eurographics 2023 short paper).

A separate *style texture* S is optimised and added to the mesh's own base colour B (its texture, its
vertex colours baked into one, or a plain colour), so the two stay separable: the renderer shows
clamp(B + S, 0, 1). Each step renders a batch of random views around the mesh (cameras on a sphere at a
distance that sets the pattern scale, a point light drawn in the upper hemisphere, Phong shading) through
the differentiable rasterizer and minimises

    lambda_S * NNFM(features(render), style bank) + lambda_C * |features(render) - features(original)|^2
        + lambda_P(t) * palette distance(unlit render)

where NNFM matches every feature of the render to its nearest neighbour (cosine) among the features of all
style images together, the content term keeps the original render's structure, and the palette term pulls
colours toward a user palette or one extracted from the style images, its weight decaying over the run.
The draft and standard presets add lambda_G * Gram distance + lambda_W * sliced Wasserstein distance (random
multi-scale features of the unlit render, of the style images; `backend.stylize.texture`) + lambda_F * amplitude-
spectrum distance (whole unlit views against the style seen through the same window; `backend.stylize.spectrum`),
optimise S as a sum of levels at halving sizes, and decay the learning rate tenfold (cosine): with the small
domain CLIP, NNFM alone keeps the style's colours but not its pattern (benchmarks/pattern_fidelity.py).
Paper settings (`high`): batch 8, 512 px renders, 1024 px texture, Adam lr 1e-2, lambda_S 1e4, lambda_C 22,
lambda_P 2000 decaying, CLIP-RN50 features. Colours are handled as display (sRGB-encoded) values, as the
texture stores them and the feature network saw them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Callable, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from backend.errors import InvalidInputError
from backend.geometry.mesh import Mesh
from backend.geometry.normalize import normalize_to_unit_sphere
from backend.geometry.unwrap import UnwrapConfig, ensure_uv
from backend.geometry.validate import validate_mesh
from backend.images import resize_short_side
from backend.progress import CancelToken, ProgressFn, no_progress
from backend.render.camera import Cameras, fit_distance, orbit_cameras
from backend.render.rasterizer import RasterizerConfig
from backend.render.renderer import MeshRenderer, RenderConfig
from backend.stylize.bake import bake_vertex_colors, uv_in_unit_square
from backend.stylize.features import FeatureConfig, FeatureExtractor, make_extractor
from backend.stylize.loop import StepOutput, optimise
from backend.stylize.nnfm import StyleBank, build_style_bank, content_loss, nearest_neighbours, nnfm_loss
from backend.stylize.palette import extract_palette, nearest_palette_distance, palette_weight
from backend.stylize.restyle_result import RestyleResult
from backend.stylize.spectrum import SpectrumTerm
from backend.stylize.surface import check_size
from backend.stylize.texel_density import level_weights, pixels_per_unit
from backend.stylize.texture import (TERM_SAMPLES, CombinedFeatures, GramTerm, RandomTextureFeatures,
                                    SlicedWassersteinTerm, TextureTermConfig)
from shared_protocol.limits import MAX_JOB_STEPS, TEXTURE_SIZE_RANGE

MAX_STEPS = MAX_JOB_STEPS
"""Most optimisation steps a run may ask for."""
MAX_STYLE_IMAGES = 16
"""Most style images one run takes (each adds its features to the nearest-neighbour search)."""

Quality = Literal["draft", "standard", "high"]


@dataclass(frozen=True)
class RestyleConfig:
    """A texture restyling run. Defaults are the paper's settings; `preset()` gives cheaper variants."""

    steps: int = 1000
    """Optimisation steps (the paper does not state its count; 1000 steps of batch 8 at 512 px)."""
    learning_rate: float = 1e-2
    """Adam learning rate on the style texture (the paper: 1e-2)."""
    learning_rate_end: float = 1.0
    """The learning rate decays (cosine) to this fraction of `learning_rate` by the last step (1: constant, the
    paper). Adam moves every texel by about the learning rate each step, so a constant rate leaves texel noise
    on the pattern at the end; a decay lets it settle."""
    batch: int = 8
    """Views rendered per step (the paper: 8)."""
    render_size: int = 512
    """Render side in pixels (the paper: 512). Features are taken at this resolution (convolutional towers)."""
    texture_size: int = 1024
    """Style texture side in pixels (the paper: 1024)."""
    style_size: int | None = None
    """Shorter side, in pixels, the style images are resized to before their features are taken; None: the
    render size, so style patterns and rendered patterns are compared at one scale."""
    pattern_scale: float = 1.0
    """Camera distance as a multiple of the distance at which the mesh's bounding sphere fills the view: the
    size of the patterns on the surface (closer cameras, smaller patterns; the paper's Fig. 2)."""
    distance_jitter: float = 0.1
    """Each view's distance is scaled by a factor drawn in [1 - jitter, 1 + jitter]."""
    fov_deg: float = 40.0
    """Vertical field of view of the cameras in degrees."""
    light_radius: tuple[float, float] = (3.0, 5.0)
    """The point light's distance from the centre in bounding-sphere radii, drawn uniformly (the paper: 3-5),
    in a direction drawn uniformly over the upper hemisphere."""
    style_weight: float = 1e4
    """lambda_S, the NNFM loss weight (the paper, CLIP-RN50: 1e4; VGG: 200)."""
    content_weight: float = 22.0
    """lambda_C, the content loss weight (the paper, CLIP-RN50: 22; VGG: 1)."""
    palette_weight: float = 2000.0
    """lambda_P at the first step (the paper: 2000); 0 turns the palette term off."""
    palette_end_fraction: float = 0.1
    """lambda_P decays (cosine) to this fraction of its start by the last step."""
    palette_colors: int = 5
    """Colours extracted (k-means) from the style images when no palette is given."""
    base_color: tuple[float, float, float] = (0.8, 0.8, 0.8)
    """Display RGB the style texture is added to when the mesh has neither a texture nor vertex colours."""
    features: FeatureConfig = field(default_factory=FeatureConfig)
    """Which network supplies the features (CLIP image tower by default, or VGG-16) and which layers."""
    style_levels: int = 1
    """The style texture is the sum of this many textures at halving sizes (T, T/2, T/4, ...), upsampled: 1 is
    the paper's single texture; more let coarse patterns form in few steps (see `RestyleRun`)."""
    density_levels: bool = True
    """With several style levels, weight each level per texel by whether the renders can show it: where the UV
    layout packs several of a level's texels on one rendered pixel, that level fades out and coarser ones carry
    the pattern (a static mipmap choice, `backend.stylize.texel_density`); False sums every level everywhere."""
    texture: TextureTermConfig = field(default_factory=TextureTermConfig)
    """The random multi-scale texture features added to NNFM and/or as a Gram term (off: the paper's CLIP
    features alone; the draft and standard presets turn the Gram term on, see `QUALITY_PRESETS`)."""
    nn_chunk: int = 2048
    """Block side of the nearest-neighbour search: at most nn_chunk^2 similarities exist at once."""
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Render background RGB."""
    seed: int = 0
    """Seed of the run's generator when the caller passes none."""
    max_faces: int = 500_000
    """Meshes with more triangles are refused with a hint to decimate."""
    preview_every: int = 25
    """Steps between preview images handed to `on_preview`."""
    renderer: Literal["auto", "nvdiffrast", "torch"] = "auto"
    """Rasterizer implementation (see `RasterizerConfig`)."""

    def check(self) -> None:
        """Raises InvalidInputError naming the setting and the fix for values a run cannot use."""
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or not 1 <= self.steps <= MAX_STEPS:
            raise InvalidInputError(f"steps must be an integer in [1, {MAX_STEPS}], got {self.steps!r}",
                                    hint="use e.g. 150 for a draft and 1000 for the paper's quality")
        if not 1 <= self.batch <= 64:
            raise InvalidInputError(f"batch must be in [1, 64] views, got {self.batch}", hint="the paper uses 8")
        if not 32 <= self.render_size <= 2048:
            raise InvalidInputError(f"render_size must be in [32, 2048] pixels, got {self.render_size}",
                                    hint="the paper renders at 512")
        low, high = TEXTURE_SIZE_RANGE
        if not low <= self.texture_size <= high:
            raise InvalidInputError(f"texture_size must be in [{low}, {high}] pixels, got {self.texture_size}",
                                    hint="the paper uses 1024")
        if self.style_size is not None and not 32 <= self.style_size <= 2048:
            raise InvalidInputError(f"style_size must be in [32, 2048] pixels, got {self.style_size}")
        if not 0.25 <= self.pattern_scale <= 8.0:
            raise InvalidInputError(f"pattern_scale must be in [0.25, 8], got {self.pattern_scale}",
                                    hint="1 frames the whole mesh; smaller gives finer patterns")
        if not 0.0 <= self.distance_jitter < 1.0 or not 5.0 <= self.fov_deg <= 120.0:
            raise InvalidInputError("distance_jitter must be in [0, 1) and fov_deg in [5, 120]")
        if not 1.0 < self.light_radius[0] <= self.light_radius[1]:
            raise InvalidInputError(f"light_radius must satisfy 1 < low <= high, got {self.light_radius}")
        for name in ("style_weight", "content_weight", "palette_weight"):
            if not getattr(self, name) >= 0:
                raise InvalidInputError(f"{name} must be >= 0, got {getattr(self, name)}",
                                        hint="0 turns the term off; the paper's are 1e4, 22 and 2000")
        if not self.learning_rate > 0:
            raise InvalidInputError(f"learning_rate must be > 0, got {self.learning_rate}", hint="the paper uses 1e-2")
        if isinstance(self.learning_rate_end, bool) or not isinstance(self.learning_rate_end, (int, float)) \
                or not 0.0 < self.learning_rate_end <= 1.0:
            raise InvalidInputError(f"learning_rate_end must be a fraction in (0, 1], got {self.learning_rate_end!r}",
                                    hint="1 keeps the learning rate constant (the paper); 0.1 decays it tenfold")
        if not 0.0 <= self.palette_end_fraction <= 1.0 or not 1 <= self.palette_colors <= 16:
            raise InvalidInputError("palette_end_fraction must be in [0, 1] and palette_colors in [1, 16]")
        if self.nn_chunk < 64 or self.preview_every < 1 or self.max_faces < 1:
            raise InvalidInputError("nn_chunk must be >= 64, preview_every and max_faces >= 1")
        if isinstance(self.style_levels, bool) or not isinstance(self.style_levels, int) \
                or not 1 <= self.style_levels <= 8 or self.texture_size >> (self.style_levels - 1) < 4:
            raise InvalidInputError(f"style_levels must be an integer in [1, 8] leaving the coarsest level at least "
                                    f"4 px (texture_size {self.texture_size}), got {self.style_levels!r}",
                                    hint="1 is the paper's single texture; 4 to 6 let patterns form in few steps")
        if not isinstance(self.texture, TextureTermConfig):
            raise InvalidInputError(f"texture must be a TextureTermConfig, got {type(self.texture).__name__}",
                                    hint="pass texture=TextureTermConfig(mode=...)")
        self.texture.check()
        if self.texture.mode != "off":
            reach = self.texture.kernel * 2 ** (self.texture.levels - 1)
            if min(self.render_size, self.style_size or self.render_size) < reach:
                raise InvalidInputError(f"the texture term's {self.texture.levels} levels of {self.texture.kernel} px "
                                        f"filters need renders and style images of at least {reach} px",
                                        hint="use fewer texture levels or a larger render_size")


QUALITY_PRESETS: dict[str, dict] = {
    "draft": {"steps": 150, "batch": 2, "render_size": 256, "texture_size": 512, "preview_every": 10,
              "learning_rate": 3e-2, "learning_rate_end": 0.1, "style_levels": 4,
              "texture": TextureTermConfig(mode="gram+swd", levels=4, kernel=9, gram_weight=2e4, swd_weight=5e4,
                                           spectrum_weight=2e4, colour=True)},
    "standard": {"steps": 400, "batch": 4, "render_size": 384, "texture_size": 1024, "learning_rate": 3e-2,
                 "learning_rate_end": 0.1, "style_levels": 4,
                 "texture": TextureTermConfig(mode="gram+swd", levels=5, kernel=9, gram_weight=2e4, swd_weight=5e4,
                                              spectrum_weight=2e4, colour=True)},
    "high": {},
}
"""Quality -> overrides of the paper's settings. `high` is the paper (batch 8 at 512 px, 1024 px texture,
1000 steps); `standard` 400 steps of 4 views at 384 px; `draft` 150 steps of 2 views at 256 px on a 512 px
texture (the feature network dominates a step's cost, and it scales with batch x pixels). Draft and standard
also add the texture terms (Gram and sliced Wasserstein on random multi-scale features whose pyramid reaches
about a third of the render, and the amplitude spectrum of whole views), optimise the style texture as 4 levels
at Adam lr 3e-2 decaying to 3e-3: in 150 steps the paper's optimiser on the domain CLIP leaves a plain or noisy
texture with no pattern, the Gram term alone loses checks, dots and waves, and a constant rate leaves texel
noise (benchmarks/pattern_fidelity.py, measured at 128 px renders with 2 views a step; standard's own size is not
measured). The terms cost the draft about 1.4x the time of a Gram-only step (benchmarks/README.md)."""


def preset(quality: Quality = "standard", **overrides) -> RestyleConfig:
    """The config of a quality preset with fields overridden (an override of None keeps the preset's). When the
    overrides shrink the renders or style images below what the preset's own texture term reaches (its kernel x
    2^(levels - 1) px), the term keeps as many levels as fit (none: off); a texture term given in the overrides is
    kept as given (and checked)."""
    if quality not in QUALITY_PRESETS:
        raise InvalidInputError(f"unknown quality {quality!r}", hint=f"use one of {', '.join(QUALITY_PRESETS)}")
    names = {f.name for f in fields(RestyleConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"RestyleConfig has no field {unknown[0]!r}")
    values = {**QUALITY_PRESETS[quality], **{k: v for k, v in overrides.items() if v is not None}}
    term = values.get("texture")
    if overrides.get("texture") is None and isinstance(term, TextureTermConfig) and term.mode != "off":
        side = min(int(values.get("render_size", RestyleConfig.render_size)),
                   int(values.get("style_size") or values.get("render_size", RestyleConfig.render_size)))
        levels = term.levels
        while levels > 0 and term.kernel * 2 ** (levels - 1) > side:
            levels -= 1
        if levels != term.levels:
            values["texture"] = replace(term, levels=levels) if levels else replace(term, mode="off")
    return RestyleConfig(**values)


# ----------------------------------------------------------------------------------------------- inputs


@dataclass
class PreparedMesh:
    """A mesh ready for texture optimisation: UVs present, base colour as a texture."""

    mesh: Mesh
    """The validated mesh with UVs (xatlas-unwrapped when it had none: vertices split at seams)."""
    base: np.ndarray
    """[T, T', 3] float32 display RGB in [0, 1], the colour the style texture is added to."""
    base_source: Literal["texture", "vertex_colors", "plain"]
    """Where `base` came from."""
    unwrapped: bool
    """Whether the mesh had no UVs and was unwrapped (the caller should tell the user)."""


def prepare_mesh(mesh: Mesh, config: RestyleConfig) -> PreparedMesh:
    """Validates `mesh`, unwraps it when it has no UVs, and makes its base colour texture."""
    check_size(mesh, config.max_faces)
    mesh = validate_mesh(mesh, max_faces=config.max_faces)
    mesh, unwrapped = ensure_uv(mesh, UnwrapConfig(resolution=config.texture_size))
    size = config.texture_size
    if mesh.texture is not None:
        base = mesh.texture[..., :3].astype(np.float32) / 255.0
        source = "texture"
    elif mesh.vertex_colors is not None and uv_in_unit_square(mesh.uv):
        from backend.geometry.color import linear_to_srgb

        display = linear_to_srgb(np.clip(mesh.vertex_colors[:, :3], 0.0, 1.0))
        base = bake_vertex_colors(mesh.uv, mesh.faces, display, size=size).astype(np.float32) / 255.0
        source = "vertex_colors"
    else:
        base = np.broadcast_to(np.asarray(config.base_color, dtype=np.float32), (size, size, 3)).copy()
        source = "plain"
    return PreparedMesh(mesh=mesh, base=base, base_source=source, unwrapped=unwrapped)


def style_tensors(images: Sequence[np.ndarray], side: int, device: torch.device | str) -> list[torch.Tensor]:
    """Style images [H, W, 3|4] float in [0, 1] -> [1, 3, h, w] tensors with shorter side `side`."""
    if not images:
        raise InvalidInputError("no style image was given", hint="pass at least one image with --style")
    if len(images) > MAX_STYLE_IMAGES:
        raise InvalidInputError(f"{len(images)} style images were given; at most {MAX_STYLE_IMAGES} are used",
                                hint="pick the most representative ones")
    out = []
    for i, image in enumerate(images):
        if np.ndim(image) != 3 or np.shape(image)[-1] not in (3, 4) or min(np.shape(image)[:2]) < 1:
            raise InvalidInputError(f"style image {i} must be an [H, W, 3|4] array, got shape {np.shape(image)}",
                                    hint="load images with backend.images.load_image")
        tensor = torch.as_tensor(np.ascontiguousarray(image[..., :3]), dtype=torch.float32)
        out.append(resize_short_side(tensor.permute(2, 0, 1)[None].to(device), side))
    return out


# ----------------------------------------------------------------------------------------------- views


def random_views(count: int, config: RestyleConfig, generator: torch.Generator,
                 device: torch.device | str = "cpu") -> tuple[Cameras, torch.Tensor]:
    """`count` cameras in directions uniform on the sphere looking at the centre, and a point light per view
    in the upper hemisphere. Returns (cameras, lights [count, 3])."""
    draws = torch.rand(5, count, generator=generator)
    azimuth = 360.0 * draws[0]
    elevation = torch.rad2deg(torch.asin(2.0 * draws[1] - 1.0)).clamp(-89.0, 89.0)
    jitter = 1.0 + config.distance_jitter * (2.0 * draws[2] - 1.0)
    distance = fit_distance(config.fov_deg) * config.pattern_scale * jitter
    cameras = orbit_cameras(azimuth, elevation, distance, config.fov_deg, device=device)
    # Light: uniform direction on the upper hemisphere (cos of the polar angle uniform in [0, 1]).
    cos_polar, phi = draws[3], 2.0 * math.pi * draws[4]
    sin_polar = torch.sqrt(1.0 - cos_polar**2)
    direction = torch.stack([sin_polar * torch.cos(phi), cos_polar, sin_polar * torch.sin(phi)], dim=-1)
    low, high = config.light_radius
    radius = low + (high - low) * torch.rand(count, generator=generator)
    return cameras, (direction * radius[:, None]).to(device)


# ----------------------------------------------------------------------------------------------- the run


class ReturningClamp(torch.autograd.Function):
    """clamp(x, 0, 1) whose gradient also reaches clamped values when a descent step would bring them back
    toward [0, 1] (x > 1 with a positive gradient, x < 0 with a negative one). A plain clamp gives clamped
    texels no gradient, so once a step pushes a texel out of range the loss can no longer move it and
    saturated specks (white, magenta, cyan) stay for good; a gradient that pushes further out is still cut,
    so texels do not drift away."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x.clamp(0.0, 1.0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        passes = ((x >= 0.0) & (x <= 1.0)) | ((x > 1.0) & (grad > 0)) | ((x < 0.0) & (grad < 0))
        return grad * passes



class RestyleRun:
    """One optimisation of a style texture over a unit-sphere mesh. `restyle` drives it; the benchmark times
    its phases: `render`, `features`, `losses` (nearest-neighbour search inside), backward, `update`."""

    def __init__(self, prepared: PreparedMesh, bank: StyleBank, extractor: FeatureExtractor,
                 palette: torch.Tensor | None, config: RestyleConfig, device: torch.device | str,
                 generator: torch.Generator, gram: GramTerm | None = None,
                 swd: SlicedWassersteinTerm | None = None, spectrum: SpectrumTerm | None = None):
        self.config = config
        self.spectrum = spectrum
        self.gram = gram
        self.texture_generator = torch.Generator().manual_seed(config.texture.seed + 1)
        self.swd = swd
        self.device = torch.device(device)
        self.generator = generator
        self.bank = bank
        self.extractor = extractor
        self.palette = palette.to(self.device) if palette is not None else None
        normalised, _ = normalize_to_unit_sphere(prepared.mesh)
        self.vertices = torch.as_tensor(normalised.vertices, device=self.device)
        self.faces = torch.as_tensor(normalised.faces, device=self.device)
        self.uv = torch.as_tensor(normalised.uv, dtype=torch.float32, device=self.device)
        base = torch.as_tensor(prepared.base, device=self.device)[None].permute(0, 3, 1, 2)
        size = config.texture_size
        if base.shape[-2:] != (size, size):  # optimise at the style texture's size; export at the base's
            base = F.interpolate(base, size=(size, size), mode="bilinear", align_corners=False,
                                 antialias=base.shape[-1] > size)
        self.base = base[0].permute(1, 2, 0).contiguous()
        # The style texture as a sum of levels at halving sizes (one level: the paper's single texture). Adam
        # moves every parameter by about the learning rate whatever its gradient's size, so a full-size texture
        # alone drifts texel by texel into noise; coarse levels move whole areas together and patterns form.
        self.levels = [torch.zeros(max(size >> i, 1), max(size >> i, 1), 3, device=self.device, requires_grad=True)
                       for i in range(config.style_levels)]
        self.level_weights = None
        if config.density_levels and config.style_levels > 1 and uv_in_unit_square(normalised.uv):
            density = pixels_per_unit(config.render_size, config.fov_deg, config.pattern_scale)
            self.level_weights = level_weights(normalised.vertices, normalised.faces, normalised.uv, size,
                                               config.style_levels, density, self.device)
        self.optimizer = torch.optim.Adam(self.levels, lr=config.learning_rate)
        end, steps = config.learning_rate_end, max(config.steps - 1, 1)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda i: end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * min(i, steps) / steps)))
        render_config = RenderConfig(size=config.render_size, background=tuple(config.background),
                                     rasterizer=RasterizerConfig(implementation=config.renderer))
        self.renderer = MeshRenderer(render_config, self.device)

    @property
    def style(self) -> torch.Tensor:
        """[T, T, 3] the style texture: the sum of its levels, each upsampled (bilinear) to T and weighted per
        texel by `level_weights` when set."""
        size = self.config.texture_size
        total = None
        for index, level in enumerate(self.levels):
            if index:
                level = F.interpolate(level.permute(2, 0, 1)[None], size=(size, size), mode="bilinear",
                                      align_corners=False)[0].permute(1, 2, 0)
            if self.level_weights is not None:
                level = level * self.level_weights[index]
            total = level if total is None else total + level
        return total

    def texture(self) -> torch.Tensor:
        """[T, T, 3] the combined texture clamp(base + style, 0, 1) (differentiable w.r.t. the style; see
        `ReturningClamp` for the gradient of clamped texels)."""
        return ReturningClamp.apply(self.base + self.style)

    def views(self) -> tuple[Cameras, torch.Tensor]:
        return random_views(self.config.batch, self.config, self.generator, self.device)

    def render(self, texture: torch.Tensor, cameras: Cameras, lights: torch.Tensor, shade: bool = True):
        """[B, 3, H, W] views of the mesh with `texture`, and [B, 1, H, W] coverage."""
        out = self.renderer.render(self.vertices, self.faces, cameras, uv=self.uv, texture=texture,
                                   lights=lights, shade=shade)
        return out.image.permute(0, 3, 1, 2), out.alpha.permute(0, 3, 1, 2)

    def losses(self, images: torch.Tensor, features: list[torch.Tensor], reference: list[torch.Tensor],
               unlit: torch.Tensor | None, alpha: torch.Tensor, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        """The weighted objective and its parts (unweighted) as floats."""
        cfg = self.config
        style = torch.stack([nnfm_loss(f, bank, cfg.nn_chunk) for f, bank in zip(features, self.bank.features)]).mean()
        content = content_loss(features, reference)
        total = cfg.style_weight * style + cfg.content_weight * content
        metrics = {"loss_style": float(style.detach()), "loss_content": float(content.detach())}
        if self.gram is not None or self.swd is not None:
            # On the unlit render: the pattern lives in the albedo, and the style image has no shading.
            source = unlit if unlit is not None else images
            samples = (self.gram or self.swd).features.sample(source, alpha, TERM_SAMPLES, self.texture_generator)
            if self.gram is not None:
                gram = self.gram.of_samples(samples)
                total = total + cfg.texture.gram_weight * gram
                metrics["loss_gram"] = float(gram.detach())
            if self.swd is not None:
                swd = self.swd.of_samples(samples)
                total = total + cfg.texture.swd_weight * swd
                metrics["loss_swd"] = float(swd.detach())
        if self.spectrum is not None:
            spectrum = self.spectrum(unlit if unlit is not None else images, alpha)
            total = total + cfg.texture.spectrum_weight * spectrum
            metrics["loss_spectrum"] = float(spectrum.detach())
        if unlit is not None and self.palette is not None:
            weight = palette_weight(step, cfg.steps, cfg.palette_weight, cfg.palette_end_fraction)
            colours = unlit.permute(0, 2, 3, 1)
            palette = nearest_palette_distance(colours, self.palette, weights=alpha[:, 0], squared=True)
            total = total + weight * palette
            metrics.update(loss_palette=float(palette.detach()), palette_weight=weight)
        metrics["loss"] = float(total.detach())
        return total, metrics

    @property
    def palette_term(self) -> bool:
        return self.palette is not None and self.config.palette_weight > 0

    def step(self, step: int, lap: Callable[[str], None] = lambda phase: None) -> StepOutput:
        """One optimisation step at index `step` (0-based); `lap(phase)` is called as each phase ends ("render",
        "features", "losses", "backward", "update": the benchmark's clock)."""
        self.optimizer.zero_grad(set_to_none=True)
        cameras, lights = self.views()
        texture = self.texture()
        # One rasterization for the lit render, the original's (content features) and the unlit one (colour and
        # texture terms): only the texture lookup and the shading differ.
        wanted = [(texture, True), (self.base, True)]
        unlit_needed = self.palette_term or self.gram or self.swd or self.spectrum
        if unlit_needed:  # its terms read eroded coverage or weigh by the lit alpha: no silhouette blend needed
            wanted.append((texture, False, False))
        outputs = self.renderer.render_textures(self.vertices, self.faces, cameras, self.uv, wanted, lights=lights)
        images, alpha = outputs[0].image.permute(0, 3, 1, 2), outputs[0].alpha.permute(0, 3, 1, 2)
        original = outputs[1].image.permute(0, 3, 1, 2)
        unlit = outputs[2].image.permute(0, 3, 1, 2) if unlit_needed else None
        lap("render")
        with torch.no_grad():
            reference = self.extractor(original)
        features = self.extractor(images)
        lap("features")
        loss, metrics = self.losses(images, features, reference, unlit, alpha, step)
        metrics["learning_rate"] = float(self.optimizer.param_groups[0]["lr"])
        lap("losses")
        loss.backward()
        lap("backward")
        self.optimizer.step()
        self.scheduler.step()
        lap("update")
        return StepOutput(loss=metrics["loss"], metrics=metrics, front=images[0].detach().permute(1, 2, 0))

    @torch.no_grad()
    def neighbour_share(self, cameras: Cameras, lights: torch.Tensor) -> list[float]:
        """The fraction of the render's features (all layers) whose nearest style feature comes from each
        style image, on views given by the caller (e.g. held-out ones)."""
        images, _ = self.render(self.texture(), cameras, lights)
        counts = torch.zeros(self.bank.count, dtype=torch.float64)
        for layer, features in enumerate(self.extractor(images)):
            queries = features.permute(0, 2, 3, 1).reshape(-1, features.shape[1])
            index, _ = nearest_neighbours(queries, self.bank.features[layer], self.config.nn_chunk)
            counts += torch.bincount(self.bank.sources[layer][index].cpu(), minlength=self.bank.count).double()
        return (counts / counts.sum()).tolist()


def restyle(mesh: Mesh, style_images: Sequence[np.ndarray], clip, config: RestyleConfig | None = None, *,
            palette: np.ndarray | None = None, use_palette: bool = True, device: torch.device | str = "cpu",
            progress: ProgressFn = no_progress, cancel: CancelToken | None = None,
            generator: torch.Generator | None = None,
            on_preview: Callable[[int, np.ndarray], None] | None = None) -> RestyleResult:
    """Restyles the texture of `mesh` after `style_images` (NNFM on CLIP or VGG features).

    mesh: a triangle mesh (glTF frame, any scale); style_images: 1-16 arrays [H, W, 3|4] float in [0, 1]
    (`backend.images.load_image`); clip: a `ClipModel` (used when config.features.extractor is "clip", may be
    None for VGG), or a function that loads it, called once the mesh, images and settings are checked; palette: [K, 3] display RGB in [0, 1], or None to extract `palette_colors` from the style
    images (k-means) when `use_palette`; generator: a CPU torch.Generator (default: seeded with config.seed).
    Calls progress(step, steps, loss=..., loss_style=..., loss_content=..., loss_palette=..., eta_s=...)
    after every step and on_preview(step, front view uint8) every config.preview_every steps and at the end.
    Raises InvalidInputError for an unusable mesh, style image list or setting; JobCancelled when cancelled.
    """
    config = config or RestyleConfig()
    config.check()
    prepared = prepare_mesh(mesh, config)
    device = torch.device(device)
    if generator is None:
        generator = torch.Generator().manual_seed(config.seed)
    styles = style_tensors(style_images, config.style_size or config.render_size, device)
    palette_source: Literal["user", "auto", "none"] = "none"
    if use_palette and config.palette_weight > 0:
        if palette is None:
            pixels = [s[0].permute(1, 2, 0).cpu().numpy() for s in styles]
            palette = extract_palette(pixels, config.palette_colors, seed=config.seed)
            palette_source = "auto"
        else:
            palette_source = "user"
    palette_tensor = torch.as_tensor(np.asarray(palette, dtype=np.float32)) if palette_source != "none" else None
    if callable(clip):
        clip = clip()
    run = build_run(prepared, styles, clip, palette_tensor, config, device, generator)

    parts: list[dict[str, float]] = []

    def step(index: int) -> StepOutput:
        out = run.step(index)
        parts[:] = [parts[0] if parts else out.metrics, out.metrics]
        return out

    losses, seconds = optimise(config.steps, step, progress=progress, cancel=cancel, on_preview=on_preview,
                               preview_every=config.preview_every)
    share = run.neighbour_share(*random_views(min(config.batch, 4), config, generator, device))
    return finish(run, prepared, losses, parts, palette_tensor, palette_source, share, run.extractor.name,
                  seconds)


def build_run(prepared: PreparedMesh, styles: list[torch.Tensor], clip, palette: torch.Tensor | None,
              config: RestyleConfig, device: torch.device | str, generator: torch.Generator) -> RestyleRun:
    """The optimisation `restyle` runs: the feature network (plus the random texture features when the config's
    texture term matches them), the texture terms, and the style bank of `styles` ([1, 3, h, w] tensors)."""
    extractor = make_extractor(config.features, clip, device)
    gram = swd = spectrum = None
    if config.texture.mode != "off":
        random_features = RandomTextureFeatures(config.texture, device)
        if config.texture.matches:
            extractor = CombinedFeatures(extractor, random_features)
        if config.texture.grams:
            gram = GramTerm(random_features, styles)
        if config.texture.sliced:
            swd = SlicedWassersteinTerm(random_features, styles)
        if config.texture.spectrum_weight > 0:
            spectrum = SpectrumTerm(styles)
    bank = build_style_bank(extractor, styles)
    return RestyleRun(prepared, bank, extractor, palette, config, device, generator, gram, swd, spectrum)


def finish(run: RestyleRun, prepared: PreparedMesh, losses: list[float], parts: list[dict[str, float]],
           palette: torch.Tensor | None, palette_source: str, share: list[float], extractor: str,
           seconds: float) -> RestyleResult:
    """The result of a finished run: the style texture upsampled onto the base at the base's own size."""
    style = run.style.detach()
    base = torch.as_tensor(prepared.base, device=style.device)
    if base.shape[:2] != style.shape[:2]:
        up = F.interpolate(style.permute(2, 0, 1)[None], size=tuple(base.shape[:2]), mode="bilinear",
                           align_corners=False)[0].permute(1, 2, 0)
    else:
        up = style
    combined = (base + up).clamp(0.0, 1.0)
    as_bytes = lambda t: (t.clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()  # noqa: E731
    return RestyleResult(
        mesh=prepared.mesh, base_texture=as_bytes(base), style_texture=style.clamp(-1, 1).cpu().numpy(),
        combined_texture=as_bytes(combined), losses=losses, metrics_first=parts[0], metrics_last=parts[-1],
        palette=None if palette is None else palette.cpu().numpy(), palette_source=palette_source,  # type: ignore[arg-type]
        neighbour_share=share, base_source=prepared.base_source, unwrapped=prepared.unwrapped,
        extractor=extractor, seconds=seconds)

