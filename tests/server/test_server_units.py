"""The server's parts in-process: queue, progress throttling, registry, numpy arrays, the Blender->glTF boundary."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from server_helpers import payload_from_mesh

from backend.errors import AtelierError, JobCancelled
from backend.geometry.primitives import cube, textured_cube
from backend.geometry.validate import validate_mesh
from backend.render.turntable import render_turntable
from backend.server.arrays import from_numpy, to_numpy
from backend.server.config import ServerConfig
from backend.server.context import JobOutput
from backend.server.jobqueue import Job, JobQueue
from backend.server.jobs import JOB_HANDLERS, build_registry, register_job
from backend.server.meshes import decode_mesh, to_backend_mesh
from backend.server.worker import ProgressReporter, error_message
from shared_protocol import Array, Progress, ProtocolError, Submit, to_frames


def job(client: bytes, job_id: str) -> Job:
    return Job(client=client, submit=Submit(job=job_id, kind="echo"))


def test_queue_positions_cancel_and_close():
    q = JobQueue(max_queued=2)
    a, b, c = job(b"A", "1"), job(b"A", "2"), job(b"B", "1")
    assert q.put(a) == 0 and q.take() is a
    assert q.put(b) == 1 and q.put(c) == 2
    with pytest.raises(AtelierError) as info:
        q.put(job(b"B", "3"))
    assert info.value.code == "queue_full"
    with pytest.raises(AtelierError) as info:
        q.put(job(b"A", "2"))
    assert info.value.code == "duplicate_job"
    assert q.snapshot(b"A") == (["2"], "1", True, 2) and q.snapshot(b"B") == (["1"], None, True, 2)
    assert q.cancel(b"B", "2") is None and q.cancel(b"A", "2") == "queued" and b.token.cancelled
    assert q.cancel(b"A", "1") == "running" and a.token.cancelled
    q.finish(a)
    assert q.close() == [c] and c.token.cancelled and q.take() is None


def test_progress_reporter_throttles_keeps_last_and_checks_cancel():
    sent = []
    j = job(b"A", "p")
    report = ProgressReporter(j, lambda _job, msg: sent.append(msg), rate=20.0)
    for step in range(1, 1001):
        report(step, 1000, stage="optimize", loss=torch.tensor(1.0 / step), bad=float("nan"), **{"clip/score": 2})
    assert 1 <= len(sent) < 10 and sent[-1].step == 1000
    assert sent[-1].metrics == {"loss": pytest.approx(0.001), "bad": None, "clip_score": 2.0}
    assert all(isinstance(to_frames(m), list) for m in sent)  # every one encodes
    report(1, 5, stage="export")  # a new stage always goes out
    assert isinstance(sent[-1], Progress) and sent[-1].stage == "export"
    j.token.cancel()
    with pytest.raises(JobCancelled):
        report(2, 5, stage="export")


def test_progress_reporter_never_drops_a_preview():
    sent = []
    report = ProgressReporter(job(b"A", "p"), lambda _job, msg: sent.append(msg), rate=1.0)
    for step in range(1, 101):
        report(step, 100, stage="restyle", preview_png=b"png" if step % 10 == 0 else None, loss=1.0)
    assert [m.step for m in sent if m.preview] == list(range(10, 101, 10))
    assert len(sent) == 11  # the first update, and the ten previews (the last among them)


def test_error_message_always_encodes():
    msg = error_message("Not-A-Code", "m" * 10_000, "h" * 10_000, job="j")
    assert msg.code == "internal" and len(msg.message) == 4096
    to_frames(msg)


def test_registry_rejects_duplicates_and_bad_names():
    assert "render" in JOB_HANDLERS
    with pytest.raises(ValueError, match="registered twice"):
        build_registry([("x", lambda ctx: JobOutput()), ("x", lambda ctx: JobOutput())])
    with pytest.raises(ValueError, match="registered twice"):
        register_job("render", lambda ctx: JobOutput())
    with pytest.raises(ValueError, match="must be 1-64 characters"):
        register_job("bad name", lambda ctx: JobOutput(), {})


def test_config_validates():
    with pytest.raises(ValueError, match="max_blob_bytes"):
        ServerConfig(max_blob_bytes=0)
    assert ServerConfig().log_path.name.endswith(".log")


def test_numpy_round_trip():
    rng = np.random.default_rng(0)
    for a in (rng.normal(size=(5, 3)).astype(np.float32), rng.integers(0, 9, (4, 3), dtype=np.int32),
              rng.integers(0, 255, (2, 2, 3), dtype=np.uint8), np.zeros((0, 3), np.float32),
              rng.normal(size=(3, 2)).astype(">f4")):
        arr = from_numpy(a)
        assert isinstance(arr, Array)
        back = to_numpy(arr)
        assert back.dtype == a.dtype.newbyteorder("=") and np.array_equal(back, a) and back.flags.writeable
    with pytest.raises(ValueError, match="astype"):
        from_numpy(np.zeros(3, np.float64))
    assert Array.from_list([[1.0, 2.0]], "float32").data == from_numpy(np.array([[1, 2]], np.float32)).data


def test_blender_frame_is_converted_to_gltf():
    payload = payload_from_mesh(cube())
    mesh = to_backend_mesh(decode_mesh(payload))
    np.testing.assert_allclose(mesh.vertices, cube().vertices, atol=1e-7)  # Z up -> Y up undone exactly
    blender_up = to_numpy(payload.vertices)[:, 2]
    np.testing.assert_allclose(mesh.vertices[:, 1], blender_up)  # Blender +Z is glTF +Y


def test_corner_uvs_are_split_at_seams_and_flipped():
    textured = textured_cube()
    per_vertex = to_backend_mesh(decode_mesh(payload_from_mesh(textured, corner_uv=False)))
    per_corner = to_backend_mesh(decode_mesh(payload_from_mesh(textured, corner_uv=True)))
    np.testing.assert_allclose(per_vertex.uv, textured.uv, atol=1e-6)
    # Corners that share a vertex and a UV share one backend vertex: only seams split.
    assert per_corner.num_vertices == textured.num_vertices
    np.testing.assert_allclose(per_corner.uv[per_corner.faces], textured.uv[textured.faces], atol=1e-6)
    source = per_corner.metadata["source_vertex"]
    np.testing.assert_allclose(per_corner.vertices, per_vertex.vertices[source], atol=1e-7)
    a = render_turntable(validate_mesh(per_vertex), views=2, size=64)
    b = render_turntable(validate_mesh(per_corner), views=2, size=64)
    diff = np.abs(a.astype(int) - b.astype(int))
    assert (diff > 2).mean() < 0.01 and diff.mean() < 0.5


def test_corner_uvs_with_bad_face_indices_are_invalid_input():
    payload = payload_from_mesh(textured_cube(), corner_uv=True)
    arrays = decode_mesh(payload)
    arrays.faces[0, 0] = 10_000
    with pytest.raises(AtelierError, match="face index 10000 is out of range for 24 vertices"):
        to_backend_mesh(arrays)


def test_array_constructor_rejects_non_bytes():
    with pytest.raises(ProtocolError, match="must be bytes"):
        Array("uint8", (1,), bytearray(b"x"))
