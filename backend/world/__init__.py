"""The procedural world: shape families with known labels, captions, renders, sketches and photos.

Used by tests, benchmarks and the domain CLIP. Entry points:
- `make_shape(seed, category=None, **overrides) -> WorldShape` (shape.py)
- `render_views`, `render_sketches`, `render_photo` (views.py)
- `sample_batch`, `build_tensor_dataset` (sampling.py) for training
- `write_dataset`, `read_manifest`, `world_command` (dataset.py) for `atelier world`
"""

from backend.world.appearance import COLOURS, PATTERNS
from backend.world.captions import caption_words, make_caption, wrong_words
from backend.world.dataset import read_manifest, world_command, write_dataset
from backend.world.families import CATEGORIES, FAMILIES, Family, register_family
from backend.world.sampling import (COLOUR_NAMES, SamplerConfig, WorldBatch, WorldTensors, build_tensor_dataset,
                                    sample_batch)
from backend.world.shape import WorldShape, make_shape
from backend.world.views import (Photo, PhotoConfig, SketchConfig, ViewConfig, render_photo, render_sketches,
                                 render_views)

__all__ = [
    "CATEGORIES", "COLOURS", "COLOUR_NAMES", "FAMILIES", "PATTERNS", "Family", "Photo", "PhotoConfig",
    "SamplerConfig", "SketchConfig", "ViewConfig", "WorldBatch", "WorldShape", "WorldTensors",
    "build_tensor_dataset", "caption_words", "make_caption", "make_shape", "read_manifest", "register_family",
    "render_photo", "render_sketches", "render_views", "sample_batch", "world_command", "wrong_words",
    "write_dataset",
]
