"""The keyword half of hybrid text search: words of a shape's name, tags, catalog and description.

Both sides, what is stored in the FTS5 table `shape_text` and the query, go through `words`: lower case,
accents dropped, split at anything not a letter or digit and at camelCase humps (`Chair_Oak`, `chairOak`
and `chair oak` all give `chair oak`), plurals folded (`chairs` -> `chair`). FTS5 finds the candidates fast
at any library size; `keyword_score` then scores each by how much of the query it covers, weighting where a
word was found: a word of the name counts most. The score is in [0, 1] (1: every query word is in the name),
so it adds to a cosine score with one documented weight (`search`'s keyword_weight) the same way for every
query, which a raw BM25 value would not.
"""

from __future__ import annotations

import re
import unicodedata

FIELDS = ("name", "tags", "catalog", "description")
"""The columns of `shape_text`, in order."""
FIELD_WEIGHTS = {"name": 1.0, "tags": 0.8, "catalog": 0.6, "description": 0.5}
"""What one query word found in each field is worth (its best field counts)."""
STOPWORDS = frozenset("a an the of with and or in on for to at by from is its it this that my some".split())
"""Query words that say nothing about a shape."""

_HUMP = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_TOKEN = re.compile(r"[^\W_]+")


def _stem(word: str) -> str:
    """Plural to singular for the common English endings (good enough for names and tags)."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("ches", "shes", "sses", "xes", "zes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def words(text: str) -> list[str]:
    """The normalised words of a text, in order (duplicates kept)."""
    text = _HUMP.sub(" ", text or "")
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return [_stem(token) for token in _TOKEN.findall(text.lower())]


def index_text(name: str, tags: list[str], catalog: str | None, description: str) -> tuple[str, str, str, str]:
    """The four `shape_text` columns of a shape."""
    return (" ".join(words(name)), " ".join(w for tag in tags for w in words(tag)),
            " ".join(words((catalog or "").replace("/", " "))), " ".join(words(description)))


def query_terms(text: str) -> list[str]:
    """The distinct words of a query that may match (stopwords dropped), in order."""
    seen: list[str] = []
    for word in words(text):
        if word not in STOPWORDS and word not in seen:
            seen.append(word)
    return seen


def fts_query(terms: list[str]) -> str:
    """An FTS5 MATCH expression for any of `terms` (each quoted: never FTS syntax)."""
    return " OR ".join('"' + term.replace('"', '""') + '"' for term in terms)


def keyword_score(terms: list[str], columns: tuple[str, str, str, str]) -> float:
    """How much of the query a shape's `index_text` columns cover, in [0, 1]."""
    if not terms:
        return 0.0
    fields = [set(column.split()) for column in columns]
    total = 0.0
    for term in terms:
        total += max((FIELD_WEIGHTS[name] for name, found in zip(FIELDS, fields) if term in found), default=0.0)
    return total / len(terms)
