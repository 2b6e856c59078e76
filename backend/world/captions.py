"""Captions from labels, in varied templates, and the words a caption must (and must not) contain.

A caption always names the category; it names the colour, the pattern and each attribute listed
in `mention` (all of them by default). `caption_words` returns the phrases that such a caption
contains, so tests (and the domain CLIP's prompts) can rely on the agreement between text and labels.
"""

from __future__ import annotations

import re
from typing import Iterable

import numpy as np

from backend.world.appearance import COLOURS, PATTERN_ADJECTIVES, PATTERNS
from backend.world.families import FAMILIES, HEIGHT_WORDS

ALL = ("colour", "pattern")
"""Mentionable labels besides the family's attributes."""


def _words(*groups) -> str:
    return " ".join(w for group in groups for w in ([group] if isinstance(group, str) else group) if w)


def _article(*groups) -> str:
    text = _words(*groups)
    return ("an " if text[:1] in "aeiou" else "a ") + text


def _join(items: list[str]) -> str:
    items = [i for i in items if i]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _with(features: list[str], lead: str = " with ") -> str:
    return lead + _join(features) if features else ""


# Each template: (adjectives, colour word, pattern word, noun, feature phrases) -> caption; empty
# words are skipped, so every template works with any subset of labels mentioned.
_TEMPLATES = (
    lambda adj, c, p, n, f: _article(adj, c, p, n) + _with(f),
    lambda adj, c, p, n, f: _article(adj, p if not c else "", n) + (" in " + _words(p, c) if c else "") + _with(f, ", with " if c else " with "),
    lambda adj, c, p, n, f: _words(adj, c, p, n) + _with(f),
    lambda adj, c, p, n, f: _article(p, c, adj, n) + _with(f),
    lambda adj, c, p, n, f: "this " + _words(adj, n) + (" is " + _join([c, p]) if c or p else "") + _with(f, "; it has "),
    lambda adj, c, p, n, f: _article(c, n) + (", " + _join(adj + [p]) if adj or p else "") + _with(f, ", with " if adj or p else " with "),
    lambda adj, c, p, n, f: "a photo of " + _article(adj, c, p, n) + _with(f),
    lambda adj, c, p, n, f: "a 3d model of " + _article(adj, p, c, n) + _with(f),
)
"""Caption templates."""



def _attribute_parts(category: str, attributes: dict, mention: set) -> tuple[list[str], list[str]]:
    family = FAMILIES[category]
    adjectives = []
    if "height" in mention:
        adjectives.append(HEIGHT_WORDS[attributes["height"]])
    for name, words in family.adjectives.items():
        if name in mention:
            adjectives.append(words[attributes[name]])
    features = family.phrases(attributes, mention) if family.phrases else []
    return adjectives, features


def _check(category: str, colour: str, pattern: str, attributes: dict) -> None:
    if category not in FAMILIES:
        raise ValueError(f"unknown category {category!r}; choose one of {', '.join(FAMILIES)}")
    if colour not in COLOURS:
        raise ValueError(f"unknown colour {colour!r}; choose one of {', '.join(COLOURS)}")
    if pattern not in PATTERNS:
        raise ValueError(f"unknown pattern {pattern!r}; choose one of {', '.join(PATTERNS)}")
    missing = set(FAMILIES[category].attributes) - set(attributes)
    if missing:
        raise ValueError(f"attributes of a {category} lack {sorted(missing)}; pass every attribute of the family")


def _mention(category: str, mention: Iterable[str] | None) -> set:
    names = set(ALL) | set(FAMILIES[category].attributes)
    if mention is None:
        return names
    mention = set(mention)
    unknown = mention - names
    if unknown:
        raise ValueError(f"cannot mention {sorted(unknown)} for a {category}; choose among {sorted(names)}")
    return mention


def make_caption(category: str, colour: str, pattern: str, attributes: dict, rng: np.random.Generator,
                 mention: Iterable[str] | None = None) -> str:
    """A caption such as "a tall red striped chair with armrests, a slatted back and four thin legs".

    mention: which of "colour", "pattern" and the family's attribute names to say (default all);
    the category is always said. The template (and whether a plain pattern says "plain") is drawn
    from `rng`, which is always advanced by the same number of draws.
    """
    _check(category, colour, pattern, attributes)
    mention = _mention(category, mention)
    template = _TEMPLATES[int(rng.integers(len(_TEMPLATES)))]
    say_plain = bool(rng.random() < 0.5)
    adjectives, features = _attribute_parts(category, attributes, mention)
    colour_word = colour if "colour" in mention else ""
    pattern_word = ""
    if "pattern" in mention and (pattern != "plain" or say_plain):
        pattern_word = PATTERN_ADJECTIVES[pattern]
    return template(adjectives, colour_word, pattern_word, category, features)


def caption_words(category: str, colour: str, pattern: str, attributes: dict,
                  mention: Iterable[str] | None = None) -> set[str]:
    """The phrases a caption of these labels contains (word-bounded, lower case).

    Category, the colour and pattern adjective when mentioned (a plain pattern may go unsaid), the
    height word, adjectives, and each feature phrase without its article ("four thin legs",
    "no armrests", "slatted back").
    """
    _check(category, colour, pattern, attributes)
    mention = _mention(category, mention)
    adjectives, features = _attribute_parts(category, attributes, mention)
    words = {category, *adjectives}
    if "colour" in mention:
        words.add(colour)
    if "pattern" in mention and pattern != "plain":
        words.add(PATTERN_ADJECTIVES[pattern])
    words.update(re.sub(r"^(a|an) ", "", f) for f in features)
    return words


def wrong_words(category: str, colour: str, pattern: str, attributes: dict) -> set[str]:
    """Phrases a caption of these labels must never contain: other categories, colours, patterns, negations."""
    _check(category, colour, pattern, attributes)
    wrong = (set(FAMILIES) - {category}) | (set(COLOURS) - {colour})
    wrong |= {PATTERN_ADJECTIVES[p] for p in PATTERNS if p != pattern}
    for name, value in attributes.items():
        if value == "yes":
            wrong.add(f"no {name}")
    return wrong


def contains_phrase(text: str, phrase: str) -> bool:
    """Whether `phrase` occurs in `text` as whole words (case-insensitive)."""
    return re.search(r"(?<![\w-])" + re.escape(phrase.lower()) + r"(?![\w-])", text.lower()) is not None
