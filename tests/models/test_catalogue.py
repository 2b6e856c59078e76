"""The weights catalogue: names, sources taken from open_clip, sizes, licences, duplicates."""

from __future__ import annotations

import open_clip
import pytest

from backend.errors import InvalidInputError
from backend.models.catalogue import CATALOGUE, human_size, lookup, register

REQUIRED_CLIP = ["ViT-B-32:openai", "ViT-B-16:openai", "ViT-L-14:openai", "RN50:openai"]
SAM_FILES = {
    "sam_vit_b": ("sam_vit_b_01ec64.pth", 375e6),
    "sam_vit_l": ("sam_vit_l_0b3195.pth", 1.25e9),
    "sam_vit_h": ("sam_vit_h_4b8939.pth", 2.56e9),
}


@pytest.mark.parametrize("name", REQUIRED_CLIP)
def test_openai_clip_entries_follow_open_clip(name: str):
    info = CATALOGUE[name]
    model, tag = name.split(":")
    cfg = open_clip.get_pretrained_cfg(model, tag)
    assert info.kind == "clip" and info.licence == "MIT"
    assert (info.source.open_clip_model, info.source.open_clip_tag) == (model, tag)
    assert info.source.url == cfg["url"]
    assert cfg["hf_hub"].startswith(info.source.hf_repo + "/")
    assert info.source.hf_filenames, "open_clip's hub entries name a default file"
    assert info.quick_gelu == cfg.get("quick_gelu", False) is True  # OpenAI CLIPs are QuickGELU models
    assert info.mean == tuple(cfg["mean"]) and info.std == tuple(cfg["std"])
    assert info.approx_bytes > 100e6
    assert info.source.download_url.startswith("https://")


@pytest.mark.parametrize("name", list(SAM_FILES))
def test_sam_entries_are_the_official_checkpoints(name: str):
    filename, size = SAM_FILES[name]
    info = CATALOGUE[name]
    assert info.kind == "sam" and info.licence == "Apache-2.0"
    assert info.source.url == f"https://dl.fbaipublicfiles.com/segment_anything/{filename}"
    assert info.filename == filename and info.display_file == filename
    assert info.md5_prefix == filename[-10:-4]
    assert abs(info.approx_bytes - size) / size < 0.02


def test_duplicate_names_are_an_error():
    before = dict(CATALOGUE)
    with pytest.raises(ValueError, match="already in the catalogue"):
        register(CATALOGUE["ViT-B-32:openai"])
    assert CATALOGUE == before


def test_lookup_normalises_tags_and_knows_every_open_clip_pair():
    assert lookup("ViT-B-32:OpenAI") is CATALOGUE["ViT-B-32:openai"]
    extra = lookup("ViT-B-32:datacomp_xl_s13b_b90k")  # not catalogued, but open_clip knows it
    assert extra.kind == "clip" and extra.source.hf_repo
    assert extra.licence == f"unknown: see https://huggingface.co/{extra.source.hf_repo}"


@pytest.mark.parametrize("name", ["ViT-B-32:nope", "sam_vit_x", "tiny", ""])
def test_lookup_of_an_unknown_name_lists_the_known_ones(name: str):
    with pytest.raises(InvalidInputError) as err:
        lookup(name)
    assert "ViT-B-32:openai" in err.value.hint


def test_human_size():
    assert human_size(605_109_252) == "605 MB"
    assert human_size(2_564_550_879) == "2.56 GB"
    assert human_size(0) == "size unknown"
