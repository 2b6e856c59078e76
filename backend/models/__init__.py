"""backend.models: CLIP loading by spec, the weights manager (list, pull, import) and the domain CLIP.

The CLI and the server use `load_clip`, `release_all`, `list_models`, `pull`, `import_file`; see `clip.py`,
`store.py` and `importer.py`. The server registers `release_all` and `present_weights` as its hooks
(`backend/server/registrations.py`): this layer does not know the server. The domain CLIP's trainer
(`domain_train.py`) is for training code only and is not imported here.
"""

from backend.models.catalogue import CATALOGUE, WeightsInfo, WeightsSource, lookup
from backend.models.clip import (
    CLIP_RESOLVERS,
    ClipModel,
    TinyClipConfig,
    load_clip,
    register_clip_resolver,
    release_all,
    save_clip_checkpoint,
)
# Registers `--clip domain` (the shipped domain CLIP) in place of clip.py's "not trained" placeholder.
from backend.models.domain import shipped_models
from backend.models.importer import import_file
from backend.models.store import find_weights, list_models, present_weights, pull

__all__ = [
    "CATALOGUE", "CLIP_RESOLVERS", "ClipModel", "TinyClipConfig", "WeightsInfo", "WeightsSource",
    "find_weights", "import_file", "list_models", "load_clip", "lookup", "present_weights", "pull",
    "register_clip_resolver", "release_all", "save_clip_checkpoint", "shipped_models",
]
