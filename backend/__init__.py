"""Atelier backend: the server and all compute (torch lives here, never in the add-on)."""

__version__ = "0.1.0"
