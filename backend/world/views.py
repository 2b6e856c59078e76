"""Images of world shapes, in memory and batched: shaded renders, sketches, and "photos" with masks.

All three take a `torch.Generator` for every random choice (viewpoint, light, stroke damage,
background, distractors), so a (shape, generator seed) pair always gives the same pixels on one
device. Shapes are normalised to the unit sphere before rendering; images are top row first,
float32 in [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from backend.geometry.mesh import Mesh
from backend.render.camera import Cameras, fit_distance, orbit_cameras
from backend.render.views import (SketchConfig, line_drawings, shaded_images, uniform_draws, unit_drawable,
                                  view_renderer)
from backend.world.appearance import COLOURS
from backend.world.families import FAMILIES
from backend.world.parts import assemble, box, cylinder, ellipsoid, torus
from backend.world.shape import WorldShape, make_shape


@dataclass
class ViewConfig:
    """How random viewpoints and lights are drawn (the shape is normalised to the unit sphere)."""

    azimuth_range: tuple[float, float] = (-100.0, 100.0)
    """Camera azimuth in degrees (0 looks at the front, +Z), drawn uniformly; front-biased so
    backs of shelves and beds do not dominate."""
    elevation_range: tuple[float, float] = (5.0, 45.0)
    """Camera elevation in degrees above the horizon, drawn uniformly."""
    distance_scale: tuple[float, float] = (1.0, 1.2)
    """Camera distance as a multiple of the distance at which the unit sphere fills the view."""
    fov_deg: float = 40.0
    """Vertical field of view in degrees."""
    light_azimuth: tuple[float, float] = (-70.0, 70.0)
    """Point-light azimuth relative to the camera's, in degrees."""
    light_elevation: tuple[float, float] = (20.0, 75.0)
    """Point-light elevation in degrees."""
    light_distance: float = 6.0
    """Point-light distance from the origin (far enough to light the whole shape evenly)."""
    exposure: tuple[float, float] = (0.92, 1.08)
    """Brightness factor applied to each view, drawn uniformly."""
    ambient: float = 0.45
    """Ambient light (the rest of the light, 1 - ambient, is the diffuse point light)."""


@dataclass
class PhotoConfig:
    """A "photo": the shape over a cluttered background, with distractor objects around it."""

    distance_scale: tuple[float, float] = (1.25, 1.7)
    """Camera distance as a multiple of the distance that fits the target's unit sphere (room for clutter)."""
    distractors: tuple[int, int] = (1, 3)
    """How many distractor objects, inclusive range."""
    shape_distractor_fraction: float = 0.5
    """Probability that a distractor is a shape of another family (else a primitive)."""
    distractor_radius: tuple[float, float] = (0.35, 0.8)
    """Distractor bounding radius relative to the target's (1)."""
    min_visible: float = 0.6
    """Distractors that hide more than 1 - min_visible of the target are removed, nearest first."""
    view: ViewConfig = field(default_factory=ViewConfig)
    """Angles, light and exposure (its distance_scale is replaced by this config's)."""


@dataclass
class Photo:
    """One photo of a target shape and what is true about its pixels."""

    image: torch.Tensor
    """[H, W, 3] float32 in [0, 1], top row first."""
    mask: torch.Tensor
    """[H, W] bool: pixels where the target is what is seen (its composited weight > 0.5)."""
    target_alpha: torch.Tensor
    """[H, W] float32 coverage of the target rendered alone from the same camera."""
    visible_fraction: float
    """mask pixels / pixels the target alone would cover (1.0 when nothing occludes it)."""
    distractors: list[str]
    """What the kept distractors are ("chair", "sphere", ...)."""


def _check_shape(shape: WorldShape) -> None:
    if not isinstance(shape, WorldShape):
        raise TypeError(f"expected a WorldShape from make_shape(...), got {type(shape).__name__}")
    if shape.mesh.uv is None or shape.mesh.texture is None:
        raise ValueError("the shape's mesh has no UVs or texture; build it with make_shape(...)")


def _cameras_and_lights(count: int, config: ViewConfig, distance_scale: tuple[float, float],
                        generator: torch.Generator | None, device) -> tuple[Cameras, torch.Tensor, torch.Tensor]:
    azimuth = uniform_draws(count, config.azimuth_range, generator)
    elevation = uniform_draws(count, config.elevation_range, generator)
    distance = uniform_draws(count, distance_scale, generator) * fit_distance(config.fov_deg)
    light_az = torch.deg2rad(azimuth + uniform_draws(count, config.light_azimuth, generator))
    light_el = torch.deg2rad(uniform_draws(count, config.light_elevation, generator))
    exposure = uniform_draws(count, config.exposure, generator)
    cameras = orbit_cameras(azimuth, elevation, distance, config.fov_deg, device=device)
    lights = config.light_distance * torch.stack(
        [torch.cos(light_el) * torch.sin(light_az), torch.sin(light_el), torch.cos(light_el) * torch.cos(light_az)], -1)
    return cameras, lights.to(device), exposure.to(device)


def _check_size(count: int, size: int) -> None:
    if int(count) < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    if int(size) < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}")


@torch.no_grad()
def render_views(shape: WorldShape, count: int, size: int = 64, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu", config: ViewConfig | None = None) -> torch.Tensor:
    """Shaded renders from random viewpoints with a random light, over white.

    Returns [count, size, size, 3] float32 in [0, 1] on `device`, top row first.
    """
    _check_shape(shape)
    _check_size(count, size)
    config = config or ViewConfig()
    dev = torch.device(device)
    cameras, lights, exposure = _cameras_and_lights(count, config, config.distance_scale, generator, dev)
    return shaded_images(shape.mesh, cameras, lights, int(size), dev, config.ambient, exposure)


@torch.no_grad()
def render_sketches(shape: WorldShape, count: int, size: int = 64, generator: torch.Generator | None = None,
                    device: torch.device | str = "cpu", config: SketchConfig | None = None,
                    view: ViewConfig | None = None) -> torch.Tensor:
    """Line drawings from random viewpoints: contours and creases, jittered, with dropped strokes and varied widths.

    Returns [count, size, size] float32 in [0, 1], 1 = paper, 0 = full ink, top row first.
    """
    _check_shape(shape)
    return sketch_mesh(shape.mesh, count, size, generator, device, config, view)


@torch.no_grad()
def sketch_mesh(mesh: Mesh, count: int, size: int = 64, generator: torch.Generator | None = None,
                device: torch.device | str = "cpu", config: SketchConfig | None = None,
                view: ViewConfig | None = None) -> torch.Tensor:
    """`render_sketches` of any mesh (a library file's): line drawings from random viewpoints, roughened."""
    _check_size(count, size)
    view = view or ViewConfig()
    dev = torch.device(device)
    cameras, _, _ = _cameras_and_lights(count, view, view.distance_scale, generator, dev)
    return line_drawings(mesh, cameras, int(size), generator, dev, config)


def random_background(size: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """A cluttered background: a gradient, low-frequency colour noise, soft and hard blobs, grain.

    Returns [size, size, 3] float32 in [0, 1].
    """
    rand = lambda *shape: torch.rand(*shape, generator=generator)  # noqa: E731
    lin = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    y, x = torch.meshgrid(lin, lin, indexing="ij")
    angle = float(rand(1)) * 2 * math.pi
    t = (x - 0.5) * math.cos(angle) + (y - 0.5) * math.sin(angle) + 0.5
    c1, c2 = rand(3), rand(3)
    image = c1 * (1 - t[..., None]) + c2 * t[..., None]
    cells = int(2 + 4 * float(rand(1)))
    noise = F.interpolate(rand(1, 3, cells, cells) - 0.5, size=(size, size), mode="bicubic", align_corners=False)
    image = image + 0.35 * noise[0].permute(1, 2, 0)
    for _ in range(int(3 + 6 * float(rand(1)))):
        cx, cy, rx, ry = rand(4)
        rx, ry = 0.05 + 0.3 * rx, 0.05 + 0.3 * ry
        d = ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2
        weight = torch.exp(-d) if float(rand(1)) < 0.5 else (d < 1).float()
        image = image + (rand(3) - image) * (weight * (0.4 + 0.5 * float(rand(1))))[..., None]
    image = image + 0.03 * torch.randn(size, size, 3, generator=generator)
    return image.clamp(0, 1).to(device)


_PRIMITIVES = ("sphere", "box", "cylinder", "torus", "cone")


def _primitive(kind: str, rgb: tuple[int, int, int], rng: np.random.Generator) -> Mesh:
    """A plain-coloured primitive distractor mesh (flat texture)."""
    s = rng.uniform(0.6, 1.4, size=3)
    part = {
        "sphere": lambda: ellipsoid((0, 0, 0), s * 0.5, 24, 12),
        "box": lambda: box((0, 0, 0), s),
        "cylinder": lambda: cylinder((0, 0, 0), 0.4 * s[0], s[1], 24),
        "torus": lambda: torus((0, 0, 0), 0.5, 0.1 + 0.15 * s[2] / 1.4, 24, 12),
        "cone": lambda: cylinder((0, 0, 0), 0.45 * s[0], s[1], 24, top_radius=0.0),
    }[kind]()
    joined = assemble([part], 1.0)
    texture = np.broadcast_to(np.array(rgb, dtype=np.uint8), (4, 4, 3)).copy()
    return Mesh(joined.vertices, joined.faces, joined.uv, texture=texture, name=kind,
                metadata={"normals": joined.normals})


def _depth(out, eye: torch.Tensor) -> torch.Tensor:
    """[H, W] distance from the eye to the visible surface, +inf off the object, dilated by one pixel
    so antialiased edge pixels have a depth too."""
    covered = out.face_id[0] >= 0
    d = (out.position[0] - eye.view(1, 1, 3)).norm(dim=-1)
    d = torch.where(covered, d, torch.full_like(d, float("inf")))
    return -F.max_pool2d(-d[None, None], 3, stride=1, padding=1)[0, 0]


@torch.no_grad()
def render_photo(shape: WorldShape, size: int = 64, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu", config: PhotoConfig | None = None) -> Photo:
    """The shape over a random cluttered background with distractors, and the mask of its visible pixels.

    Each object is rendered alone with the same camera and light, then composited per pixel in depth
    order; the mask is where the target's composited weight exceeds 0.5, so it is exact with
    respect to occlusion by distractors. Distractors (other families' shapes or primitives) never
    intersect the target and are removed, nearest first, while they hide more than
    1 - config.min_visible of it.
    """
    _check_shape(shape)
    _check_size(1, size)
    config = config or PhotoConfig()
    renderer = view_renderer(int(size), str(torch.device(device)), config.view.ambient, (0.0, 0.0, 0.0))
    dev = renderer.device
    cameras, lights, exposure = _cameras_and_lights(1, config.view, config.distance_scale, generator, dev)
    eye = cameras.eye[0]
    background = random_background(int(size), generator, dev)

    # Distractors: positions in the camera's frame, outside the target's unit sphere.
    forward = -eye / eye.norm()
    right = torch.linalg.cross(forward, torch.tensor([0.0, 1.0, 0.0], device=dev))
    right = right / right.norm()
    up = torch.linalg.cross(right, forward)
    low, high = config.distractors
    count = int(low + torch.randint(0, high - low + 1, (1,), generator=generator))
    objects = [(unit_drawable(shape.mesh, dev), "target")]
    others = [c for c in FAMILIES if c != shape.category]
    for _ in range(count):
        u = torch.rand(8, generator=generator)
        radius = config.distractor_radius[0] + (config.distractor_radius[1] - config.distractor_radius[0]) * float(u[0])
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        if float(u[1]) < config.shape_distractor_fraction:
            other = make_shape(seed, others[int(u[2] * len(others)) % len(others)])
            mesh, name = other.mesh, other.category
        else:
            name = _PRIMITIVES[int(u[2] * len(_PRIMITIVES)) % len(_PRIMITIVES)]
            colour = list(COLOURS.values())[int(u[3] * len(COLOURS)) % len(COLOURS)]
            mesh = _primitive(name, colour, np.random.default_rng(seed))
        angle = float(u[4]) * 2 * math.pi
        lateral = 0.4 + 1.1 * float(u[5])
        along = -1.5 + 3.5 * float(u[6])  # along the view direction: in front of the target to well behind
        position = (right * math.cos(angle) + up * math.sin(angle)) * lateral + forward * along
        gap = 1.0 + radius + 0.05
        if position.norm() < gap:  # never intersect the target
            position = position / position.norm().clamp(min=1e-6) * gap
        objects.append((unit_drawable(mesh, dev).placed(radius, position, float(u[7]) * 360.0), name))

    layers = []
    for drawable, _ in objects:
        out = renderer.render(cameras=cameras, lights=lights, **drawable.kwargs())
        colour = (out.image[0] * exposure[0]).clamp(0, 1)  # premultiplied: rendered over black
        layers.append((colour, out.alpha[0, ..., 0], _depth(out, eye)))

    target_alpha = layers[0][1]
    target_area = float((target_alpha > 0.5).sum())
    keep = list(range(len(layers)))
    while True:
        image, weight = _composite([layers[k] for k in keep], background)
        visible = float((weight > 0.5).sum()) / max(target_area, 1.0)
        if visible >= config.min_visible or len(keep) == 1:
            break
        # Remove the distractor nearest to the camera over the target's pixels.
        over = target_alpha > 0.5
        nearest = min(keep[1:], key=lambda k: float(layers[k][2][over].min()) if over.any() else math.inf)
        keep.remove(nearest)
    return Photo(image=image, mask=weight > 0.5, target_alpha=target_alpha, visible_fraction=min(visible, 1.0),
                 distractors=[objects[k][1] for k in keep[1:]])


def _composite(layers: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
               background: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Front-to-back "over" of premultiplied layers sorted per pixel by depth.

    layers: [(colour [H, W, 3] premultiplied, alpha [H, W], depth [H, W])], the first is the target.
    Returns (image [H, W, 3], the target's weight in the result [H, W]).
    """
    colour = torch.stack([c for c, _, _ in layers])  # [K, H, W, 3]
    alpha = torch.stack([a for _, a, _ in layers])  # [K, H, W]
    depth = torch.stack([d for _, _, d in layers])
    order = torch.argsort(depth, dim=0, stable=True)
    colour = torch.gather(colour, 0, order[..., None].expand_as(colour))
    alpha = torch.gather(alpha, 0, order)
    image = torch.zeros_like(background)
    through = torch.ones_like(alpha[0])
    target_weight = torch.zeros_like(alpha[0])
    for k in range(len(layers)):
        image = image + through[..., None] * colour[k]
        target_weight = torch.where(order[k] == 0, through * alpha[k], target_weight)
        through = through * (1 - alpha[k])
    return (image + through[..., None] * background).clamp(0, 1), target_weight
