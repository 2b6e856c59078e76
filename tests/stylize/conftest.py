"""Fixtures of the stylization tests (helpers live in stylize_helpers.py)."""

from __future__ import annotations

import pytest

from backend.models.clip import load_clip


@pytest.fixture(scope="session")
def tiny_clip():
    """The seeded tiny CLIP (random weights: plumbing only)."""
    return load_clip("tiny")
