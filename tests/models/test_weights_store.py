"""The weights manager: cache locations, list, import, and pulls that fail fast without a network."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import os
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from backend.errors import InvalidInputError, WeightsMissingError
from backend.models import store
from backend.models.catalogue import CATALOGUE, WeightsInfo, WeightsSource, open_clip_info
from backend.models.importer import import_file
from backend.models.store import download_url, find_weights, list_models, pull


def _rows() -> dict[str, dict]:
    return {row["name"]: row for row in list_models()}


def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("this code path must not touch the network")

    monkeypatch.setattr(store, "_probe", refuse)
    monkeypatch.setattr(store.urllib.request, "urlopen", refuse)


def _fake_sam(path: Path) -> Path:
    torch.save({"image_encoder.patch_embed.proj.weight": torch.zeros(4, 3, 2, 2),
                "mask_decoder.iou_token.weight": torch.ones(1, 4)}, path)
    return path


def test_cache_dirs_follow_the_environment(empty_caches: Path, monkeypatch: pytest.MonkeyPatch):
    assert store.weights_dir() == empty_caches / "atelier" / "weights"
    assert store.hf_hub_cache() == empty_caches / "hf" / "hub"
    monkeypatch.delenv("HF_HUB_CACHE")
    assert store.hf_hub_cache() == empty_caches / "hf" / "hub"  # HF_HOME/hub
    monkeypatch.delenv("HF_HOME")
    assert store.hf_hub_cache() == empty_caches / "xdg" / "huggingface" / "hub"
    monkeypatch.delenv("ATELIER_HOME")
    assert store.weights_dir() == empty_caches / "home" / ".cache" / "atelier" / "weights"
    assert store.open_clip_cache_dir() == empty_caches / "home" / ".cache" / "clip"


def test_nothing_is_present_in_empty_caches(empty_caches: Path, monkeypatch: pytest.MonkeyPatch):
    _no_network(monkeypatch)
    rows = _rows()
    assert set(rows) == set(CATALOGUE)
    for name, row in rows.items():
        assert row["present"] is False and row["path"] is None
        assert row["size"] == CATALOGUE[name].approx_bytes
        assert row["licence"] and row["url"].startswith("https://")


def test_list_models_sees_a_file_in_the_hf_cache(empty_caches: Path, place_hf_file, monkeypatch: pytest.MonkeyPatch):
    _no_network(monkeypatch)
    info = CATALOGUE["ViT-B-32:openai"]
    fake = place_hf_file(empty_caches / "hf" / "hub", info.source.hf_repo, info.source.hf_filenames[0], b"x" * 123)
    rows = _rows()
    assert rows["ViT-B-32:openai"]["present"] is True
    assert Path(rows["ViT-B-32:openai"]["path"]) == fake and rows["ViT-B-32:openai"]["size"] == 123
    assert not any(row["present"] for name, row in rows.items() if name != "ViT-B-32:openai")
    # The pickle open_clip falls back to counts too.
    other = CATALOGUE["RN50:openai"]
    place_hf_file(empty_caches / "hf" / "hub", other.source.hf_repo, other.source.hf_filenames[-1])
    assert _rows()["RN50:openai"]["present"] is True


def test_find_weights_sees_open_clip_url_cache_and_the_store(empty_caches: Path, monkeypatch: pytest.MonkeyPatch):
    _no_network(monkeypatch)
    info = CATALOGUE["ViT-B-16:openai"]
    url_file = store.open_clip_cache_dir() / info.source.url.rsplit("/", 1)[-1]
    url_file.parent.mkdir(parents=True)
    url_file.write_bytes(b"torchscript")
    assert find_weights("ViT-B-16:openai") == url_file
    stored = store.weights_dir() / f"{info.filename}.safetensors"
    stored.parent.mkdir(parents=True)
    stored.write_bytes(b"imported")
    assert find_weights("ViT-B-16:openai") == stored  # the Atelier store wins
    sam = _fake_sam(store.weights_dir() / "sam_vit_l_0b3195.pth")
    assert _rows()["sam_vit_l"]["present"] is True and find_weights("sam_vit_l") == sam


def test_find_weights_rejects_unknown_names(empty_caches: Path):
    with pytest.raises(InvalidInputError, match="unknown weights name"):
        find_weights("ViT-B-32:no_such_tag")


def test_import_file_stores_a_sam_checkpoint(empty_caches: Path, tmp_path: Path):
    src = _fake_sam(tmp_path / "downloaded.pth")
    dest = import_file("sam_vit_b", src)
    assert dest == store.weights_dir() / "sam_vit_b_01ec64.pth"
    assert dest.read_bytes() == src.read_bytes()
    assert find_weights("sam_vit_b") == dest
    row = _rows()["sam_vit_b"]
    assert row["present"] and row["size"] == src.stat().st_size
    assert import_file("sam_vit_b", dest) == dest  # importing the stored file again is a no-op


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks need privileges on Windows")
def test_import_file_can_link(empty_caches: Path, tmp_path: Path):
    src = _fake_sam(tmp_path / "sam.pth")
    dest = import_file("sam_vit_h", src, link=True)
    assert dest.is_symlink() and dest.resolve() == src.resolve()


@pytest.mark.parametrize("content", ["tensor", "no_encoder", "garbage", "four_bytes"])
def test_import_file_rejects_what_is_not_a_sam_checkpoint(empty_caches: Path, tmp_path: Path, content: str):
    path = tmp_path / "bad.pth"
    if content == "tensor":
        torch.save(torch.zeros(3), path)
    elif content == "no_encoder":
        torch.save({"visual.proj": torch.zeros(3)}, path)
    elif content == "four_bytes":
        path.write_bytes(b"junk")  # torch.load raises struct.error on this one
    else:
        path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(InvalidInputError) as err:
        import_file("sam_vit_b", path)
    assert err.value.hint
    assert find_weights("sam_vit_b") is None


def test_import_file_rejects_a_missing_file(empty_caches: Path, tmp_path: Path):
    with pytest.raises(InvalidInputError, match="is not a file"):
        import_file("sam_vit_b", tmp_path / "nope.pth")


def _small_clip_entry(monkeypatch: pytest.MonkeyPatch) -> WeightsInfo:
    """A catalogue entry for the smallest standard open_clip architecture (43 M parameters)."""
    info = dataclasses.replace(open_clip_info("ViT-S-32-alt", "test"), name="ViT-S-32-alt:test",
                               filename="ViT-S-32-alt--test", licence="MIT")
    monkeypatch.setitem(CATALOGUE, info.name, info)
    return info


def test_import_file_checks_clip_weights_load(empty_caches: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              small_arch_weights):
    info = _small_clip_entry(monkeypatch)
    dest = import_file(info.name, small_arch_weights[1])
    assert dest == store.weights_dir() / "ViT-S-32-alt--test.pt" and find_weights(info.name) == dest
    assert dest.read_bytes() == small_arch_weights[1].read_bytes()
    wrong = tmp_path / "wrong.pt"
    torch.save({"visual.proj": torch.zeros(2, 2)}, wrong)
    with pytest.raises(InvalidInputError, match="could not load"):
        import_file(info.name, wrong)
    assert find_weights(info.name) == dest  # the good copy stays


def test_pull_returns_a_present_file_without_the_network(empty_caches: Path, monkeypatch: pytest.MonkeyPatch):
    _no_network(monkeypatch)
    store.weights_dir().mkdir(parents=True)
    path = _fake_sam(store.weights_dir() / "sam_vit_b_01ec64.pth")
    assert pull("sam_vit_b", progress=False) == path


@pytest.fixture
def unreachable_sam(monkeypatch: pytest.MonkeyPatch) -> WeightsInfo:
    # .invalid never resolves (RFC 6761), so this fails the same with or without a network.
    info = dataclasses.replace(CATALOGUE["sam_vit_b"], name="sam_test",
                               source=WeightsSource(url="https://atelier-test.invalid/sam_test_000000.pth"))
    monkeypatch.setitem(CATALOGUE, info.name, info)
    return info


def test_pull_fails_fast_and_names_the_url(empty_caches: Path, unreachable_sam: WeightsInfo,
                                           capsys: pytest.CaptureFixture):
    start = time.perf_counter()
    with pytest.raises(WeightsMissingError) as err:
        pull("sam_test")
    assert time.perf_counter() - start < 15
    assert "https://atelier-test.invalid/sam_test_000000.pth" in err.value.message
    assert "atelier models import sam_test" in err.value.hint
    printed = capsys.readouterr().err
    assert "375 MB" in printed and "Apache-2.0" in printed  # size and licence come first
    assert not store.weights_dir().exists() or not any(store.weights_dir().iterdir())


def test_pull_from_the_hub_fails_fast(empty_caches: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.atelier-test.invalid")
    start = time.perf_counter()
    with pytest.raises(WeightsMissingError) as err:
        pull("ViT-B-32:openai", progress=False)
    assert time.perf_counter() - start < 15
    assert "https://hub.atelier-test.invalid/timm/vit_base_patch32_clip_224.openai/resolve/main/" in err.value.message
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsMissingError, match="HF_HUB_OFFLINE"):
        pull("ViT-B-32:openai", progress=False)


class _Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass


@pytest.fixture
def file_server(tmp_path: Path):
    """Serves `tmp_path/served` on a loopback port; yields the base URL and the folder."""
    root = tmp_path / "served"
    root.mkdir()
    handler = lambda *a, **k: _Files(*a, directory=str(root), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


def test_download_url_checks_md5_and_leaves_no_partial_file(tmp_path: Path, file_server):
    base, root = file_server
    data = os.urandom(3 * (1 << 20) + 17)
    (root / "w.pth").write_bytes(data)
    md5 = hashlib.md5(data).hexdigest()
    dest = tmp_path / "store" / "w.pth"
    assert download_url(f"{base}/w.pth", dest, progress=False, md5_prefix=md5[:6]) == dest
    assert dest.read_bytes() == data
    bad = tmp_path / "store" / "bad.pth"
    wrong = "0" * 6 if not md5.startswith("000000") else "ffffff"
    with pytest.raises(WeightsMissingError, match="MD5"):
        download_url(f"{base}/w.pth", bad, progress=False, md5_prefix=wrong)
    assert not bad.exists() and not bad.with_name("bad.pth.part").exists()
    with pytest.raises(WeightsMissingError, match="HTTP 404"):
        download_url(f"{base}/missing.pth", tmp_path / "store" / "m.pth", progress=False)


def test_probe_reports_status_without_following_redirects(file_server):
    base, root = file_server
    (root / "f.bin").write_bytes(b"x")
    (root / "folder").mkdir()
    assert store._probe(f"{base}/f.bin", 5) == 200
    assert store._probe(f"{base}/nope.bin", 5) == 404
    assert store._probe(f"{base}/folder", 5) == 301  # a redirect already says the server has it


def test_present_weights_feed_the_server_welcome(empty_caches: Path, monkeypatch: pytest.MonkeyPatch):
    _no_network(monkeypatch)
    assert store.present_weights() == []
    store.weights_dir().mkdir(parents=True)
    _fake_sam(store.weights_dir() / "sam_vit_b_01ec64.pth")
    assert store.present_weights() == ["sam_vit_b"]
    assert _rows()["sam_vit_b"]["size_human"].endswith(("B", "kB"))
    hooks = pytest.importorskip("backend.server.hooks")
    import backend.models
    import backend.server.registrations  # noqa: F401  (the server registers the models' hooks)

    assert hooks.MODEL_LISTERS["models.weights"] is store.present_weights
    assert hooks.RELEASE_HOOKS["models.clip"] is backend.models.release_all
    assert "sam_vit_b" in hooks.models_present()
