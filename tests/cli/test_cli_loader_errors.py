"""A file that is not a checkpoint, named where a model is expected: one clear line (exit 2) from the CLI and
`invalid_input` from the server, never a traceback or `internal`."""

from __future__ import annotations

import os

import pytest
import trimesh

from backend.cli import main
from backend.geometry.primitives import icosphere
from backend.errors import InvalidInputError
from backend.models.clip import load_clip

JUNK = {
    "text": b"root:x:0:0:root:/root:/bin/bash\n",
    "random": os.urandom(3000),
    "empty": b"",
    "zip-looking": b"PK\x03\x04" + b"\x00" * 64,
}


@pytest.fixture()
def sphere_obj(tmp_path):
    mesh = icosphere(1)
    path = tmp_path / "sphere.obj"
    trimesh.Trimesh(mesh.vertices, mesh.faces, process=False).export(path)
    return path


@pytest.fixture(params=sorted(JUNK))
def junk_file(request, tmp_path):
    path = tmp_path / f"junk-{request.param}.pt"
    path.write_bytes(JUNK[request.param])
    return path


@pytest.mark.parametrize("prefix", ["", "ViT-B-32:"])
def test_load_clip_refuses_junk_with_the_fix(junk_file, prefix):
    with pytest.raises(InvalidInputError) as err:
        load_clip(f"{prefix}{junk_file}")
    assert str(junk_file) in err.value.message and err.value.hint
    assert len(err.value.message) < 400


def test_passwd_is_not_a_clip(capsys, sphere_obj, tmp_path):
    code = main(["stylize", str(sphere_obj), "--prompt", "a ball", "--steps", "1", "--out", str(tmp_path / "o.glb"),
                 "--clip", "/etc/passwd", "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "could not read /etc/passwd: not a checkpoint torch can read" in err and "Traceback" not in err
    assert not (tmp_path / "o.glb").exists()


def test_junk_clip_in_restyle_and_index(capsys, junk_file, sphere_obj, tmp_path):
    code = main(["index", str(tmp_path), "--db", str(tmp_path / "db"), "--clip", str(junk_file), "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and str(junk_file) in err, err
