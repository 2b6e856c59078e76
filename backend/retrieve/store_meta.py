"""What both library stores (`LibraryDB`, `MilvusStore`) read off their meta rows: the CLIP, encoder, embedding
size, views, descriptor, point encoder and library folder a library was built with, and the check that a search or
an indexing run uses the same (a library never mixes vectors of two models or descriptors). A library written
before descriptors existed has no descriptor row: it is a views library. A store provides `meta()` (key ->
value), `library_label` (how messages name the library) and `elsewhere` (where a library with other settings goes
instead)."""

from __future__ import annotations

import functools

from backend.errors import InvalidInputError
from backend.retrieve.descriptors import descriptor_kinds


def check_vector_kinds(vectors: dict, kinds: tuple[str, ...], dim: int, max_rows: int | None = None) -> None:
    """ValueError unless `vectors` holds exactly `kinds`, each [K, dim] (K <= max_rows when given)."""
    if set(vectors) != set(kinds):
        raise ValueError(f"this library stores {', '.join(kinds)} vectors, got {', '.join(sorted(vectors)) or 'none'}")
    for kind in kinds:
        array = vectors[kind]
        if array.ndim != 2 or array.shape[1] != dim:
            raise ValueError(f"vectors[{kind!r}] must be [K, {dim}], got {array.shape}")
        if max_rows is not None and array.shape[0] > max_rows:
            raise ValueError(f"at most {max_rows} views per shape, got {array.shape[0]}")


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

    @functools.cached_property
    def descriptor(self) -> str:
        """What describes each shape: "views", "points" or "both" (`backend.retrieve.descriptors`). Read once: a
        library keeps its descriptor for life (searches and Milvus writes ask for it on every call)."""
        return self.meta().get("descriptor", "views")

    @property
    def points_encoder_id(self) -> str:
        """The point encoder that made the "points" vectors ("" for a views library)."""
        return self.meta().get("points_encoder", "")

    @property
    def points_path(self) -> str:
        """The point encoder's checkpoint as indexing last found it (the default for the next run; "" for views)."""
        return self.meta().get("points_path", "")

    @property
    def kinds(self) -> tuple[str, ...]:
        """The vector kinds each shape has."""
        return descriptor_kinds(self.descriptor)

    @property
    def generation(self) -> int:
        return int(self.meta()["generation"])

    @property
    def library_root(self) -> str:
        """The library folder last indexed into this library ("" before the first run)."""
        return self.meta().get("library", "")

    def check_compatible(self, *, clip: str, encoder: str | None = None, views_json: str | None = None,
                         descriptor: str | None = None, points_encoder: str | None = None) -> None:
        """InvalidInputError naming both when the library was built with another CLIP, encoder, views, descriptor
        or point encoder."""
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
        recorded = meta.get("descriptor", "views")
        if descriptor is not None and descriptor != recorded:
            raise InvalidInputError(
                f"the {self.library_label} was indexed with the {recorded} descriptor, not {descriptor}: its vectors "
                f"would be mixed", f"index with --descriptor {recorded}, or {self.elsewhere} with --descriptor "
                f"{descriptor}")
        if points_encoder and points_encoder != meta.get("points_encoder", ""):
            raise InvalidInputError(
                f"the {self.library_label} was indexed with the point encoder "
                f"{meta.get('points_encoder') or '(none)'}, not {points_encoder}: their embeddings differ",
                f"index with the same --points-encoder checkpoint ({meta.get('points_path') or 'none'}), or "
                f"{self.elsewhere} with the new one")
