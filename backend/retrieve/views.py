"""What the index sees of a shape: K shaded views, K clean line drawings (the sketch domain) and a thumbnail.

The cameras are fixed and deterministic (no random draws), so re-indexing an unchanged mesh gives the same
images, and every shape is seen from the same K directions. The renderer and the line extraction are the ones
the procedural world draws with (`backend.render.views.shaded_images`, `line_drawings`), so index images look
like the images the domain CLIP was trained on. Meshes are normalised to the unit sphere first (bounding-box centre).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from backend.errors import InvalidInputError
from backend.geometry.mesh import Mesh
from backend.geometry.png import encode_png
from backend.render.camera import Cameras, fit_distance, orbit_cameras
from backend.retrieve.sketch import SketchInputConfig, sketch_from_image
from backend.render.views import SketchConfig, line_drawings, shaded_images

CLEAN_LINES = SketchConfig(drop_fraction=(0.0, 0.0), width_px=(1.0, 1.0), thick_fraction=0.0,
                           jitter_px=(0.0, 0.0), ink=(1.0, 1.0))
"""Line drawings for the index: every contour and crease, one pixel wide, full ink, no jitter."""

MIN_VIEWS, MAX_VIEWS = 1, 24
"""Range of `IndexViewConfig.views`."""


@dataclass(frozen=True)
class IndexViewConfig:
    """How each library shape is pictured for the index. Recorded in the database: a library indexed with one
    config is searched with it."""

    views: int = 6
    """K: shaded views and line drawings per shape, at evenly spaced azimuths."""
    size: int = 0
    """Side in pixels of the views and line drawings; 0 means the CLIP's image size (the domain CLIP's 64)."""
    azimuth_start: float = 0.0
    """Azimuth of the first view in degrees (0 looks at the front, +Z, glTF's convention); the others
    follow every 360 / views degrees."""
    elevations: tuple[float, ...] = (15.0, 35.0)
    """Camera elevations in degrees above the horizon, taken in turn by consecutive views (so views alternate
    low and high)."""
    distance_scale: float = 1.1
    """Camera distance as a multiple of the distance at which the unit sphere just fills the view (the
    world's random views use 1.0-1.2)."""
    fov_deg: float = 40.0
    """Vertical field of view in degrees."""
    light_azimuth: float = 30.0
    """Point-light azimuth relative to each camera's, in degrees."""
    light_elevation: float = 45.0
    """Point-light elevation in degrees."""
    light_distance: float = 6.0
    """Point-light distance from the origin."""
    ambient: float = 0.45
    """Ambient share of the light (the world's); the rest is the diffuse point light."""
    lines: SketchConfig = field(default_factory=lambda: CLEAN_LINES)
    """Line-drawing settings; the default draws clean lines (no dropped strokes, no jitter)."""
    line_fill: float = 0.8
    """Each line drawing is reframed like a user's sketch: its ink's bounding box centred and scaled to this
    share of the side (`backend.retrieve.sketch`); queries are framed with the same share, so a sketch
    matches whatever its size and place on the paper. 0 keeps the camera's framing."""
    thumbnail_size: int = 128
    """Side in pixels of the thumbnail PNG stored per shape."""
    thumbnail_azimuth: float = 35.0
    """Azimuth of the thumbnail's three-quarter view, in degrees."""
    thumbnail_elevation: float = 25.0
    """Elevation of the thumbnail's view, in degrees."""

    def check(self) -> "IndexViewConfig":
        """Raises InvalidInputError naming the bad field; returns self."""
        if not isinstance(self.views, int) or not MIN_VIEWS <= self.views <= MAX_VIEWS:
            raise InvalidInputError(f"views must be an integer in [{MIN_VIEWS}, {MAX_VIEWS}], got {self.views!r}",
                                    hint="6 views are the default")
        if not isinstance(self.size, int) or not (self.size == 0 or 16 <= self.size <= 1024):
            raise InvalidInputError(f"view size must be 0 (the CLIP's) or in [16, 1024] pixels, got {self.size!r}")
        if not isinstance(self.thumbnail_size, int) or not 16 <= self.thumbnail_size <= 512:
            raise InvalidInputError(f"thumbnail size must be in [16, 512] pixels, got {self.thumbnail_size!r}")
        if not self.elevations:
            raise InvalidInputError("elevations must list at least one angle")
        if not 0.0 <= self.line_fill <= 1.0:
            raise InvalidInputError(f"line_fill must be in [0, 1], got {self.line_fill!r}")
        return self

    def resolved(self, image_size: int) -> "IndexViewConfig":
        """This config with `size` fixed (0 -> `image_size`), as the database records it."""
        return replace(self, size=int(self.size or image_size)).check()

    def to_json(self) -> str:
        """A canonical JSON text (sorted keys) for the database's meta table."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "IndexViewConfig":
        data = json.loads(text)
        data["elevations"] = tuple(data["elevations"])
        lines = {k: tuple(v) if isinstance(v, list) else v for k, v in data.pop("lines").items()}
        return cls(lines=SketchConfig(**lines), **data)


@dataclass
class IndexViews:
    """A shape as the index sees it."""

    shaded: torch.Tensor
    """[K, S, S, 3] float32 in [0, 1], over white, top row first."""
    lines: torch.Tensor
    """[K, S, S] float32 in [0, 1]: 1 = paper, 0 = ink."""
    thumbnail: bytes
    """PNG bytes, thumbnail_size x thumbnail_size RGB."""


def index_cameras(config: IndexViewConfig, device: torch.device | str = "cpu") -> tuple[Cameras, torch.Tensor]:
    """The K fixed cameras and their [K, 3] point-light positions."""
    k = config.views
    azimuth = config.azimuth_start + torch.arange(k, dtype=torch.float32) * (360.0 / k)
    elevation = torch.tensor([config.elevations[i % len(config.elevations)] for i in range(k)], dtype=torch.float32)
    cameras = orbit_cameras(azimuth, elevation, config.distance_scale * fit_distance(config.fov_deg), config.fov_deg,
                            device=device)
    return cameras, _lights(azimuth, config).to(device)


def _reframed(drawing: torch.Tensor, config: IndexViewConfig) -> torch.Tensor:
    """A line drawing framed as queries are; unchanged when it has (next to) no ink (a sheet seen edge-on)."""
    try:
        return sketch_from_image(drawing.cpu().numpy(), config.size, SketchInputConfig(fill=config.line_fill)
                                 ).to(drawing.device)
    except InvalidInputError:
        return drawing


def _lights(azimuth: torch.Tensor, config: IndexViewConfig) -> torch.Tensor:
    light_az = torch.deg2rad(azimuth + config.light_azimuth)
    light_el = torch.deg2rad(torch.full_like(azimuth, config.light_elevation))
    return config.light_distance * torch.stack(
        [torch.cos(light_el) * torch.sin(light_az), torch.sin(light_el), torch.cos(light_el) * torch.cos(light_az)], -1)


@torch.no_grad()
def render_index_views(mesh: Mesh, config: IndexViewConfig, device: torch.device | str = "cpu") -> IndexViews:
    """The K shaded views, K line drawings and the thumbnail of any mesh (its own texture or vertex colours,
    else grey). `config.size` must be resolved (non-zero; see `IndexViewConfig.resolved`)."""
    if not config.size:
        raise ValueError("config.size is 0: resolve it with config.resolved(clip.image_size) first")
    cameras, lights = index_cameras(config, device)
    shaded = shaded_images(mesh, cameras, lights, config.size, device, config.ambient)
    # The generator is seeded so that a damaging line config (not the default) is deterministic too.
    lines = line_drawings(mesh, cameras, config.size, torch.Generator().manual_seed(0), device, config.lines)
    if config.line_fill > 0:
        lines = torch.stack([_reframed(drawing, config) for drawing in lines])
    return IndexViews(shaded=shaded, lines=lines, thumbnail=render_thumbnail(mesh, config, device))


@torch.no_grad()
def render_thumbnail(mesh: Mesh, config: IndexViewConfig, device: torch.device | str = "cpu") -> bytes:
    """PNG bytes of the mesh's three-quarter thumbnail (`config.thumbnail_*`), lit as the index views are."""
    thumb_az = torch.tensor([config.thumbnail_azimuth])
    thumb_camera = orbit_cameras(thumb_az, torch.tensor([config.thumbnail_elevation]),
                                 config.distance_scale * fit_distance(config.fov_deg), config.fov_deg, device=device)
    thumb = shaded_images(mesh, thumb_camera, _lights(thumb_az, config).to(device), config.thumbnail_size, device,
                          config.ambient)
    pixels = (thumb[0].clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()
    return encode_png(np.ascontiguousarray(pixels))

