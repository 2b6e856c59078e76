"""Shapes shared by the world tests (built once per session: a few hundred seeds cost about a second)."""

from __future__ import annotations

import pytest

from backend.world import make_shape

SEEDS = range(400)
"""The seeds every validity and caption test walks through."""


@pytest.fixture(scope="session")
def many_shapes():
    return [make_shape(seed) for seed in SEEDS]
