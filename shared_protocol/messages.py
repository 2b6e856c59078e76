"""Every message as a dataclass. `to_frames`/`from_frames` (wire.py) turn them into frames and back.

Who sends what:
  client -> server: Hello, Submit, Cancel, Status (request: no fields), Release, Shutdown
  server -> client: Welcome, Accepted, Progress, Result, Error, Status (reply), Release and Shutdown (acks)

A job's life: Submit -> Accepted -> Progress* -> Result | Error. A cancelled job ends with
Error(code="cancelled"), which clients show as a notice, not a failure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Union

from shared_protocol.arrays import Array
from shared_protocol.errors import ProtocolError
from shared_protocol.fields import HeaderReader, HeaderWriter
from shared_protocol.limits import MAX_STEPS
from shared_protocol.mesh import MeshPayload


@dataclass
class Hello:
    """Client -> server: opens the conversation; the server answers `Welcome` (or a protocol_mismatch error)."""

    TYPE: ClassVar[str] = "hello"
    client: str = ""
    """Who is asking, e.g. "atelier-blender 0.1.0 / Blender 4.2" (for the log)."""

    def to_header(self, w: HeaderWriter) -> dict:
        return {"client": self.client}

    @classmethod
    def from_header(cls, r: HeaderReader) -> "Hello":
        return cls(client=r.string("client", optional=True))


@dataclass
class Welcome:
    """Server -> client: what this backend is and can do."""

    TYPE: ClassVar[str] = "welcome"
    server: str
    """Backend version, e.g. "0.1.0"."""
    device: str
    """The torch device jobs run on: "cpu", "cuda", "cuda:1", "mps"."""
    renderer: str
    """The rasterizer in use: "torch" or "nvdiffrast" (or "auto" before the first render decides)."""
    job_kinds: list[str] = field(default_factory=list)
    """Job kinds `submit` accepts."""
    models: list[str] = field(default_factory=list)
    """Model weights present on the server (names such as "ViT-B-32:openai", at most 256 characters each)."""
    log_path: str = ""
    """The server's log file, to show in error reports."""
    max_blob_bytes: int = 0
    """The largest blob this server accepts (it may be configured below the protocol limit)."""

    def to_header(self, w: HeaderWriter) -> dict:
        return {"server": self.server, "device": self.device, "renderer": self.renderer,
                "job_kinds": self.job_kinds, "models": self.models, "log_path": self.log_path,
                "max_blob_bytes": self.max_blob_bytes}

    @classmethod
    def from_header(cls, r: HeaderReader) -> "Welcome":
        return cls(server=r.string("server", max_chars=64), device=r.string("device", max_chars=64),
                   renderer=r.string("renderer", max_chars=64), job_kinds=r.names("job_kinds"),
                   models=r.strings("models"), log_path=r.string("log_path", optional=True),
                   max_blob_bytes=r.integer("max_blob_bytes", 0, 1 << 62, optional=True))


@dataclass
class Submit:
    """Client -> server: run a job. `job` is the client's id, unique among its own active jobs."""

    TYPE: ClassVar[str] = "submit"
    job: str
    """Client-chosen id (1..64 of A-Z a-z 0-9 _ . : -); every reply about this job carries it."""
    kind: str
    """A job kind from `Welcome.job_kinds`, e.g. "render"."""
    params: dict = field(default_factory=dict)
    """Job parameters as JSON data; each kind documents and validates its own."""
    mesh: MeshPayload | None = None
    """The source mesh, when the job needs one."""
    arrays: dict[str, Array] = field(default_factory=dict)
    """Further named arrays (e.g. sketch strokes)."""
    blobs: dict[str, bytes] = field(default_factory=dict)
    """Further named blobs (e.g. a style image PNG)."""

    def to_header(self, w: HeaderWriter) -> dict:
        header = {"job": self.job, "kind": self.kind, "params": self.params}
        if self.mesh is not None:
            if not isinstance(self.mesh, MeshPayload):
                raise ProtocolError(f"'mesh' must be a MeshPayload, got {type(self.mesh).__name__}")
            header["mesh"] = self.mesh.to_header(w)
        if self.arrays:
            header["arrays"] = w.named_arrays(self.arrays, "arrays")
        if self.blobs:
            header["blobs"] = w.named_blobs(self.blobs, "blobs")
        return header

    @classmethod
    def from_header(cls, r: HeaderReader) -> "Submit":
        job = r.job()
        kind = r.name("kind")
        params = r.json_dict("params")
        mesh_ref = r.raw("mesh")
        mesh = None if mesh_ref is None else MeshPayload.from_header(mesh_ref, r)
        return cls(job=job, kind=kind, params=params, mesh=mesh,
                   arrays=r.named_arrays("arrays"), blobs=r.named_blobs("blobs"))


@dataclass
class Accepted:
    """Server -> client: the job is queued. `position` counts the jobs ahead of it (0: it starts now)."""

    TYPE: ClassVar[str] = "accepted"
    job: str
    position: int = 0

    def to_header(self, w: HeaderWriter) -> dict:
        return {"job": self.job, "position": self.position}

    @classmethod
    def from_header(cls, r: HeaderReader) -> "Accepted":
        return cls(job=r.job(), position=r.integer("position", 0, MAX_STEPS))


@dataclass
class Progress:
    """Server -> client: a running job's progress (throttled; the last step is always sent)."""

    TYPE: ClassVar[str] = "progress"
    job: str
    stage: str = ""
    """What the job is doing now, e.g. "render", "optimize" ("" when it has one stage)."""
    step: int = 0
    """Steps done, 0..total."""
    total: int = 0
    """Steps in this stage."""
    eta_s: float | None = None
    """Estimated seconds left in this stage; None until there is an estimate."""
    metrics: dict[str, float | None] = field(default_factory=dict)
    """Figures such as {"loss": 0.42}; None stands for a non-finite value."""
    preview: bytes | None = None
    """An optional preview image, PNG."""

    def to_header(self, w: HeaderWriter) -> dict:
        header = {"job": self.job, "stage": self.stage, "step": self.step, "total": self.total,
                  "eta_s": self.eta_s, "metrics": self.metrics}
        if self.preview is not None:
            header["preview"] = w.blob(self.preview, "preview")
        return header

    @classmethod
    def from_header(cls, r: HeaderReader) -> "Progress":
        msg = cls(job=r.job(), stage=r.name("stage", optional=True, allow_empty=True),
                  step=r.integer("step", 0, MAX_STEPS), total=r.integer("total", 0, MAX_STEPS),
                  eta_s=r.number("eta_s"), metrics=r.metrics("metrics"), preview=r.blob("preview", png=True))
        if msg.eta_s is not None and msg.eta_s < 0:
            raise ProtocolError(f"header field 'eta_s' must be >= 0, got {msg.eta_s}")
        return msg


@dataclass
class Result:
    """Server -> client: a finished job's output. Geometry comes back in the source object's local space."""

    TYPE: ClassVar[str] = "result"
    job: str
    kind: str
    fields: dict = field(default_factory=dict)
    """JSON figures and names (e.g. {"views": 8, "names": ["view_000", ...]})."""
    arrays: dict[str, Array] = field(default_factory=dict)
    """Named arrays (e.g. vertices of a new mesh)."""
    blobs: dict[str, bytes] = field(default_factory=dict)
    """Named blobs: "mesh" (GLB), "view_000" (PNG), ..."""

    def to_header(self, w: HeaderWriter) -> dict:
        return {"job": self.job, "kind": self.kind, "fields": self.fields,
                "arrays": w.named_arrays(self.arrays, "arrays"), "blobs": w.named_blobs(self.blobs, "blobs")}

    @classmethod
    def from_header(cls, r: HeaderReader) -> "Result":
        return cls(job=r.job(), kind=r.name("kind"), fields=r.json_dict("fields"),
                   arrays=r.named_arrays("arrays"), blobs=r.named_blobs("blobs"))


@dataclass
class Error:
    """Server -> client: a failure (or a cancellation, code "cancelled"). `hint` says the fix.

    Codes in use: bad_message, too_large, unknown_type, protocol_mismatch, unknown_kind, duplicate_job,
    queue_full, unknown_job, cancelled, shutdown, invalid_input, weights_missing, dependency_missing,
    out_of_memory, internal.
    """

    TYPE: ClassVar[str] = "error"
    code: str
    message: str
    hint: str = ""
    job: str | None = None
    """The job this is about; None for errors about a message that named no (valid) job."""

    def to_header(self, w: HeaderWriter) -> dict:
        return {"code": self.code, "message": self.message, "hint": self.hint, "job": self.job}

    @classmethod
    def from_header(cls, r: HeaderReader) -> "Error":
        return cls(code=r.code("code"), message=r.string("message"), hint=r.string("hint", optional=True),
                   job=r.job(optional=True))


@dataclass
class Cancel:
    """Client -> server: stop a running job within one step, or drop a queued one."""

    TYPE: ClassVar[str] = "cancel"
    job: str

    def to_header(self, w: HeaderWriter) -> dict:
        return {"job": self.job}

    @classmethod
    def from_header(cls, r: HeaderReader) -> "Cancel":
        return cls(job=r.job())


@dataclass
class Status:
    """Client -> server with no fields: a request; server -> client: the reply, answered even mid-job."""

    TYPE: ClassVar[str] = "status"
    queue: list[str] = field(default_factory=list)
    """This client's queued job ids, in order."""
    running: str | None = None
    """This client's running job id, if any."""
    busy: bool = False
    """Whether any job (of any client) is running."""
    queued_total: int = 0
    """Jobs queued by all clients."""
    device: str = ""
    """The device jobs run on."""

    def to_header(self, w: HeaderWriter) -> dict:
        return {"queue": self.queue, "running": self.running, "busy": self.busy,
                "queued_total": self.queued_total, "device": self.device}

    @classmethod
    def from_header(cls, r: HeaderReader) -> "Status":
        return cls(queue=r.names("queue", job_ids=True), running=r.job("running", optional=True),
                   busy=r.boolean("busy"), queued_total=r.integer("queued_total", 0, MAX_STEPS, optional=True),
                   device=r.string("device", max_chars=64, optional=True))


@dataclass
class Release:
    """Client -> server: drop cached models and free GPU memory; the server answers with a `release` ack."""

    TYPE: ClassVar[str] = "release"

    def to_header(self, w: HeaderWriter) -> dict:
        return {}

    @classmethod
    def from_header(cls, r: HeaderReader) -> "Release":
        return cls()


@dataclass
class Shutdown:
    """Client -> server: stop the backend; it answers with a `shutdown` ack, then cancels jobs and exits."""

    TYPE: ClassVar[str] = "shutdown"

    def to_header(self, w: HeaderWriter) -> dict:
        return {}

    @classmethod
    def from_header(cls, r: HeaderReader) -> "Shutdown":
        return cls()


Message = Union[Hello, Welcome, Submit, Accepted, Progress, Result, Error, Cancel, Status, Release, Shutdown]

MESSAGE_TYPES: dict[str, type] = {
    cls.TYPE: cls
    for cls in (Hello, Welcome, Submit, Accepted, Progress, Result, Error, Cancel, Status, Release, Shutdown)
}
"""`type` field -> dataclass."""
