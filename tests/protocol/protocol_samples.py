"""Sample messages of every type (small, deterministic) shared by the protocol tests."""

from __future__ import annotations

from shared_protocol import (
    Accepted, Array, Cancel, Error, Hello, MeshPayload, Progress, Release, Result, Shutdown, Status, Submit, Welcome,
)
from shared_protocol.limits import PNG_SIGNATURE

PNG = PNG_SIGNATURE + b"\x00\x00\x00\rIHDR fake png body"

CUBE_VERTICES = [[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)]
CUBE_FACES = [[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
              [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]]


def cube_payload(**changes) -> MeshPayload:
    fields = dict(vertices=Array.from_list(CUBE_VERTICES, "float32"), faces=Array.from_list(CUBE_FACES, "int32"))
    fields.update(changes)
    return MeshPayload(**fields)


def sample_messages() -> list:
    full_mesh = cube_payload(
        uv=Array.from_list([[i / 36, 1 - i / 36] for i in range(36)], "float32"), uv_domain="corner",
        vertex_colors=Array.from_list([[0.1, 0.2, 0.3, 1.0]] * 8, "float32"), texture=PNG,
        transform=tuple(float(i) for i in range(16)))
    return [
        Hello(client="tests 0.1"),
        Welcome(server="0.1.0", device="cpu", renderer="torch", job_kinds=["render", "echo"], models=["ViT-B-32"],
                log_path="/tmp/atelier/server.log", max_blob_bytes=1 << 20),
        Submit(job="job-1", kind="render", params={"views": 8, "size": 64, "background": [1, 1, 1]}),
        Submit(job="job-2", kind="echo", params={"nested": {"a": [1, 2.5, None, True, "x"]}}, mesh=full_mesh,
               arrays={"strokes": Array.from_list([[0.0, 0.5], [1.0, 0.25]], "float32")}, blobs={"sketch": PNG}),
        Submit(job="job-3", kind="render", mesh=cube_payload()),
        Accepted(job="job-1", position=3),
        Progress(job="job-1", stage="render", step=2, total=8, eta_s=1.5, metrics={"loss": 0.25, "nan": None}),
        Progress(job="job-1", stage="", step=0, total=0, preview=PNG),
        Result(job="job-1", kind="render", fields={"views": 2, "names": ["view_000", "view_001"]},
               arrays={"image": Array.from_list([[[1, 2, 3]]], "uint8")}, blobs={"view_000": PNG, "view_001": PNG}),
        Result(job="j", kind="render"),
        Error(code="invalid_input", message="the mesh is empty", hint="select a mesh", job="job-1"),
        Error(code="bad_message", message="header is not valid JSON"),
        Cancel(job="job-1"),
        Status(),
        Status(queue=["a", "b"], running="c", busy=True, queued_total=5, device="cuda:0"),
        Release(),
        Shutdown(),
    ]
