"""backend.models: CLIP loading by spec, the weights manager (list, pull, import) and the domain CLIP.

The CLI and the server use `load_clip`, `release_all`, `list_models`, `pull`, `import_file`; see `clip.py`
and `store.py`.
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
from backend.models.store import find_weights, import_file, list_models, present_weights, pull
# Registers `--clip domain` (the shipped domain CLIP) in place of clip.py's "not trained" placeholder.
from backend.models import domain  # noqa: E402,F401  (imported for its registration)
from backend.server.hooks import register_models_lister, register_release_hook


# The server's `release` drops cached CLIPs; its `welcome` names the weights present.
register_release_hook("models.clip", release_all)
register_models_lister("models.weights", present_weights)

__all__ = [
    "CATALOGUE", "CLIP_RESOLVERS", "ClipModel", "TinyClipConfig", "WeightsInfo", "WeightsSource",
    "find_weights", "import_file", "list_models", "load_clip", "lookup", "present_weights", "pull",
    "register_clip_resolver", "release_all", "save_clip_checkpoint",
]
