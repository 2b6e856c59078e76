"""The sketch side of a world split as `search` sees it: query sketches framed like a user's, the index's line
drawings of every shape, and the stroke augmentations sketch training uses.

- `frame_sketches`: each dataset sketch (camera-framed) reframed as `QueryEncoder.prepare_sketch` frames a user's
  sketch for a database (its ink's bounding box centred at `IndexViewConfig.line_fill` of the side).
- `index_lines`: each shape's K clean line drawings from the index's fixed cameras (`render_index_views` on the
  shape's library mesh): what a database holds as its "lines" vectors, so a sketch query is scored against the
  same line style it is compared with in a real search. Rendering takes about 0.05 s a shape on a CPU; a split's
  drawings are cached (`cached_index_lines`), keyed by the meshes' bytes, the view config and the drawing code.
- `drawn_sketches`: more sketches of each shape from new viewpoints, drawn from its library mesh as the world draws
  its sketches (the viewpoint augmentation; about 0.15 s for 12 sketches of a shape, cached).
- `augment_sketches`: what sketch retrieval work trains with beyond crops and mirroring: stroke width (ink grown
  or thinned by one pixel), partial strokes (patches of the drawing erased to paper), and a smooth warp (hand
  jitter). The world's sketches already vary viewpoint, width, jitter and dropped pieces when they are drawn;
  these vary them again at every step, so four drawings a shape do not become memorised.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from backend.checkpoints import load_cached, save_atomic
from backend.errors import InvalidInputError
from backend.retrieve.data import RetrievalSplit
from backend.retrieve.sketch import SketchInputConfig, sketch_from_image
from backend.retrieve.views import IndexViewConfig, render_index_views

CACHE_FORMAT = "atelier-sketch-domain-1"
"""The `format` entry of a cached file of line drawings or drawn sketches."""


def _to_uint8(grey: torch.Tensor) -> torch.Tensor:
    """[..., S, S] float in [0, 1] -> [..., S, S, 3] uint8 (grey stored as RGB, like the dataset's sketches)."""
    return (grey.clamp(0, 1) * 255).round().to(torch.uint8)[..., None].expand(*grey.shape, 3).contiguous()


def frame_sketches(sketches: torch.Tensor, fill: float | None = None) -> torch.Tensor:
    """[..., S, S, 3] uint8 sketches -> the same, each framed as a search frames a user's sketch (`fill`: the
    ink's share of the side, default the index's `line_fill`). A drawing with no ink is kept as it is."""
    fill = IndexViewConfig().line_fill if fill is None else float(fill)
    flat = sketches.reshape(-1, *sketches.shape[-3:])
    side = int(sketches.shape[-2])
    config = SketchInputConfig(fill=fill)
    out = torch.empty_like(flat)
    for i, image in enumerate(flat):
        try:
            out[i] = _to_uint8(sketch_from_image(image.numpy(), side, config))
        except InvalidInputError:
            out[i] = image
    return out.view_as(sketches)


def index_lines(data: RetrievalSplit, config: IndexViewConfig | None = None,
                progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """[N, K, S, S, 3] uint8: the index's K line drawings of each shape of `data` (from its library mesh file), at
    the split's image size, framed as the index frames them."""
    config = (config or IndexViewConfig()).resolved(data.image_size)
    if config.size != data.image_size:
        raise ValueError(f"the line drawings must be {data.image_size} px like the split's images, the config "
                         f"says {config.size}")
    out = []
    for i, mesh in enumerate(_meshes(data)):
        out.append(_to_uint8(render_index_views(mesh, config).lines))
        if progress is not None:
            progress(i + 1, len(data))
    return torch.stack(out)


def drawn_sketches(data: RetrievalSplit, count: int, seed: int = 0,
                   progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """[N, count, S, S, 3] uint8: `count` more sketches of each shape of `data`, drawn from its library mesh as the
    world draws its sketches (random viewpoints, roughened strokes: `backend.world.views.sketch_mesh`), seeded by
    (seed, shape index), camera-framed like the dataset's: the viewpoint augmentation of sketch training."""
    from backend.world.views import sketch_mesh  # noqa: PLC0415

    out = []
    for i, mesh in enumerate(_meshes(data)):
        generator = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, i]).generate_state(1)[0]))
        out.append(_to_uint8(sketch_mesh(mesh, count, data.image_size, generator)))
        if progress is not None:
            progress(i + 1, len(data))
    return torch.stack(out)


def _mesh_path(data: RetrievalSplit, i: int) -> Path:
    path = data.root / data.files[i]
    if not data.files[i] or not path.is_file():
        raise InvalidInputError(f"the world dataset lacks the mesh {path} of shape {data.ids[i]}",
                                hint="the dataset is incomplete; write it again")
    return path


def _meshes(data: RetrievalSplit):
    from backend.geometry.load import load_mesh  # noqa: PLC0415

    for i in range(len(data)):
        yield load_mesh(_mesh_path(data, i))


def _key(data: RetrievalSplit, *parts: str) -> str:
    """A cache key: `parts`, the split's meshes' bytes and the drawing code."""
    from backend.render import views as render_views  # noqa: PLC0415
    from backend.retrieve import sketch, views  # noqa: PLC0415
    from backend.world import views as world_views  # noqa: PLC0415

    digest = hashlib.sha256(CACHE_FORMAT.encode())
    for part in parts:
        digest.update(part.encode())
    for i, rel in enumerate(data.files):
        digest.update(rel.encode() + _mesh_path(data, i).read_bytes())
    for module in (render_views, views, sketch, world_views):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:16]


def _cached(kind: str, key: str, rows: int, compute: Callable[[], torch.Tensor],
            cache_dir: str | Path | None) -> torch.Tensor:
    if cache_dir is None:
        from backend.models.store import atelier_home  # noqa: PLC0415

        cache_dir = atelier_home() / "cache" / "sketch_domain"
    path = Path(cache_dir) / f"{kind}_{key}.pt"
    images = load_cached(path, CACHE_FORMAT, "images", (rows,))
    if images is None:
        images = compute()
        save_atomic({"format": CACHE_FORMAT, "images": images}, path)
    return images


def cached_index_lines(data: RetrievalSplit, config: IndexViewConfig | None = None, cache_dir: str | Path | None = None,
                       progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """`index_lines(data, config)`, read from `cache_dir` (default `$ATELIER_HOME/cache/sketch_domain`) when drawn
    before, else drawn and written there."""
    config = (config or IndexViewConfig()).resolved(data.image_size)
    return _cached("lines", _key(data, config.to_json()), len(data), lambda: index_lines(data, config, progress),
                   cache_dir)


def cached_drawn_sketches(data: RetrievalSplit, count: int, seed: int = 0, cache_dir: str | Path | None = None,
                          progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """`drawn_sketches(data, count, seed)`, cached as `cached_index_lines` is."""
    return _cached("sketches", _key(data, f"{count}:{seed}:{data.image_size}"), len(data),
                   lambda: drawn_sketches(data, count, seed, progress), cache_dir)


@dataclass(frozen=True)
class SketchAugmentConfig:
    """Per-step stroke augmentations of training sketches (each drawn independently per sketch)."""

    width_change: float = 0.5
    """Probability that the strokes change width by one pixel (then thicker or thinner, evenly)."""
    erase: float = 0.5
    """Probability that patches of the drawing are erased to paper (partial strokes)."""
    erase_patches: tuple[int, int] = (1, 3)
    """How many square patches are erased, inclusive range."""
    erase_size: tuple[float, float] = (0.1, 0.25)
    """Side of an erased patch as a share of the image side."""
    warp: float = 0.5
    """Probability of a smooth random warp (hand jitter)."""
    warp_px: float = 1.5
    """The warp's largest displacement in pixels."""
    warp_cells: int = 4
    """The warp is a random displacement on this many grid cells across, smoothly interpolated."""

    def __post_init__(self) -> None:
        for name in ("width_change", "erase", "warp"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"SketchAugmentConfig.{name} must be a probability in [0, 1], got {getattr(self, name)}")
        low, high = self.erase_patches
        if not 0 <= low <= high:
            raise ValueError(f"SketchAugmentConfig.erase_patches must be (low, high) with 0 <= low <= high, got "
                             f"{self.erase_patches}")
        if not 0.0 < self.erase_size[0] <= self.erase_size[1] < 1.0:
            raise ValueError(f"SketchAugmentConfig.erase_size must be in (0, 1) and ordered, got {self.erase_size}")
        if self.warp_px < 0 or self.warp_cells < 2:
            raise ValueError("SketchAugmentConfig.warp_px must be >= 0 and warp_cells >= 2")


def augment_sketches(sketches: torch.Tensor, generator: torch.Generator,
                     config: SketchAugmentConfig | None = None) -> torch.Tensor:
    """[B, 3, H, W] float in [0, 1] (dark lines on white) -> the same, each with its strokes thickened or thinned,
    partly erased and warped as `config` draws (every draw from `generator`, whatever is applied)."""
    config = config or SketchAugmentConfig()
    batch, _, height, width = sketches.shape
    uniform = torch.rand(batch, 6, generator=generator)
    ink = 1.0 - sketches
    # Stroke width: grow the ink (max filter) or thin it (min filter) by one pixel.
    grown = F.max_pool2d(ink, 3, stride=1, padding=1)
    thinned = -F.max_pool2d(-ink, 3, stride=1, padding=1)
    change = (uniform[:, 0] < config.width_change).view(batch, 1, 1, 1)
    thicker = (uniform[:, 1] < 0.5).view(batch, 1, 1, 1)
    # Thinning a one-pixel line erases it: keep the original where the thinned drawing loses all its ink.
    kept = thinned.flatten(1).amax(1).view(batch, 1, 1, 1) > 0.25
    ink = torch.where(change & thicker, grown, torch.where(change & ~thicker & kept, thinned, ink))
    # Partial strokes: erase square patches.
    low, high = config.erase_patches
    counts = low + (uniform[:, 2] * (high - low + 1)).long().clamp(max=high - low)
    patches = torch.rand(batch, high, 3, generator=generator)
    ys = torch.arange(height, dtype=torch.float32).view(1, height, 1) / height
    xs = torch.arange(width, dtype=torch.float32).view(1, 1, width) / width
    keep = torch.ones(batch, height, width)
    for p in range(high):
        side = config.erase_size[0] + (config.erase_size[1] - config.erase_size[0]) * patches[:, p, 2]
        y0 = patches[:, p, 0].view(-1, 1, 1) * (1 - side.view(-1, 1, 1))
        x0 = patches[:, p, 1].view(-1, 1, 1) * (1 - side.view(-1, 1, 1))
        inside = ((ys >= y0) & (ys < y0 + side.view(-1, 1, 1)) & (xs >= x0) & (xs < x0 + side.view(-1, 1, 1)))
        active = ((p < counts) & (uniform[:, 3] < config.erase)).view(-1, 1, 1)
        keep = keep * (1.0 - (inside & active).float())
    ink = ink * keep[:, None]
    # Hand jitter: a smooth random displacement field.
    cells = config.warp_cells
    field = (torch.rand(batch, 2, cells, cells, generator=generator) * 2 - 1) * config.warp_px
    field = field * (uniform[:, 4] < config.warp).view(batch, 1, 1, 1)
    flow = F.interpolate(field, size=(height, width), mode="bicubic", align_corners=True)
    base_y, base_x = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
    grid = torch.stack([base_x + flow[:, 0] * 2 / width, base_y + flow[:, 1] * 2 / height], dim=-1)
    ink = F.grid_sample(ink, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return (1.0 - ink).clamp(0, 1)
