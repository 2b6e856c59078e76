"""The CLIPSeg path end to end with a tiny random CLIPSeg built with transformers (skipped when transformers is
not installed: it is optional). The model and processor are saved to a folder the way `save_pretrained` writes
them; its tokenizer files come from open_clip's BPE vocabulary (the same as CLIP's), so nothing is downloaded.
This checks the plumbing (processor, logits, resizing, method choice), not segmentation quality."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.models.clip import load_clip
from backend.segment.relevance import RelevanceConfig, clipseg_available, relevance_map, resolve_method

transformers = pytest.importorskip("transformers")

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def tiny_clipseg(tmp_path_factory) -> Path:
    from open_clip.tokenizer import SimpleTokenizer

    out = tmp_path_factory.mktemp("tiny_clipseg")
    bpe = SimpleTokenizer()
    rename = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    (out / "vocab.json").write_text(json.dumps({rename.get(k, k): v for k, v in bpe.encoder.items()}))
    merges = sorted(bpe.bpe_ranks.items(), key=lambda item: item[1])
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m, _ in merges) + "\n")
    tokenizer = transformers.CLIPTokenizer(str(out / "vocab.json"), str(out / "merges.txt"))
    images = transformers.ViTImageProcessor(size={"height": 64, "width": 64},
                                            image_mean=[0.48145466, 0.4578275, 0.40821073],
                                            image_std=[0.26862954, 0.26130258, 0.27577711])
    config = transformers.CLIPSegConfig(
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
                           image_size=64, patch_size=16),
        projection_dim=32, reduce_dim=16, extract_layers=[1, 2], decoder_num_attention_heads=2,
        decoder_intermediate_size=32)
    torch.manual_seed(0)
    transformers.CLIPSegForImageSegmentation(config).eval().save_pretrained(out)
    transformers.CLIPSegProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(out)
    return out


def test_clipseg_map_is_a_probability_at_the_image_size(tiny_clipseg):
    image = np.random.default_rng(0).random((50, 70, 3)).astype(np.float32)
    config = RelevanceConfig(method="clipseg", clipseg_model=str(tiny_clipseg))
    assert clipseg_available(str(tiny_clipseg)) and resolve_method(config) == "clipseg"
    result = relevance_map(image, "a red chair", load_clip("tiny"), config)
    assert result.method == "clipseg"
    assert result.map.shape == (50, 70) and result.map.dtype == np.float32
    assert 0.0 <= result.map.min() <= result.map.max() <= 1.0
    assert result.scores.shape == (64, 64)  # the logits on the processor's grid
    auto = relevance_map(image, "a red chair", load_clip("tiny"), RelevanceConfig(clipseg_model=str(tiny_clipseg)))
    assert auto.method == "clipseg"
    np.testing.assert_array_equal(auto.map, result.map)
