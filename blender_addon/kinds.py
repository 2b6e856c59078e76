"""The job kinds this add-on has wired: a plain registry, name -> `JobKind`. No bpy.

Wiring a new backend job kind (restyle, search, generate, segment, ...) is one entry here plus:
its params builder below, an operator in `operators.py` (subclass `JobOperator`), an importer in
`importers.py` (`IMPORTERS[name]`), and a panel in `panels.py`. A kind the backend does not offer yet is
not listed: the tests check that this registry equals the `job_kinds` a backend announces in `welcome`.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import AddonError
from .protocol import limits


@dataclass(frozen=True)
class JobKind:
    """One wired job kind."""

    name: str
    """The backend's job kind (`submit.kind`)."""
    label: str
    """What the panel and the job list call it."""
    operator: str
    """bl_idname of the operator that submits it."""
    panel: str
    """bl_idname of its panel in the 3D Viewport sidebar."""
    needs_mesh: bool
    """Whether it sends the selected object's mesh."""


def build_registry(kinds: list[JobKind]) -> dict[str, JobKind]:
    """name -> kind; a repeated name is an error, not a silent override."""
    registry: dict[str, JobKind] = {}
    for kind in kinds:
        if kind.name in registry:
            raise ValueError(f"job kind {kind.name!r} is wired twice")
        registry[kind.name] = kind
    return registry


JOB_KINDS: dict[str, JobKind] = build_registry([
    JobKind("render", "Render views", "atelier.render_views", "ATELIER_PT_render", needs_mesh=True),
    JobKind("stylize", "Stylize", "atelier.stylize", "ATELIER_PT_stylize", needs_mesh=True),
])

QUALITIES = ("draft", "standard", "high")
"""The stylize job's presets (backend `QUALITY_PRESETS`): draft 150 steps, standard 500, high 1500 (the paper)."""
MAX_SEED = 2**31 - 1


def stylize_params(prompt: str, quality: str = "standard", steps: int = 0, seed: int = 0, clip: str = "",
                   subdivide: bool = False, bake_texture: bool = False) -> dict:
    """The `stylize` job's params from the panel's fields; AddonError for a bad prompt.

    steps 0 means the quality preset's count; clip "" means the backend's default (ViT-B-32:openai).
    """
    prompt = (prompt or "").strip()
    if not prompt:
        raise AddonError("the prompt is empty", "type what the object should look like, e.g. 'a wooden chair'")
    if len(prompt) > limits.MAX_PROMPT_CHARS:
        raise AddonError(f"the prompt has {len(prompt)} characters, over the {limits.MAX_PROMPT_CHARS} limit",
                         "shorten it")
    if quality not in QUALITIES:
        raise AddonError(f"quality must be one of {', '.join(QUALITIES)}, got {quality!r}")
    if not 0 <= int(seed) <= MAX_SEED:
        raise AddonError(f"seed must be in [0, {MAX_SEED}], got {seed}")
    params = {"prompt": prompt, "quality": quality, "seed": int(seed)}
    if steps:
        params["steps"] = int(steps)
    if clip:
        params["clip"] = clip
    if subdivide:
        params["subdivide"] = True
    if bake_texture:
        params["bake_texture"] = True
    return params


def render_params(views: int = 8, size: int = 256) -> dict:
    """The `render` job's params; AddonError outside the protocol's ranges."""
    if not limits.RENDER_MIN_VIEWS <= views <= limits.RENDER_MAX_VIEWS:
        raise AddonError(f"views must be in [{limits.RENDER_MIN_VIEWS}, {limits.RENDER_MAX_VIEWS}], got {views}")
    if not limits.RENDER_MIN_SIZE <= size <= limits.RENDER_MAX_SIZE:
        raise AddonError(f"size must be in [{limits.RENDER_MIN_SIZE}, {limits.RENDER_MAX_SIZE}] px, got {size}")
    return {"views": int(views), "size": int(size)}
