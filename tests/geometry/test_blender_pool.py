"""BlenderPool on a real asset library built with the bpy module (tests/assets/asset_library.py)."""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backend.geometry import blender_pool
from backend.geometry.blender_pool import (MARKER, READY, TEST_HOOK_ENV, WORKER_SCRIPT, BlenderConfig,
                                           BlenderNotFoundError, BlenderPool, BlenderStartError,
                                           blend_header_version, find_blender)
from backend.geometry.load import load_mesh
from tests.assets.asset_library import BAD_INPUTS, build_asset_library


@pytest.fixture(scope="module")
def library(tmp_path_factory, bpy_python):
    return build_asset_library(tmp_path_factory.mktemp("asset_library"), bpy_python, extras=True)


def _extract(library, out: Path, blend_objects: str = "assets", workers: int = 2, paths=None):
    with BlenderPool(BlenderConfig(blender=None, workers=workers, timeout_s=120, blend_objects=blend_objects)) as pool:
        results = list(pool.extract(library.files() if paths is None else paths, out))
    return {r.path.relative_to(library.root.resolve()).as_posix(): r for r in results}


@pytest.fixture(scope="module")
def extracted(library, tmp_path_factory):
    return _extract(library, tmp_path_factory.mktemp("extracted"))


def _entries(results):
    return [(rel, a.datablock, a.name, a) for rel, r in results.items() for a in r.assets]


def test_every_marked_asset_appears_exactly_once_with_its_metadata(library, extracted):
    entries = _entries(extracted)
    keys = [(rel, kind, name) for rel, kind, name, _ in entries if kind != "File"]
    assert len(library.assets) >= 20
    assert sorted(keys) == sorted(library.assets)  # each once, nothing unmarked, no collection member alone
    for rel, kind, name, asset in entries:
        if kind == "File":
            continue
        spec = library.assets[(rel, kind, name)]
        assert asset.marked and asset.error is None
        assert asset.catalog_id == library.catalogs[spec["catalog"]]
        assert asset.tags == spec["tags"] and asset.description == spec["description"]
        assert (asset.author, asset.license, asset.copyright) == ("Atelier Tests", "CC-BY-4.0", "(c) Atelier")
        assert asset.glb is not None and asset.glb.is_file()
        preview = np.asarray(Image.open(asset.preview).convert("RGB"), dtype=np.float32)
        assert preview.shape == (32, 32, 3)
        # The preview's ramp is brightest at Blender's top row: the PNG must be written top-down.
        assert preview[0].mean() > preview[-1].mean()
        assert int(np.argmax(preview[0].mean(0))) == int(np.argmax(spec["preview"]))
    catalogs = {library.assets[key]["catalog"] for key in library.assets}
    assert {"Furniture/Chairs", "Furniture/Tables", "Props/Lighting/Lamps"} <= catalogs


def test_a_collection_is_one_entry_with_all_its_objects(library, extracted):
    assets = {a.name: a for a in extracted["furniture/chairs.blend"].assets}
    armchair = assets["Armchair_Set"]
    assert armchair.datablock == "Collection"
    assert not {"Armchair_Seat", "Armchair_Back", "Armchair_Cushion"} & set(assets)
    single = load_mesh(assets["Chair_Oak"].glb)
    joined = load_mesh(armchair.glb)
    # Seat + back (cubes) + the cushion from the nested child collection.
    assert joined.vertices.shape[0] > 2 * 24
    assert joined.vertices[:, 2].max() > single.vertices[:, 2].max()


def test_the_exported_glb_keeps_colours_textures_modifiers_and_hidden_objects(extracted):
    assets = {a.name: a for a in extracted["furniture/chairs.blend"].assets}
    red = load_mesh(assets["Chair_Red"].glb)
    assert red.vertex_colors is not None
    np.testing.assert_allclose(red.vertex_colors[:, :3].mean(0), [0.8, 0.05, 0.05], atol=0.02)
    assert red.vertices.shape[0] > 100  # a cube's 24 corners, bevelled and subdivided
    assert load_mesh(assets["Stool_Textured"].glb).texture is not None
    assert load_mesh(assets["Chair_Hidden"].glb).vertices.shape[0] > 0


def test_unmarked_meshes_only_with_blend_objects_all(library, extracted, tmp_path):
    rock = "scans/unmarked_rock.blend"
    assert extracted[rock].ok and extracted[rock].assets == []
    everything = _extract(library, tmp_path, "all", paths=[library.root / rock, library.root / "furniture/chairs.blend"])
    assert [(a.datablock, a.name, a.marked) for a in everything[rock].assets] == [("Object", "Rock_Scan", False)]
    chairs = {a.name for a in everything["furniture/chairs.blend"].assets}
    assert {"Armchair_Set", "Armchair_Seat", "Chair_Oak"} <= chairs  # members as meshes, the set still once


def test_fbx_usd_and_alembic_give_one_loadable_entry_each(library, extracted):
    assert len([p for p in library.exports if p.endswith(".fbx")]) == 2
    for rel in library.exports:
        result = extracted[rel]
        assert result.ok, result.error
        [entry] = result.assets
        assert entry.datablock == "File" and entry.name == Path(rel).stem
        assert load_mesh(entry.glb).faces.shape[0] > 0
    stool = load_mesh(extracted["downloads/stool_red.fbx"].assets[0].glb)
    np.testing.assert_allclose(stool.vertex_colors[:, :3].mean(0), [0.8, 0.05, 0.05], atol=0.02)


@pytest.mark.parametrize("key, reason", [
    ("corrupt", "Blender cannot open it"),
    ("truncated", "truncated .blend file"),
    ("newer", "saved by Blender 9.9, newer than this Blender"),
    ("encrypted", "USDZ importer failed"),
])
def test_bad_files_fail_with_a_clear_reason(library, extracted, key, reason):
    rel = library.corrupt[0] if key == "corrupt" else BAD_INPUTS[key]
    result = extracted[rel]
    assert not result.ok and reason in result.error, result.error
    assert result.hint
    if key == "newer":
        assert "--blender PATH" in result.hint


def test_a_blend_with_no_assets_and_a_non_ascii_path_are_read(extracted):
    empty = extracted[BAD_INPUTS["empty"]]
    assert empty.ok and empty.assets == []
    [stuhl] = extracted[BAD_INPUTS["non_ascii"]].assets
    assert stuhl.name == "Stuhl_Möbel" and stuhl.tags == ["stuhl", "möbel"] and stuhl.glb.is_file()


def test_a_hung_or_crashed_worker_is_replaced_and_the_run_goes_on(library, tmp_path, monkeypatch):
    monkeypatch.setenv(TEST_HOOK_ENV, "hang:tables.blend,crash:lighting.blend")
    paths = [library.root / p for p in ("furniture/tables.blend", "props/lighting.blend", "furniture/chairs.blend")]
    with BlenderPool(BlenderConfig(workers=1, timeout_s=10)) as pool:
        results = {r.path.name: r for r in pool.extract(paths, tmp_path)}
        assert results["tables.blend"].error == "timed out after 10 s"
        assert results["lighting.blend"].error.startswith("Blender crashed reading it")
        assert results["chairs.blend"].ok and len(results["chairs.blend"].assets) == 8
        # The pool is still usable after both replacements.
        again = list(pool.extract([library.root / "furniture/chairs.blend"], tmp_path))
        assert again[0].ok


def test_closing_the_iterator_early_cancels_the_rest(library, tmp_path):
    with BlenderPool(BlenderConfig(workers=1)) as pool:
        stream = pool.extract(library.files(), tmp_path)
        next(stream)
        stream.close()
        assert all(worker is None for worker in pool._workers)


def test_no_blender_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv("ATELIER_BLENDER", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(blender_pool, "REPO_BLENDER_PYTHON", tmp_path / "missing" / "python")
    assert find_blender(None) is None
    with pytest.raises(BlenderNotFoundError) as raised:
        BlenderPool(BlenderConfig())
    assert "--blender PATH" in str(raised.value) and "ATELIER_BLENDER" in str(raised.value)
    with pytest.raises(BlenderNotFoundError, match="--blender names"):
        find_blender(str(tmp_path / "no_blender"))
    monkeypatch.setenv("ATELIER_BLENDER", str(tmp_path / "nope"))
    with pytest.raises(BlenderNotFoundError, match="ATELIER_BLENDER names"):
        find_blender(None)


def test_a_python_without_bpy_fails_to_start_with_its_reason():
    with BlenderPool(BlenderConfig(blender=sys.executable)) as pool:
        with pytest.raises(BlenderStartError, match="bpy"):
            pool.start()


def test_blend_header_versions(tmp_path):
    old = tmp_path / "old.blend"
    old.write_bytes(b"BLENDER-v405" + b"\0" * 100 + b"ENDB" + b"\0" * 20)
    assert blend_header_version(old) == (4, 5)
    new = tmp_path / "new.blend"
    new.write_bytes(b"BLENDER17-01v0500" + b"\0" * 100 + b"ENDB" + b"\0" * 28)
    assert blend_header_version(new) == (5, 0)
    packed = tmp_path / "packed.blend"
    packed.write_bytes(gzip.compress(old.read_bytes()))
    assert blend_header_version(packed) is None
    cut = tmp_path / "cut.blend"
    cut.write_bytes(new.read_bytes()[:60])
    with pytest.raises(ValueError, match="truncated"):
        blend_header_version(cut)
    for name, data in (("tiny.blend", b"BLE"), ("text.blend", b"hello, this is not blender data")):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ValueError, match="not a .blend"):
            blend_header_version(tmp_path / name)


def test_the_worker_speaks_the_same_protocol():
    # The worker runs in Blender's Python and cannot import this package: its constants are copies.
    source = WORKER_SCRIPT.read_text(encoding="utf-8")
    for name, value in (("READY", READY), ("MARKER", MARKER), ("TEST_HOOK_ENV", TEST_HOOK_ENV)):
        assert f'{name} = "{value}"' in source


def test_config_refuses_bad_values():
    with pytest.raises(ValueError, match="blend_objects"):
        BlenderConfig(blend_objects="meshes")
    with pytest.raises(ValueError, match="workers"):
        BlenderConfig(workers=-1)
    with pytest.raises(ValueError, match="timeout_s"):
        BlenderConfig(timeout_s=0)
