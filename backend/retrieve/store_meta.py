"""What both library stores (`LibraryDB`, `MilvusStore`) read off their meta rows: the CLIP, encoder, embedding
size, views and library folder a library was built with, and the check that a search or an indexing run uses the
same. A store provides `meta()` (key -> value), `library_label` (how messages name the library) and `elsewhere`
(where a library with other settings goes instead)."""

from __future__ import annotations

from backend.errors import InvalidInputError


class StoreMeta:
    """The meta-derived properties and the compatibility check, shared by the stores."""

    elsewhere = "into another folder"
    """Where to index a library again with other settings (a phrase for the hints)."""

    @property
    def clip_spec(self) -> str:
        """The CLIP spec the library was indexed with (the default `--clip` for searching it)."""
        return self.meta()["clip"]

    @property
    def encoder_id(self) -> str:
        return self.meta()["encoder"]

    @property
    def embed_dim(self) -> int:
        return int(self.meta()["embed_dim"])

    @property
    def views_json(self) -> str:
        return self.meta()["views"]

    @property
    def generation(self) -> int:
        return int(self.meta()["generation"])

    @property
    def library_root(self) -> str:
        """The library folder last indexed into this library ("" before the first run)."""
        return self.meta().get("library", "")

    def check_compatible(self, *, clip: str, encoder: str | None = None, views_json: str | None = None) -> None:
        """InvalidInputError naming both when the library was built with another CLIP, encoder or views."""
        meta = self.meta()
        if clip != meta["clip"]:
            raise InvalidInputError(
                f"the {self.library_label} was indexed with CLIP {meta['clip']!r}, not {clip!r}",
                f"search it with --clip {meta['clip']} (or leave --clip out), or index the library again "
                f"{self.elsewhere} with the CLIP you want")
        if encoder is not None and encoder != meta["encoder"]:
            raise InvalidInputError(
                f"the {self.library_label} was indexed with encoder {meta['encoder']!r}, not {encoder!r}",
                "use the same TASK-former checkpoint (or none) that built it, or index the library again")
        if views_json is not None and views_json != meta["views"]:
            raise InvalidInputError(
                f"the {self.library_label} was indexed with other view settings ({meta['views']})",
                f"index with the same --views, or {self.elsewhere}")
