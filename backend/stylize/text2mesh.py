"""Text2Mesh (Michel et al., CVPR 2022): a neural style field colours and displaces a mesh until CLIP
finds its renders close to a text prompt.

The style field maps each vertex position p (in the unit sphere) through random Fourier features
[p, sin(2 pi B p), cos(2 pi B p)], B ~ N(0, sigma^2), switched on low frequency first (progressive
encoding), to an MLP trunk with two heads: a colour, base grey + 0.5 tanh (so colours stay in [0, 1] and
start grey), and a displacement d = 0.1 tanh along the vertex normal (bounded by 10% of the radius).
Each step renders the displaced, coloured mesh from a front view plus random views around it, applies
one global augmentation (random perspective) and several local ones (10%-area crops + perspective),
and minimises the negative cosine between the mean CLIP embedding of the views and the prompt's.
A second render with the colours held grey (the geometry-only term) makes the displacement carry the
style on its own. Defaults are the paper's demo settings (`demo/run_*.sh` of the authors' code).

All randomness (network init, Fourier matrix, views, augmentations) comes from one torch.Generator,
so a seed reproduces a run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Callable, Literal

import numpy as np
import torch
import torch.nn as nn

from backend.errors import InvalidInputError
from backend.geometry.color import linear_to_srgb, srgb_to_linear
from backend.geometry.mesh import Mesh
from backend.geometry.normalize import normalize_to_unit_sphere
from backend.geometry.validate import validate_mesh
from backend.progress import CancelToken, ProgressFn, no_progress
from backend.render.camera import Cameras, fit_distance, orbit_cameras
from backend.render.rasterizer import RasterizerConfig
from backend.render.renderer import MeshRenderer, RenderConfig
from backend.stylize.augment import AugmentConfig, augment
from backend.stylize.loop import StepOutput, optimise
from backend.stylize.losses import Average, check_prompt, clip_scores, cosine_loss, encode_prompts
from backend.stylize.surface import WeldedSurface, check_size, subdivide_to, weld
from shared_protocol.limits import MAX_JOB_STEPS

MAX_STEPS = MAX_JOB_STEPS
"""Most optimisation steps a run may ask for (a typo like 1500000 would otherwise run for days)."""

Quality = Literal["draft", "standard", "high"]


# ----------------------------------------------------------------------------------------------- configs


@dataclass(frozen=True)
class StyleFieldConfig:
    """The neural style field: Fourier features -> MLP trunk -> colour head and displacement head."""

    width: int = 256
    """Hidden width of every layer (the paper: 256)."""
    depth: int = 4
    """Hidden layers of the shared trunk after its input layer (the paper's `--depth`, default 4)."""
    color_depth: int = 2
    """Hidden layers of the colour head before its 3-channel output."""
    displacement_depth: int = 2
    """Hidden layers of the displacement head before its 1-channel output."""
    frequencies: int = 256
    """Fourier feature count: B is [input_dim, frequencies]; the encoding has input_dim + 2 * frequencies channels."""
    sigma: float = 5.0
    """Standard deviation of B's entries: higher gives finer, noisier detail (the demos use 5; people: 12)."""
    progressive_fraction: float = 0.06
    """Fraction of the run over which the Fourier bands are switched on, lowest frequency first (SAPE-style
    progressive encoding); 0 switches them all on from the start. The authors' code ramps band i over
    [i, i + 1] * 2 * frequencies / steps steps, i.e. all 256 bands after ~87 of 1500 steps: 0.06."""
    input_normals: bool = False
    """Also feed the vertex normal to the network (the authors' `--input_normals`; off in the demos)."""
    base_color: float = 0.5
    """Grey the colours start at and are bounded around (the paper's prior colour)."""
    color_range: float = 0.5
    """Colours are base_color + color_range * tanh(.): with 0.5 around 0.5 they span (0, 1)."""
    max_displacement: float = 0.1
    """Displacements are max_displacement * tanh(.) along the normal, in units of the mesh's bounding-sphere
    radius (the paper's `normratio`: 0.1)."""

    def __post_init__(self) -> None:
        for name in ("width", "frequencies"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("depth", "color_depth", "displacement_depth"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.progressive_fraction <= 1.0:
            raise ValueError(f"progressive_fraction must be in [0, 1], got {self.progressive_fraction}")
        if self.sigma <= 0 or self.max_displacement < 0:
            raise ValueError("sigma must be > 0 and max_displacement >= 0")
        if not (0.0 <= self.base_color - self.color_range and self.base_color + self.color_range <= 1.0):
            raise ValueError("base_color +- color_range must stay within [0, 1]")


@dataclass(frozen=True)
class Text2MeshConfig:
    """A Text2Mesh run. Defaults are the paper's demo settings; `preset()` gives cheaper variants."""

    steps: int = 1500
    """Optimisation steps (the demos: 1500)."""
    learning_rate: float = 5e-4
    """Adam learning rate (the demos: 0.0005)."""
    lr_decay: float = 0.9
    """The learning rate is multiplied by this every `lr_decay_every` of the run (the demos: 0.9)."""
    lr_decay_every: float = 100 / 1500
    """Fraction of the steps between learning-rate decays (the demos: every 100 of 1500 steps), so shorter
    runs decay as far overall."""
    views: int = 5
    """Views rendered per step: the front view plus views-1 random ones around it (the demos: 5)."""
    front_azimuth_deg: float = 0.0
    """Azimuth of the front view, degrees around +Y from +Z (glTF's front; Blender's -Y, numpad 1)."""
    front_elevation_deg: float = 36.0
    """Elevation of the front view above the horizon, degrees (the demos: 0.6283 rad)."""
    view_std: float = 4.0
    """Spread of the random views: elevation ~ N(front, (180 / view_std) deg), azimuth ~ N(front,
    (360 / view_std) deg) (the demos' `frontview_std` 4)."""
    camera_distance: float = 2.0
    """Camera distance from the centre, in bounding-sphere radii (the authors' renderer: 2)."""
    fov_deg: float = 60.0
    """Vertical field of view in degrees (the authors' renderer: pi / 3)."""
    render_size: int | None = None
    """Render side in pixels; None renders at the CLIP's input size (224 for ViT-B-32, as the paper)."""
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """Render background RGB in [0, 1] (the demos: white)."""
    global_augs: int = 1
    """Global augmentations (whole view, random perspective) of the coloured views per step (`n_augs`)."""
    local_augs: int = 4
    """Local augmentations (small crops + perspective) of the coloured views per step (`n_normaugs`)."""
    geometry_augs: int = 4
    """Local augmentations of the grey, geometry-only views per step (the `geoloss` term); 0 turns it off."""
    global_augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(crop_scale=(1.0, 1.0)))
    """The global augmentation: the whole view, warped by a random perspective (p 0.8, distortion 0.5)."""
    local_augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(crop_scale=(0.1, 0.1)))
    """The local augmentation: crops of 10% of the view's area (`normmincrop`/`normmaxcrop` 0.1) + perspective."""
    geometry_augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(crop_scale=(0.1, 0.1)))
    """The augmentation of the geometry-only views (the demos: the same 10% crops)."""
    average: Average = "view"
    """How views meet the prompt: "view" compares their mean embedding (the demos' `clipavg view`)."""
    network: StyleFieldConfig = field(default_factory=StyleFieldConfig)
    """The neural style field."""
    seed: int = 0
    """Seed of the run's generator when the caller passes none."""
    subdivide: bool = False
    """Subdivide meshes with fewer than `subdivide_min_vertices` vertices first (the user's choice: it
    changes the topology, so the result replaces the object instead of adding a shape key to it)."""
    subdivide_min_vertices: int = 10_000
    """Target vertex count for `subdivide` (each level splits every triangle into four)."""
    max_faces: int = 200_000
    """Meshes with more triangles are refused with a hint to decimate (CPU runs would take hours)."""
    preview_every: int = 25
    """Steps between preview images (the front view) handed to `on_preview`."""
    renderer: Literal["auto", "nvdiffrast", "torch"] = "auto"
    """Rasterizer implementation (see `RasterizerConfig`)."""

    def check(self) -> None:
        """Raises InvalidInputError naming the field and the fix for settings a run cannot use."""
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or not 1 <= self.steps <= MAX_STEPS:
            raise InvalidInputError(f"steps must be an integer in [1, {MAX_STEPS}], got {self.steps!r}",
                                    hint="use e.g. 200 for a draft and 1500 for the paper's quality")
        if self.views < 1:
            raise InvalidInputError(f"views must be >= 1, got {self.views}", hint="the paper uses 5")
        if self.global_augs < 0 or self.local_augs < 0 or self.geometry_augs < 0:
            raise InvalidInputError("augmentation counts must be >= 0",
                                    hint="the paper uses 1 global, 4 local, 4 geometry")
        if self.global_augs + self.local_augs == 0:
            raise InvalidInputError("at least one global or local augmentation of the coloured views is needed",
                                    hint="set global_augs=1 (the paper)")
        if self.learning_rate <= 0 or not 0 < self.lr_decay <= 1 or not 0 < self.lr_decay_every <= 1:
            raise InvalidInputError("learning_rate must be > 0, lr_decay in (0, 1], lr_decay_every in (0, 1]")
        if self.render_size is not None and not 16 <= self.render_size <= 2048:
            raise InvalidInputError(f"render_size must be in [16, 2048] pixels, got {self.render_size}")
        if self.preview_every < 1 or self.max_faces < 1 or self.subdivide_min_vertices < 1:
            raise InvalidInputError("preview_every, max_faces and subdivide_min_vertices must be >= 1")


QUALITY_PRESETS: dict[str, dict] = {
    "draft": {"steps": 150, "views": 3, "local_augs": 2, "geometry_augs": 2, "preview_every": 10,
              "network": StyleFieldConfig(width=128, frequencies=128)},
    "standard": {"steps": 500, "views": 5, "local_augs": 3, "geometry_augs": 3},
    "high": {},
}
"""Quality -> overrides of the paper's defaults. `high` is the paper (1500 steps, 5 views, 1 + 4 + 4
augmentations: 45 CLIP images per step); `standard` a third of the steps and 35 images per step;
`draft` a tenth of the steps, 3 views with 1 + 2 + 2 augmentations (15 images per step) and a half-width
style field (128 wide, 128 Fourier features: a quarter of the per-vertex cost, which dominates on a CPU
with a small CLIP)."""


def preset(quality: Quality = "standard", **overrides) -> Text2MeshConfig:
    """The config of a quality preset, with any field overridden (`steps=None` keeps the preset's)."""
    if quality not in QUALITY_PRESETS:
        raise InvalidInputError(f"unknown quality {quality!r}", hint=f"use one of {', '.join(QUALITY_PRESETS)}")
    names = {f.name for f in fields(Text2MeshConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"Text2MeshConfig has no field {unknown[0]!r}")
    values = {**QUALITY_PRESETS[quality], **{k: v for k, v in overrides.items() if v is not None}}
    return Text2MeshConfig(**values)


# ----------------------------------------------------------------------------------------------- network


def _seed_from(generator: torch.Generator) -> int:
    return int(torch.randint(0, 2**62, (1,), generator=generator).item())


class NeuralStyleField(nn.Module):
    """vertex positions (and optionally normals) -> (colour, displacement along the normal)."""

    def __init__(self, config: StyleFieldConfig, steps: int, generator: torch.Generator | None = None):
        super().__init__()
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.config = config
        self.steps = int(steps)
        input_dim = 6 if config.input_normals else 3
        # Columns sorted by frequency so progressive encoding switches low frequencies on first.
        basis = torch.randn(input_dim, config.frequencies, generator=generator) * config.sigma
        basis = basis[:, torch.argsort(basis.norm(dim=0))]
        self.register_buffer("basis", basis)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_seed_from(generator))  # layer init without touching the caller's global RNG
            width = config.width
            layers: list[nn.Module] = [nn.Linear(input_dim + 2 * config.frequencies, width), nn.ReLU()]
            for _ in range(config.depth):
                layers += [nn.Linear(width, width), nn.ReLU()]
            self.trunk = nn.Sequential(*layers)
            self.color_head = nn.Sequential(*self._head(width, config.color_depth, 3))
            self.displacement_head = nn.Sequential(*self._head(width, config.displacement_depth, 1))
        # Zero outputs at the start: the mesh begins grey and undisplaced (the authors' reset_weights).
        for head in (self.color_head, self.displacement_head):
            nn.init.zeros_(head[-1].weight)
            nn.init.zeros_(head[-1].bias)

    @staticmethod
    def _head(width: int, depth: int, out: int) -> list[nn.Module]:
        layers: list[nn.Module] = []
        for _ in range(depth):
            layers += [nn.Linear(width, width), nn.ReLU()]
        return layers + [nn.Linear(width, out)]

    def band_weights(self, step: int) -> torch.Tensor:
        """[frequencies] weights in [0, 1] of the Fourier bands at `step` (all ones without progression)."""
        count = self.config.frequencies
        ramp = self.config.progressive_fraction * self.steps / count  # steps per band
        if ramp <= 0:
            return torch.ones(count, device=self.basis.device)
        index = torch.arange(count, device=self.basis.device, dtype=torch.float32)
        return ((step - ramp * index) / ramp).clamp(0.0, 1.0)

    def encode(self, inputs: torch.Tensor, step: int | None = None) -> torch.Tensor:
        """inputs: [N, input_dim] -> [N, input_dim + 2 * frequencies] (bands weighted at `step`; None: all on)."""
        angles = 2.0 * math.pi * inputs @ self.basis
        features = torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)
        if step is not None:
            features = features * self.band_weights(step).repeat(2)
        return torch.cat([inputs, features], dim=-1)

    def forward(self, points: torch.Tensor, normals: torch.Tensor | None = None,
                step: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """points: [N, 3] float32 in the unit sphere; normals: [N, 3] unit (needed when `input_normals`);
        step: the optimisation step for progressive encoding (None: every band on).

        Returns (colors [N, 3] in [base - range, base + range], displacement [N] in [-max, max] along the normal).
        """
        inputs = points
        if self.config.input_normals:
            if normals is None:
                raise ValueError("this style field takes normals too (input_normals=True): pass normals [N, 3]")
            inputs = torch.cat([points, normals], dim=-1)
        hidden = self.trunk(self.encode(inputs, step))
        cfg = self.config
        colors = cfg.base_color + cfg.color_range * torch.tanh(self.color_head(hidden))
        displacement = cfg.max_displacement * torch.tanh(self.displacement_head(hidden)[:, 0])
        return colors, displacement


# ----------------------------------------------------------------------------------------------- views


def front_views(count: int, config: Text2MeshConfig, generator: torch.Generator | None = None,
                device: torch.device | str = "cpu") -> Cameras:
    """The front view plus count-1 views drawn around it (elevation and azimuth normal around the front)."""
    spread = torch.randn(2, max(count - 1, 0), generator=generator)
    elevation = torch.cat([torch.zeros(1), spread[0] * (180.0 / config.view_std)]) + config.front_elevation_deg
    azimuth = torch.cat([torch.zeros(1), spread[1] * (360.0 / config.view_std)]) + config.front_azimuth_deg
    return orbit_cameras(azimuth[:count], elevation[:count], config.camera_distance, config.fov_deg, device=device)


def held_out_cameras(count: int = 8, elevation_deg: float = 15.0, fov_deg: float = 40.0,
                     device: torch.device | str = "cpu") -> Cameras:
    """Fixed evaluation views a run never trains on: a turntable offset by half a step from the front,
    at another elevation, field of view and distance than `front_views`."""
    azimuth = (torch.arange(count, dtype=torch.float32) + 0.5) * (360.0 / count)
    return orbit_cameras(azimuth, torch.full((count,), elevation_deg), fit_distance(fov_deg) * 1.1, fov_deg,
                         device=device)


def _concat(a: Cameras, b: Cameras) -> Cameras:
    return Cameras(torch.cat([a.view, b.view]), torch.cat([a.proj, b.proj]), torch.cat([a.eye, b.eye]))


# ----------------------------------------------------------------------------------------------- the run


class Text2MeshRun:
    """One optimisation on a welded, unit-sphere surface. `stylize` drives it; the benchmark times its phases:
    `predict` + `render` (render), `objective` (CLIP forward), backward, `update` (optimiser)."""

    def __init__(self, surface: WeldedSurface, text: torch.Tensor, clip, config: Text2MeshConfig,
                 device: torch.device | str, generator: torch.Generator):
        self.config = config
        self.clip = clip
        self.device = torch.device(device)
        self.generator = generator
        self.text = text.to(self.device)
        self.field = NeuralStyleField(config.network, config.steps, generator).to(self.device)
        self.optimizer = torch.optim.Adam(self.field.parameters(), lr=config.learning_rate)
        decay_every = max(1, round(config.lr_decay_every * config.steps))
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=decay_every, gamma=config.lr_decay)
        size = int(config.render_size or clip.image_size)
        render_config = RenderConfig(size=size, background=tuple(config.background),
                                     rasterizer=RasterizerConfig(implementation=config.renderer))
        self.renderer = MeshRenderer(render_config, self.device)
        self.vertices = torch.as_tensor(surface.vertices, device=self.device)
        self.faces = torch.as_tensor(surface.faces, device=self.device)
        self.normals = torch.as_tensor(surface.normals, device=self.device)
        grey = config.network.base_color
        self.grey = torch.full_like(self.vertices, grey)

    @property
    def geometry_term(self) -> bool:
        return self.config.geometry_augs > 0

    def predict(self, step: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(colors [M, 3] in [0, 1], offsets [M] along the normals) of the welded vertices at `step`."""
        return self.field(self.vertices, self.normals, step)

    def render(self, colors: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """Renders the displaced mesh: [B, 3, H, W] coloured views, then (with the geometry term) [B, 3, H, W]
        grey ones from independently drawn views; B = config.views, the first of each set the front view."""
        cfg = self.config
        count = cfg.views
        cameras = front_views(count, cfg, self.generator, self.device)
        colour_sets = [colors.expand(count, -1, -1)]
        if self.geometry_term:
            cameras = _concat(cameras, front_views(count, cfg, self.generator, self.device))
            colour_sets.append(self.grey.expand(count, -1, -1))
        displaced = self.vertices + self.normals * offsets[:, None]
        out = self.renderer.render(displaced, self.faces, cameras, vertex_colors=torch.cat(colour_sets))
        return out.image.permute(0, 3, 1, 2)

    def objective(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """images: from `render`. Augments, embeds every augmented view in one CLIP batch, and returns
        (the loss to minimise, its parts as floats)."""
        cfg = self.config
        count, size = cfg.views, self.clip.image_size
        coloured = images[:count]
        batches, names = [], []
        for name, source, aug, repeats in (("loss_global", coloured, cfg.global_augment, cfg.global_augs),
                                           ("loss_local", coloured, cfg.local_augment, cfg.local_augs),
                                           ("loss_geometry", images[count:], cfg.geometry_augment,
                                            cfg.geometry_augs if self.geometry_term else 0)):
            if repeats > 0:
                batches.append(augment(source, aug, size, repeats, self.generator))
                names += [name] * repeats
        embeddings = self.clip.encode_image(torch.cat(batches), normalize=False)
        per_group = cosine_loss(embeddings.view(len(names), count, -1), self.text, cfg.average)
        loss = per_group.mean()
        values = per_group.detach().cpu().tolist()
        metrics = {"loss": float(loss.detach())}
        for name in dict.fromkeys(names):
            parts = [v for n, v in zip(names, values) if n == name]
            metrics[name] = sum(parts) / len(parts)
        return loss, metrics

    def update(self) -> None:
        """One optimiser step and learning-rate schedule step (after `backward`)."""
        self.optimizer.step()
        self.scheduler.step()

    def step(self, step: int) -> StepOutput:
        """One full optimisation step at index `step` (0-based)."""
        self.optimizer.zero_grad(set_to_none=True)
        colors, offsets = self.predict(step)
        images = self.render(colors, offsets)
        loss, metrics = self.objective(images)
        loss.backward()
        self.update()
        return StepOutput(loss=metrics["loss"], metrics=metrics, front=images[0].detach().permute(1, 2, 0))

    @torch.no_grad()
    def final(self) -> tuple[np.ndarray, np.ndarray]:
        """(colors [M, 3], offsets [M]) float32 of the trained field with every band on."""
        colors, offsets = self.predict(self.config.steps)
        return colors.float().cpu().numpy(), offsets.float().cpu().numpy()


# ----------------------------------------------------------------------------------------------- results


@dataclass
class StylizeResult:
    """A finished run, per vertex of `mesh`, in the source mesh's own frame (normalisation undone)."""

    mesh: Mesh
    """The mesh the values belong to: the validated input (same rows, metadata kept), or its subdivision."""
    colors: np.ndarray
    """[N, 3] float32 linear RGB in [0, 1] (glTF COLOR_0 / Blender colour attribute convention). The network
    predicts display (sRGB-encoded) values because that is what CLIP saw; `display_colors` gives them back."""
    displacement: np.ndarray
    """[N, 3] float32 offsets in the source frame, along `directions`: mesh.vertices + displacement is the
    stylized shape (the morph target's deltas)."""
    directions: np.ndarray
    """[N, 3] float32 unit vertex normals of the welded surface, the direction each displacement is along."""
    max_displacement: float
    """The displacement bound in the source frame's units (StyleFieldConfig.max_displacement / scale)."""
    losses: list[float]
    """The objective at every step."""
    prompt: str
    """The (stripped) prompt."""
    seconds: float
    """Wall time of the optimisation loop."""
    subdivision_levels: int = 0
    """How many times `mesh` was subdivided from the input (0: rows are the input's vertices)."""

    @property
    def steps(self) -> int:
        return len(self.losses)

    @property
    def display_colors(self) -> np.ndarray:
        """[N, 3] float32 sRGB-encoded colours, as rendered during optimisation."""
        return linear_to_srgb(self.colors)

    @property
    def stylized_vertices(self) -> np.ndarray:
        """[N, 3] float32 displaced positions in the source frame."""
        return (self.mesh.vertices + self.displacement).astype(np.float32)


def stylize(mesh: Mesh, prompt: str, clip, config: Text2MeshConfig | None = None,
            device: torch.device | str = "cpu", progress: ProgressFn = no_progress,
            cancel: CancelToken | None = None, generator: torch.Generator | None = None, *,
            on_preview: Callable[[int, np.ndarray], None] | None = None) -> StylizeResult:
    """Stylizes `mesh` so that CLIP finds its renders close to `prompt` (Text2Mesh).

    mesh: a triangle mesh (glTF frame, any scale and place); prompt: 1-500 characters that fit the CLIP's
    context; clip: a `ClipModel` (`load_clip`), or a function that loads one, called once the mesh and the
    settings are checked (so bad input fails before a model loads); generator: a CPU torch.Generator (default: seeded with
    config.seed). Calls progress(step, steps, loss=..., loss_global=..., ..., eta_s=...) after every step,
    checks `cancel` before each, and calls on_preview(step, front view [H, W, 3] uint8) every
    config.preview_every steps and after the last.
    Raises InvalidInputError for an empty, non-finite, non-triangle or oversized mesh, an empty or
    too-long prompt, or unusable settings (steps <= 0, ...); JobCancelled when cancelled.
    """
    config = config or Text2MeshConfig()
    config.check()
    check_size(mesh, config.max_faces)
    mesh = validate_mesh(mesh, max_faces=config.max_faces)
    if callable(clip):
        clip = clip()
    text = check_prompt(prompt, clip.context_length, clip.tokenizer)
    levels = 0
    if config.subdivide:
        mesh, levels = subdivide_to(mesh, config.subdivide_min_vertices, config.max_faces)
    normalised, similarity = normalize_to_unit_sphere(mesh)
    surface = weld(normalised.vertices, normalised.faces)
    if generator is None:
        generator = torch.Generator().manual_seed(config.seed)
    run = Text2MeshRun(surface, encode_prompts(clip, [text]), clip, config, device, generator)

    losses, seconds = optimise(config.steps, run.step, progress=progress, cancel=cancel, on_preview=on_preview,
                               preview_every=config.preview_every)

    colors, offsets = run.final()
    inverse = surface.inverse
    directions = surface.normals[inverse]
    displacement = similarity.invert_vectors(directions * offsets[inverse, None])
    return StylizeResult(
        mesh=mesh,
        colors=srgb_to_linear(np.clip(colors[inverse], 0.0, 1.0)).astype(np.float32),
        displacement=displacement,
        directions=directions.astype(np.float32),
        max_displacement=float(config.network.max_displacement / similarity.scale),
        losses=losses,
        prompt=text,
        seconds=seconds,
        subdivision_levels=levels,
    )


@torch.no_grad()
def score_views(mesh: Mesh, prompt: str, clip, cameras: Cameras | None = None, *,
                colors: np.ndarray | None = None, displacement: np.ndarray | None = None,
                device: torch.device | str = "cpu", renderer: str = "auto") -> np.ndarray:
    """CLIP cosine similarity of plain (unaugmented) renders of a mesh to a prompt, per view.

    mesh: glTF frame, any scale (normalised here, by its undisplaced bounds); colors: [N, 3] linear in [0, 1]
    (None: Text2Mesh's starting grey); displacement: [N, 3] source-frame offsets (None: none);
    cameras: default `held_out_cameras()`. Returns [B] float32 cosines. For judging a result on views
    the optimisation never saw.
    """
    _, similarity = normalize_to_unit_sphere(mesh)
    vertices = mesh.vertices if displacement is None else mesh.vertices + displacement
    points = torch.as_tensor(similarity.apply(vertices), device=device)
    if colors is None:
        display = torch.full_like(points, StyleFieldConfig().base_color)
    else:
        display = torch.as_tensor(linear_to_srgb(np.asarray(colors, dtype=np.float32)), device=device)
    if cameras is None:
        cameras = held_out_cameras(device=device)
    render_config = RenderConfig(size=clip.image_size, rasterizer=RasterizerConfig(implementation=renderer))
    render = MeshRenderer(render_config, device)
    images = render.render(points, torch.as_tensor(mesh.faces, device=device), cameras, vertex_colors=display).image
    embeddings = clip.encode_image(images.permute(0, 3, 1, 2))
    text = encode_prompts(clip, [check_prompt(prompt)]).to(embeddings.device)
    return clip_scores(embeddings, text).float().cpu().numpy()
