"""Every loader a job's params reach (CLIP file, TASK-former, generator, SAM) answers a file that is not its
checkpoint with `invalid_input` naming the file, never `internal`; the server keeps serving."""

from __future__ import annotations

import pytest
from server_helpers import cube_payload, status
from test_server_segment import photo  # noqa: F401  (the fixture)

from shared_protocol import Error, Status, Submit

pytestmark = pytest.mark.timeout(120)

JUNK = {"text.txt": b"hello, not a checkpoint\n", "passwd": b"root:x:0:0:root:/root:/bin/bash\n",
        "empty.pt": b""}


@pytest.fixture
def junk(tmp_path):
    paths = {}
    for name, data in JUNK.items():
        paths[name] = tmp_path / name
        paths[name].write_bytes(data)
    return paths


def submits(path: str, lib: str, photo_png: bytes) -> list[Submit]:
    return [
        Submit(job="stylize", kind="stylize", params={"prompt": "a red cube", "clip": path, "steps": 1},
               mesh=cube_payload()),
        Submit(job="stylize-arch", kind="stylize", params={"prompt": "a red cube", "clip": f"ViT-B-32:{path}",
                                                           "steps": 1}, mesh=cube_payload()),
        Submit(job="index", kind="index", params={"library": lib, "db": lib + "-db", "clip": "tiny",
                                                  "checkpoint": path}),
        Submit(job="generate", kind="generate", params={"prompt": "a chair", "checkpoint": path}),
        Submit(job="segment", kind="segment", params={"prompt": "the chair", "proposer": "sam",
                                                      "sam_checkpoint": path, "relevance": "dense-clip",
                                                      "clip": "tiny"}, blobs={"image": photo_png}),
    ]


@pytest.mark.parametrize("name", sorted(JUNK))
def test_junk_checkpoints_are_invalid_input_for_every_loader(client, junk, name, tmp_path, photo):  # noqa: F811
    path = str(junk[name])
    for submit in submits(path, str(tmp_path / "lib"), photo):
        client.send(submit)
        error = list(client.job_messages(submit.job, timeout=60))[-1]
        assert isinstance(error, Error) and error.code == "invalid_input", (submit.job, error)
        assert path in error.message and "Traceback" not in error.message, (submit.job, error.message)
    assert isinstance(status(client), Status)
