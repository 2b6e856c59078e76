"""Fine-tuning a pre-aligned point encoder on an indexed library (`atelier finetune-points`, issue 23): captions
from metadata, the library's meshes, InfoNCE and the hard contrastive loss from an init encoder, and bad input."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from library_helpers import domain_index, one_thread, write_world_library
from backend.cli import main
from backend.errors import InvalidInputError
from backend.models.clip import load_clip
from backend.retrieve import finetune_points as fp
from backend.retrieve.db_schema import ShapeRecord
from backend.retrieve.finetune_points import finetune_config, finetune_points, name_words, resolve_init, shape_captions
from backend.retrieve.point_encoder import PointEncoder, PointEncoderConfig, load_point_encoder, save_point_encoder
from backend.retrieve.train_points import PointTrainConfig, train_point_encoder, world_teacher
from backend.retrieve.train_points import main as train_points_main

pytestmark = pytest.mark.timeout(300)

TINY = PointEncoderConfig(centres=16, group_size=8, width=32, group_hidden=16, layers=1, heads=2)
FAST = PointTrainConfig(points=128, clouds_per_shape=2, views=2, captions_per_shape=2, steps=30, batch=16, lr=1e-3,
                        warmup=3)
"""Small clouds, two views: a fine-tuning run on the 16-shape library in seconds."""
INIT_TEMPERATURE = 0.15
"""The init encoder's temperature (FAST's is 0.07)."""


def record(**fields) -> ShapeRecord:
    values = dict(relpath="props/OakChair_02.blend", sha256="0", size=1, mtime_ns=1, name="OakChair_02", category=None,
                  faces=1, vertices=3, bbox=[[0, 0, 0], [1, 1, 1]])
    return ShapeRecord(**{**values, **fields})


# ------------------------------------------------------------------------------------------------- captions


def test_captions_come_from_the_name_category_catalog_tags_and_description():
    shape = record(catalog="Furniture/Chairs", tags=["wooden", "AntiqueStyle"], description="A sturdy  oak chair.")
    assert shape_captions(shape) == ["a chair", "an oak chair", "oak chair, wooden, antique style", "chair, furniture",
                                     "A sturdy oak chair."]
    assert name_words("HTTPServerLamp2x_big-3") == ["http", "server", "lamp", "big"]
    # The category (a folder name, plural or not) is the noun before the catalog; a name without it gets it added.
    assert shape_captions(record(name="red_velvet_01", category="armchairs")) == ["an armchair", "a red velvet armchair"]
    assert shape_captions(record(name="0042", category=None)) == ["an object"]


# ------------------------------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def init_file(tmp_path_factory):
    """A tiny point encoder pre-aligned to the domain CLIP on 8 world shapes (a few seconds): the init. Its
    temperature is set to INIT_TEMPERATURE, away from the config's, so a test can tell which one a run starts from."""
    config = replace(FAST, shapes=8, seed=21, steps=10, batch=8)
    with one_thread():
        model, _ = train_point_encoder(world_teacher(load_clip("domain"), config), config, TINY)
    with torch.no_grad():
        model.logit_scale.fill_(float(np.log(1 / INIT_TEMPERATURE)))
    path = tmp_path_factory.mktemp("init") / "init.pt"
    save_point_encoder(path, model, config, None, config.steps, [])
    return path


@pytest.mark.parametrize("loss", ["hcl", "info_nce"])
def test_finetuning_on_the_library_lowers_the_loss_and_records_the_clip(loss, init_file, tmp_path):
    _, db, _ = domain_index()
    init = load_point_encoder(init_file)
    before = {k: v.clone() for k, v in init.state_dict().items()}
    config = replace(FAST, loss=loss, beta=0.5)
    out = tmp_path / "tuned.pt"
    with one_thread():
        result = finetune_points(db, config, init=init, out=out)
    assert result.shapes == 16 and not result.skipped and len(result.records) == config.steps
    first = np.mean([r["loss"] for r in result.records[:5]])
    last = np.mean([r["loss"] for r in result.records[-5:]])
    assert last < 0.9 * first, (loss, first, last)
    # The logit scale starts from the init's (config.temperature_from_init), not the config's 0.07.
    assert result.records[0]["temperature"] == pytest.approx(INIT_TEMPERATURE, rel=1e-4)
    assert all(torch.equal(before[k], v) for k, v in init.state_dict().items()), "the init is not modified"
    tuned = load_point_encoder(out, "domain")
    assert tuned.clip_spec == load_clip("domain").spec and tuned.config == init.config
    cloud = torch.as_tensor(np.random.default_rng(0).random((2, 128, 6), dtype=np.float32))
    torch.testing.assert_close(tuned.encode(cloud), result.model.encode(cloud))
    assert 0.0 <= result.recall_after["image"] <= 1.0 and result.recall_after["image"] >= 1 / 16


def test_training_starts_from_the_init_weights_and_a_fresh_temperature_when_the_config_says_so(init_file):
    clip = load_clip("domain")
    init = load_point_encoder(init_file)
    config = replace(FAST, shapes=4, steps=1, batch=4, lr=1e-12, temperature=0.2, temperature_from_init=False)
    with one_thread():
        data = world_teacher(clip, config)
        model, records = train_point_encoder(data, config, init=init)
    assert records[0]["temperature"] == pytest.approx(0.2, rel=1e-3)
    # One step at a negligible rate: the init's embeddings, so the weights were copied, not drawn afresh.
    torch.testing.assert_close(model.encode(data.clouds[:, 0]), init.encode(data.clouds[:, 0]), atol=1e-5, rtol=0)
    with pytest.raises(InvalidInputError, match="encoder_config .* differ"):
        train_point_encoder(data, config, replace(TINY, width=64), init=init)
    narrow = PointEncoder(replace(TINY, embed_dim=16))
    narrow.clip_spec = init.clip_spec
    with pytest.raises(InvalidInputError, match=f"embeds in 16 dimensions, the teacher CLIP in {clip.embed_dim}"):
        train_point_encoder(data, config, init=narrow)


# ------------------------------------------------------------------------------------------------ bad input


@pytest.fixture(scope="module")
def small_library(tmp_path_factory):
    """A 4-shape world library indexed with the domain CLIP: (library folder, database folder)."""
    from backend.retrieve.indexer import index_library
    from backend.retrieve.query import QueryEncoder

    root = tmp_path_factory.mktemp("small")
    library, _ = write_world_library(root / "world", shapes=4)
    with one_thread():
        assert index_library(library, root / "db", QueryEncoder(load_clip("domain"))).indexed == 4
    return library, root / "db"


def test_entries_whose_file_is_gone_are_skipped_and_too_few_shapes_is_an_error(small_library, init_file, tmp_path):
    library, db = small_library
    moved = tmp_path / "moved"
    gone = sorted(library.glob("*.glb"))
    shutil.move(gone[0], moved)
    with one_thread():
        result = finetune_points(db, replace(FAST, steps=2, batch=4), init=init_file)
    assert result.shapes == 3 and [path for path, _ in result.skipped] == [gone[0].name]
    assert "no longer in the library" in result.skipped[0][1]
    for path in gone[1:3]:
        path.unlink()
    with pytest.raises(InvalidInputError, match="1 readable shape.*3 skipped.*at least 2") as info:
        finetune_points(db, FAST, init=init_file)
    assert "atelier index" in info.value.hint


def test_an_init_for_another_clip_or_a_missing_one_is_refused(init_file, tmp_path):
    _, db, _ = domain_index()
    other = PointEncoder(replace(TINY, embed_dim=16))
    other.clip_spec = "tiny"
    path = save_point_encoder(tmp_path / "tiny.pt", other, FAST, None, 0, [])
    with pytest.raises(InvalidInputError, match="trained for the CLIP 'tiny', not 'domain'"):
        finetune_points(db, FAST, init=path)
    with pytest.raises(InvalidInputError, match="'tiny'.*'domain'") as info:  # an encoder object: checked in training
        finetune_points(db, FAST, init=other)
    assert "train_points --clip domain" in info.value.hint
    with pytest.raises(InvalidInputError, match="no point encoder at"):
        finetune_points(db, FAST, init=tmp_path / "missing.pt")
    with pytest.raises(InvalidInputError, match="built from the CLIP 'domain', not 'tiny'"):
        finetune_points(db, FAST, init=init_file, clip="tiny")
    with pytest.raises(InvalidInputError, match="trained for the CLIP 'tiny', not 'domain'"):  # before any training
        train_points_main(["--out", str(tmp_path / "x.pt"), "--clip", "domain", "--init", str(path)])
    assert not (tmp_path / "x.pt").exists()


def test_the_default_init_is_the_shipped_encoder_for_the_domain_clip_only(monkeypatch, tmp_path):
    monkeypatch.setitem(fp.SHIPPED, "domain", tmp_path / "points_domain.pt")
    with pytest.raises(InvalidInputError, match="shipped point encoder .* is not present") as info:
        resolve_init(None, "domain")
    assert "--init PATH" in info.value.hint and "build.py points" in info.value.hint
    with pytest.raises(InvalidInputError, match="no point encoder ships for the CLIP 'tiny'") as info:
        resolve_init(None, "tiny")
    assert "--init PATH" in info.value.hint


@pytest.mark.parametrize("bad, match", [
    ({"loss": "triplet"}, "loss must be"), ({"beta": -1.0}, "beta >= 0"), ({"tau_plus": 1.0}, "tau_plus in"),
    ({"steps": 0}, "steps must be a positive integer"), ({"batch": 1}, "batch of 2"),
])
def test_bad_training_settings_say_the_fix(bad, match):
    with pytest.raises(InvalidInputError, match=match):
        finetune_config(**bad)


# ------------------------------------------------------------------------------------------------------ CLI


def test_the_command_writes_the_checkpoint_and_the_report(init_file, tmp_path, capsys):
    _, db, _ = domain_index()
    out, report_path = tmp_path / "tuned.pt", tmp_path / "report.json"
    with one_thread():
        code = main(["finetune-points", "--db", str(db), "--init", str(init_file), "--loss", "hcl", "--beta", "0.5",
                     "--tau-plus", "0.05", "--steps", "4", "--batch", "8", "--out", str(out), "--device", "cpu",
                     "--report", str(report_path)])
    assert code == 0
    report = json.loads(report_path.read_text())
    assert report["command"] == "finetune-points" and report["device"] == "cpu" and report["shapes"] == 16
    assert report["loss"] == "hcl" and report["beta"] == 0.5 and report["tau_plus"] == 0.05 and report["steps"] == 4
    assert report["clip"] == load_clip("domain").spec and report["init"] == str(init_file)
    for key in ("seconds", "renderer", "loss_first", "loss_last", "seconds_teacher"):
        assert key in report
    assert set(report["train_recall_at_1"]) == {"image", "text"}
    assert load_point_encoder(out, "domain").config == load_point_encoder(init_file).config
    assert "wrote" in capsys.readouterr().out


def test_the_command_names_bad_input(init_file, tmp_path, capsys):
    _, db, _ = domain_index()
    base = ["finetune-points", "--db", str(db), "--out", str(tmp_path / "x.pt"), "--device", "cpu"]
    assert main([*base, "--init", str(init_file), "--beta", "-1"]) == 2
    assert "beta >= 0" in capsys.readouterr().err
    assert main([*base, "--init", str(tmp_path / "missing.pt")]) == 2
    assert "no point encoder at" in capsys.readouterr().err
    assert main(["finetune-points", "--db", str(tmp_path / "nodb"), "--out", str(tmp_path / "x.pt")]) == 2
    assert "no shape library database" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


def test_a_milvus_library_is_read_the_same_way(init_file, tmp_path):
    """The store is chosen as `atelier index --store milvus` chose it (Milvus Lite: a .db file)."""
    from backend.retrieve.indexer import IndexConfig, index_library
    from backend.retrieve.query import QueryEncoder

    library, _ = write_world_library(tmp_path / "world", shapes=3, seed=9)
    uri = str(tmp_path / "lib.db")
    with one_thread():
        report = index_library(library, uri, QueryEncoder(load_clip("domain")), IndexConfig(store="milvus"))
        assert report.indexed == 3
        result = finetune_points(uri, replace(FAST, steps=2, batch=3), store="milvus", init=init_file)
    assert result.shapes == 3 and not result.skipped and result.clip_spec == load_clip("domain").spec
