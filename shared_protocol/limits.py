"""Every limit of the wire protocol, in one place.

Both sides import these: the add-on to bound its UI and to refuse early, the backend to validate.
Changing a limit that narrows what is accepted is a protocol change: bump `PROTOCOL_VERSION`.
"""

PROTOCOL_VERSION = 1
"""The integer every header carries in `protocol`; both sides must speak the same one."""

MAX_HEADER_BYTES = 1 << 20
"""Frame 0 (the UTF-8 JSON header) may be at most 1 MiB."""

MAX_BLOB_BYTES = 512 << 20
"""Each binary frame (array, PNG, GLB) may be at most 512 MiB; a server may be configured lower."""

MAX_FRAMES = 128
"""Frames per message, header included: a 64-view render result is 1 header + 64 PNGs + a few arrays."""

MAX_NDIM = 8
"""Dimensions an array may have."""

MAX_VERTICES = 2_000_000
"""Vertices in a mesh payload."""

MAX_FACES = 4_000_000
"""Triangles in a mesh payload."""

MAX_STRING = 4096
"""Characters in any string of a header (messages, hints, paths, param values)."""

MAX_NAME_CHARS = 64
"""Characters in a short name: a job kind, a stage, an error code, a metric, a blob or array name, a dict key."""

MAX_JOB_ID_CHARS = 64
"""Characters in a client-chosen job id."""

MAX_PROMPT_CHARS = 500
"""Characters in a text prompt (jobs check their `prompt` params against this)."""

MAX_LIST_ITEMS = 1024
"""Items in a list of names (job kinds, models, queued jobs)."""

MAX_JSON_DEPTH = 16
"""Nesting depth of the free-form `params` and `fields` dicts."""

MAX_METRICS = 64
"""Metrics in one progress message."""

MAX_STEPS = 1 << 40
"""Bound on progress `step`/`total` and queue positions (any sane integer fits)."""

RENDER_MIN_VIEWS, RENDER_MAX_VIEWS = 1, 64
"""Range of the `render` job's `views` param."""

RENDER_MIN_SIZE, RENDER_MAX_SIZE = 16, 2048
"""Range of the `render` job's `size` param (pixels, square)."""

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
"""The first 8 bytes of every PNG; blobs declared as PNG must start with them."""

SEARCH_MAX_K = 100
MAX_BLENDER_WORKERS = 64
"""Most Blender worker processes one index job may start."""
STORES = ("embedded", "milvus")
"""Where a shape library lives: embedded (SQLite + FAISS in a folder) or milvus (Milvus Lite file or server)."""
DESCRIPTORS = ("views", "points", "both")
"""What describes each shape in a library index (`atelier index --descriptor`): rendered views, one point-cloud
vector, or both."""
MILVUS_SCHEMES = ("http", "https", "tcp")
"""URL schemes of a Milvus server's address (anything else in a store's `db` is a local path)."""
"""Most results one `search` job returns (each result carries a thumbnail blob, so it fits MAX_FRAMES)."""

# -- job params both sides check (the request dataclasses in `shared_protocol.requests` use these) ---------------

MAX_SEED = 2**31 - 1
"""Largest `seed` a job takes."""

MAX_JOB_STEPS = 100_000
"""Largest optimisation step count a job takes (stylize, restyle, the generate job's style steps)."""

QUALITIES = ("draft", "standard", "high")
"""The stylize and restyle presets (`high` is each paper's setting)."""

TEXTURE_SIZE_RANGE = (64, 4096)
"""Side in pixels of a texture a job paints (stylize's bake, restyle's style texture)."""

MAX_STYLE_IMAGES = 16
"""Style images one restyle job takes (blobs style_0 .. style_15)."""

MAX_PALETTE_COLORS = 16
"""Colours a user palette may have."""

INDEX_VIEWS_RANGE = (1, 24)
"""Views per shape an index job may render."""

SEGMENT_MAX_POINTS = 64
"""Point prompts one segment job takes."""

SAM_TYPES = ("vit_b", "vit_l", "vit_h")
"""The Segment Anything checkpoints the backend knows."""

PHOTO_TO_3D_METHODS = ("retrieve", "reconstruct", "auto")
"""retrieve: the library's best match restyled; reconstruct: Gaussians fitted to the photo; auto: reconstruct from
the retrieved match."""
RECONSTRUCT_INITS = ("sphere", "retrieve", "generate", "best")
"""Where a reconstruction's Gaussians start (backend.reconstruct.priors.INITS)."""
RECONSTRUCT_GUIDANCES = ("clip", "zero123")
"""Novel-view guidance of a reconstruction (backend.reconstruct.guidance.GUIDANCES)."""

GENERATE_MAX_SAMPLES = 16
"""Shapes one generate job draws."""

GENERATE_MAX_REFINE = 500
"""ISS refinement steps per sample a generate job takes."""
