"""Captions agree with their labels: they contain every mentioned label and no wrong colour or category."""

from __future__ import annotations

import numpy as np
import pytest

from backend.world import FAMILIES, make_caption, make_shape
from backend.world.captions import ALL, caption_words, contains_phrase, wrong_words


def _check(caption: str, required: set[str], wrong: set[str]) -> None:
    for phrase in required:
        assert contains_phrase(caption, phrase), f"{phrase!r} missing from {caption!r}"
    for phrase in wrong:
        assert not contains_phrase(caption, phrase), f"{phrase!r} wrongly in {caption!r}"


def test_full_captions_contain_every_label_and_nothing_contradicting(many_shapes):
    templates = set()
    for shape in many_shapes:
        words = shape.caption_words()
        assert {shape.category, shape.colour} <= words
        _check(shape.caption, words, wrong_words(shape.category, shape.colour, shape.pattern, shape.attributes))
        templates.add(shape.caption.split()[0] + " " + shape.caption.split()[1])
    assert len(templates) >= 6  # the templates vary


def test_partial_captions_mention_exactly_what_is_asked(many_shapes):
    rng = np.random.default_rng(0)
    for shape in many_shapes:
        names = list(ALL) + list(FAMILIES[shape.category].attributes)
        mention = [n for n in names if rng.random() < 0.5]
        caption = make_caption(shape.category, shape.colour, shape.pattern, shape.attributes, rng, mention)
        required = caption_words(shape.category, shape.colour, shape.pattern, shape.attributes, mention)
        _check(caption, required, wrong_words(shape.category, shape.colour, shape.pattern, shape.attributes))
        if "colour" not in mention:
            assert not contains_phrase(caption, shape.colour)
        assert "  " not in caption and not caption.endswith((",", " ", "with"))


def test_examples_read_like_the_issue():
    shape = make_shape(0, "chair", colour="red", pattern="plain", height="tall", armrests="yes", legs=4,
                       thickness="thin")
    assert {"tall", "red", "chair", "armrests", "four thin legs"} <= shape.caption_words()
    vase = make_shape(0, "vase", colour="blue", pattern="stripes")
    assert {"vase", "blue", "striped"} <= vase.caption_words()


def test_caption_inputs_are_checked():
    rng = np.random.default_rng(0)
    shape = make_shape(1, "mug")
    with pytest.raises(ValueError, match="cannot mention"):
        make_caption("mug", shape.colour, shape.pattern, shape.attributes, rng, ["legs"])
    with pytest.raises(ValueError, match="lack"):
        make_caption("mug", shape.colour, shape.pattern, {}, rng)
