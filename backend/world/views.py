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
from backend.geometry.normals import vertex_normals
from backend.render.camera import Cameras, fit_distance, orbit_cameras
from backend.render.lines import LineConfig, render_lines
from backend.render.renderer import MeshRenderer, RenderConfig
from backend.render.shading import ShadingConfig
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
class SketchConfig:
    """How line drawings are made from a render's depth and normal edges, then roughened."""

    supersample: int = 2
    """Lines are found at this multiple of the output size, then averaged down (grey antialiased strokes)."""
    crease_deg: float = 35.0
    """Neighbouring faces meeting at more than this angle draw a crease line."""
    depth_jump: float = 0.04
    """Depth discontinuity (fraction of the eye distance) that draws an occluding contour."""
    piece_px: float = 8.0
    """Strokes are cut into pieces by a randomly offset grid of this cell size (output pixels); each
    piece is a connected line component inside one cell."""
    drop_fraction: tuple[float, float] = (0.0, 0.25)
    """Fraction of stroke pieces removed per sketch, drawn uniformly."""
    width_px: tuple[float, float] = (0.5, 1.3)
    """Base stroke width in output pixels, drawn per sketch; some pieces are drawn one step thicker."""
    thick_fraction: float = 0.3
    """Fraction of pieces drawn thicker than the base width."""
    jitter_px: tuple[float, float] = (0.3, 1.2)
    """Amplitude of the smooth random warp, in output pixels, drawn per sketch."""
    jitter_cells: int = 5
    """The warp is a random displacement on this many grid cells across, smoothly interpolated."""
    ink: tuple[float, float] = (0.75, 1.0)
    """Ink darkness (1 = black), drawn per sketch."""


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


@dataclass
class _Drawable:
    """Render-ready tensors of a mesh normalised to the unit sphere (texture, vertex colours or neither)."""

    vertices: torch.Tensor  # [V, 3] float32
    faces: torch.Tensor  # [F, 3] int32
    normals: torch.Tensor  # [V, 3] float32
    uv: torch.Tensor | None = None  # [V, 2] float32, with texture
    texture: torch.Tensor | None = None  # [T, T, 3] float32 in [0, 1]
    vertex_colors: torch.Tensor | None = None  # [V, 3] float32 in [0, 1], when there is no texture

    def kwargs(self) -> dict:
        out = {"vertices": self.vertices, "faces": self.faces, "normals": self.normals}
        if self.texture is not None:
            out.update(uv=self.uv, texture=self.texture)
        elif self.vertex_colors is not None:
            out["vertex_colors"] = self.vertex_colors
        return out

    def placed(self, scale: float, offset: torch.Tensor, turn_deg: float) -> "_Drawable":
        """Scaled, turned about +Y and moved (a distractor in the photo's scene)."""
        a = math.radians(turn_deg)
        rot = torch.tensor([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]],
                           dtype=torch.float32, device=self.vertices.device)
        return _Drawable(self.vertices @ rot.T * scale + offset, self.faces, self.normals @ rot.T, self.uv,
                         self.texture, self.vertex_colors)


def _drawable(mesh: Mesh, device: torch.device | str) -> _Drawable:
    """Any `Mesh` normalised to the unit sphere (bounding-box centre, farthest vertex at 1). Shading normals
    come from metadata["normals"] when present (world shapes), else area-weighted vertex normals; a mesh
    with neither texture nor vertex colours renders in the renderer's default grey."""
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    low, high = vertices.min(axis=0), vertices.max(axis=0)
    centre = 0.5 * (low + high)
    radius = max(float(np.linalg.norm(vertices - centre, axis=1).max()), 1e-12)
    normals = mesh.metadata.get("normals")
    if normals is None:
        normals = vertex_normals(mesh.vertices, mesh.faces)
    drawable = _Drawable(
        vertices=torch.as_tensor(((vertices - centre) / radius).astype(np.float32), device=device),
        faces=torch.as_tensor(np.asarray(mesh.faces, dtype=np.int32), device=device),
        normals=torch.as_tensor(np.asarray(normals, dtype=np.float32), device=device),
    )
    if mesh.texture is not None and mesh.uv is not None:
        drawable.uv = torch.as_tensor(np.asarray(mesh.uv, dtype=np.float32), device=device)
        drawable.texture = torch.as_tensor(np.asarray(mesh.texture[..., :3], dtype=np.float32) / 255.0, device=device)
    elif mesh.vertex_colors is not None:
        drawable.vertex_colors = torch.as_tensor(np.asarray(mesh.vertex_colors[:, :3], dtype=np.float32), device=device)
    return drawable


def _check_shape(shape: WorldShape) -> None:
    if not isinstance(shape, WorldShape):
        raise TypeError(f"expected a WorldShape from make_shape(...), got {type(shape).__name__}")
    if shape.mesh.uv is None or shape.mesh.texture is None:
        raise ValueError("the shape's mesh has no UVs or texture; build it with make_shape(...)")


def _renderer(size: int, device: str, ambient: float, background: tuple[float, float, float]) -> MeshRenderer:
    # A fresh renderer per call, never a cached one: the rasterizer caches edge topology keyed by the
    # faces tensor's address, and a freed faces tensor's memory is reused by the next shape's.
    shading = ShadingConfig(ambient=ambient, diffuse=1.0 - ambient, specular=0.12)
    return MeshRenderer(RenderConfig(size=size, background=background, shading=shading), device)


def _uniform(count: int, bounds: tuple[float, float], generator: torch.Generator | None) -> torch.Tensor:
    low, high = bounds
    return low + (high - low) * torch.rand(count, generator=generator)


def _cameras_and_lights(count: int, config: ViewConfig, distance_scale: tuple[float, float],
                        generator: torch.Generator | None, device) -> tuple[Cameras, torch.Tensor, torch.Tensor]:
    azimuth = _uniform(count, config.azimuth_range, generator)
    elevation = _uniform(count, config.elevation_range, generator)
    distance = _uniform(count, distance_scale, generator) * fit_distance(config.fov_deg)
    light_az = torch.deg2rad(azimuth + _uniform(count, config.light_azimuth, generator))
    light_el = torch.deg2rad(_uniform(count, config.light_elevation, generator))
    exposure = _uniform(count, config.exposure, generator)
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
def shaded_images(mesh: Mesh, cameras: Cameras, lights: torch.Tensor, size: int, device: torch.device | str = "cpu",
                  ambient: float = 0.45, exposure: torch.Tensor | None = None) -> torch.Tensor:
    """Shaded renders of any `Mesh` (normalised to the unit sphere) over white, from given cameras.

    cameras: B cameras looking at the origin; lights: [B, 3] point-light positions; exposure: [B] brightness
    factors applied to the object, not the background (None: 1). Returns [B, size, size, 3] float32 in
    [0, 1] on `device`, top row first.
    """
    renderer = _renderer(int(size), str(torch.device(device)), ambient, (1.0, 1.0, 1.0))
    out = renderer.render(cameras=cameras, lights=lights.to(renderer.device),
                          **_drawable(mesh, renderer.device).kwargs())
    if exposure is None:
        return out.image.clamp(0, 1)
    # Exposure scales the object, not the white background.
    exposure = exposure.to(renderer.device)
    image = out.image * (1 - out.alpha) + (out.image * exposure[:, None, None, None]).clamp(0, 1) * out.alpha
    return image.clamp(0, 1)


def _connected_pieces(ink: torch.Tensor, cell: torch.Tensor, max_iterations: int) -> torch.Tensor:
    """Labels [B, H, W] int64 of 8-connected ink components within each grid cell (0 = no ink).

    ink: [B, H, W] bool; cell: [B, H, W] int64 cell id. A label is the largest pixel index of its
    piece, found by propagating maxima between neighbouring ink pixels of the same cell.
    """
    b, h, w = ink.shape
    index = torch.arange(1, h * w + 1, device=ink.device, dtype=torch.int32).view(1, h, w).expand(b, h, w)
    label = torch.where(ink, index, torch.zeros_like(index))
    # For each neighbour offset: the destination and source windows, and where a step may pass
    # (both pixels inked, same cell).
    steps = []
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy == 0 and dx == 0:
                continue
            dst = (slice(None), slice(max(0, -dy), h - max(0, dy)), slice(max(0, -dx), w - max(0, dx)))
            src = (slice(None), slice(max(0, dy), h - max(0, -dy)), slice(max(0, dx), w - max(0, -dx)))
            steps.append((dst, src, (cell[dst] == cell[src]) & ink[dst] & ink[src]))
    for _ in range(max_iterations):
        best = label.clone()
        for dst, src, passable in steps:
            best[dst] = torch.maximum(best[dst], torch.where(passable, label[src], 0))
        if torch.equal(best, label):
            break
        label = best
    return label.long()


@torch.no_grad()
def render_sketches(shape: WorldShape, count: int, size: int = 64, generator: torch.Generator | None = None,
                    device: torch.device | str = "cpu", config: SketchConfig | None = None,
                    view: ViewConfig | None = None) -> torch.Tensor:
    """Line drawings from random viewpoints: contours and creases, jittered, with dropped strokes and varied widths.

    Returns [count, size, size] float32 in [0, 1], 1 = paper, 0 = full ink, top row first.
    """
    _check_shape(shape)
    _check_size(count, size)
    view = view or ViewConfig()
    dev = torch.device(device)
    cameras, _, _ = _cameras_and_lights(count, view, view.distance_scale, generator, dev)
    return line_drawings(shape.mesh, cameras, int(size), generator, dev, config)


@torch.no_grad()
def line_drawings(mesh: Mesh, cameras: Cameras, size: int, generator: torch.Generator | None = None,
                  device: torch.device | str = "cpu", config: SketchConfig | None = None) -> torch.Tensor:
    """Line drawings of any `Mesh` (normalised to the unit sphere) from given cameras, damaged as `config` says
    (a config with no drop, jitter or thick pieces and a fixed width and ink gives clean drawings).

    Returns [B, size, size] float32 in [0, 1], 1 = paper, 0 = full ink, top row first.
    """
    config = config or SketchConfig()
    count = len(cameras)
    ss = max(1, int(config.supersample))
    big = int(size) * ss
    renderer = _renderer(big, str(torch.device(device)), 0.45, (1.0, 1.0, 1.0))
    dev = renderer.device
    cameras = cameras.to(dev)
    drawable = _drawable(mesh, dev)
    lines = render_lines(renderer, drawable.vertices, drawable.faces, cameras,
                         LineConfig(depth_jump=config.depth_jump, crease_deg=config.crease_deg, thickness=0))
    ink = lines < 0.5  # [B, S, S]

    # Cut strokes into pieces: connected components inside the cells of a randomly offset grid.
    cell_px = max(2.0, config.piece_px * ss)
    offset = torch.rand(count, 2, generator=generator) * cell_px
    ys = torch.arange(big, dtype=torch.float32).view(1, big, 1)
    xs = torch.arange(big, dtype=torch.float32).view(1, 1, big)
    cols = int(math.ceil(big / cell_px)) + 2
    cell = (torch.floor((ys + offset[:, 0, None, None]) / cell_px) * cols
            + torch.floor((xs + offset[:, 1, None, None]) / cell_px)).long().to(dev)
    damaged = tuple(config.drop_fraction) != (0.0, 0.0) or config.thick_fraction > 0
    # Undamaged drawings keep every piece at one width: the pieces need not be found (the draws below still
    # happen, so a generator advances the same way either way).
    pieces = (_connected_pieces(ink, cell, max_iterations=int(4 * cell_px)) if damaged
              else torch.zeros(ink.shape, dtype=torch.long, device=dev))

    # Per-piece random draws are looked up by piece label (a pixel index).
    drop = _uniform(count, config.drop_fraction, generator).to(dev)
    piece_keep = torch.rand(count, big * big + 1, generator=generator).to(dev)
    piece_thick = torch.rand(count, big * big + 1, generator=generator).to(dev)
    flat = pieces.view(count, -1)
    kept = (torch.gather(piece_keep, 1, flat) >= drop[:, None]).view_as(pieces) & ink
    thick = (torch.gather(piece_thick, 1, flat) < config.thick_fraction).view_as(pieces) & kept

    # Widths: a per-sketch base width, one step more for the thick pieces (max-pool dilation at the
    # supersampled size; widths are in output pixels).
    width = _uniform(count, config.width_px, generator)
    strokes = torch.zeros(count, big, big, device=dev)
    for i in range(count):
        base = max(1, int(round(float(width[i]) * ss)))
        for source, extra in ((kept[i], 0), (thick[i], ss)):
            k = base + extra
            layer = source.float()[None, None]
            if k > 1:
                layer = F.max_pool2d(F.pad(layer, ((k - 1) // 2, k // 2, (k - 1) // 2, k // 2)), k, stride=1)
            strokes[i] = torch.maximum(strokes[i], layer[0, 0])

    # Jitter: a smooth random warp of the whole drawing.
    amplitude = _uniform(count, config.jitter_px, generator) * 2.0 / size  # output px -> [-1, 1] units
    g = max(2, int(config.jitter_cells))
    coarse = torch.randn(count, 2, g, g, generator=generator) * amplitude[:, None, None, None]
    flow = F.interpolate(coarse, size=(big, big), mode="bicubic", align_corners=True).permute(0, 2, 3, 1).to(dev)
    lin = (torch.arange(big, dtype=torch.float32, device=dev) + 0.5) / big * 2 - 1
    grid_y, grid_x = torch.meshgrid(lin, lin, indexing="ij")
    grid = torch.stack([grid_x, grid_y], -1)[None] + flow
    warped = F.grid_sample(strokes[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    small = F.avg_pool2d(warped, ss) if ss > 1 else warped
    darkness = _uniform(count, config.ink, generator).to(dev)
    return (1.0 - small[:, 0].clamp(0, 1) * darkness[:, None, None]).clamp(0, 1)


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
    renderer = _renderer(int(size), str(torch.device(device)), config.view.ambient, (0.0, 0.0, 0.0))
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
    objects = [(_drawable(shape.mesh, dev), "target")]
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
        objects.append((_drawable(mesh, dev).placed(radius, position, float(u[7]) * 360.0), name))

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
