"""The Search Library panel's operators: index a folder or the asset libraries registered in the Preferences (one
database each), search, and import a hit: a .blend asset appended or linked from its file when that file is on this
computer (`blend_import`), anything else as the indexed GLB (`fetch_shape` job)."""

from __future__ import annotations

import os
import time

import bpy

from ..core.assetlib import TEAM_LIBRARY, hit_source, library_db, library_key, team_store_uri
from ..core.errors import AddonError
from ..core.kinds import JOB_KINDS, fetch_shape_params, index_params, library_search_request
from ..engine import session
from ..engine.jobs import JobRecord
from ..engine.settings import pref_text, user_dir
from .blend_import import import_blend_hit
from .importers import store_job
from .job_ops import JobOperator, _queued, _refused, _unexpected, local_path
from .meshio import image_bytes, image_editor

# -- asset libraries (Preferences > File Paths > Asset Libraries) ------------------------------------------


def registered_libraries(context) -> list[tuple[str, str]]:
    """(name, folder) of every asset library registered in the Preferences, in their order; one folder registered
    twice is listed once (under its first name): it is one index."""
    seen, found = set(), []
    for library in context.preferences.filepaths.asset_libraries:
        key = library_key(bpy.path.abspath(library.path)) if library.path.strip() else ""
        if key and key not in seen:
            seen.add(key)
            found.append((library.name, key))
    return found


def index_root(context) -> str:
    """The folder holding one database per asset library: the preference, else the add-on's user folder."""
    chosen = pref_text(context, "library_index_dir").strip()
    return os.path.normpath(bpy.path.abspath(chosen)) if chosen else str(user_dir("libraries"))


def chosen_paths(settings) -> set[str]:
    return {item.path for item in settings.asset_libraries_chosen}


def search_store(context) -> tuple[str, str]:
    """(db, store) the search reads: the chosen asset library's database, the team library (store "milvus", db
    its URI from the preferences), or the Database folder (store ""). AddonError when the chosen library is no
    longer registered or the team library's URI is bad."""
    if context.scene.atelier.search_library == TEAM_LIBRARY:
        return team_store_uri(pref_text(context, "team_library")), "milvus"
    return search_db(context), ""


def search_db(context) -> str:
    """The database folder the search reads: the chosen asset library's, or the Database folder. AddonError when
    the chosen library is no longer registered."""
    s = context.scene.atelier
    if not s.search_library:
        return local_path(s.library_db)
    if s.search_library not in {path for _, path in registered_libraries(context)}:
        raise AddonError(f"the asset library at {s.search_library} is no longer registered in Preferences > File "
                         "Paths > Asset Libraries", "pick another library (or the Database folder) to search in the "
                         "Search Library panel", code="library_gone")
    return library_db(index_root(context), s.search_library)


class ATELIER_OT_asset_library_toggle(bpy.types.Operator):
    """Tick or untick this asset library for Index Selected Libraries"""
    bl_idname = "atelier.asset_library_toggle"
    bl_label = "Choose Asset Library"
    bl_options = {"INTERNAL"}

    path: bpy.props.StringProperty(name="Folder", options={"SKIP_SAVE"})

    def execute(self, context):
        chosen = context.scene.atelier.asset_libraries_chosen
        index = next((i for i, item in enumerate(chosen) if item.path == self.path), -1)
        if index >= 0:
            chosen.remove(index)
        else:
            chosen.add().path = self.path
        session.tag_redraw()
        return {"FINISHED"}


class ATELIER_OT_asset_library_search_in(bpy.types.Operator):
    """Search this asset library's index (empty: the Database folder)"""
    bl_idname = "atelier.asset_library_search_in"
    bl_label = "Search In"
    bl_options = {"INTERNAL"}

    path: bpy.props.StringProperty(name="Folder", options={"SKIP_SAVE"})

    def execute(self, context):
        context.scene.atelier.search_library = self.path
        session.tag_redraw()
        return {"FINISHED"}


class ATELIER_OT_index_asset_libraries(bpy.types.Operator):
    """Index the ticked asset libraries, each into its own database (progress and cancel in the Jobs panel)"""
    bl_idname = "atelier.index_asset_libraries"
    bl_label = "Index Selected Libraries"
    bl_options = {"REGISTER"}

    def execute(self, context):
        runtime = session.refresh_settings(context)
        s, label = context.scene.atelier, JOB_KINDS["index"].label
        try:
            chosen = chosen_paths(s)
            libraries = [(name, path) for name, path in registered_libraries(context) if path in chosen]
            if not libraries:
                raise AddonError("no asset library is ticked", "tick the libraries to index in the Search Library "
                                 "panel (register them in Preferences > File Paths > Asset Libraries)",
                                 code="no_library_chosen")
            root = index_root(context)
            clip = pref_text(context, "clip")
            jobs = [(f"{label} {name}", path,
                     index_params(path, library_db(root, path), clip=clip, views=s.library_views,
                                  blend_objects=s.asset_blend_objects, workers=s.asset_workers,
                                  descriptor=s.library_descriptor))
                    for name, path in libraries]
        except AddonError as exc:
            return _refused(self, runtime, "index", label, exc, {})
        outcome = set()
        for job_label, path, params in jobs:  # one job each: a library that fails leaves the others indexing
            try:
                record = runtime.submit("index", params, label=job_label, meta={"asset_library": path})
            except AddonError as exc:
                outcome |= _refused(self, runtime, "index", job_label, exc, params)
                continue
            except Exception as exc:  # noqa: BLE001
                return _unexpected(self, job_label, exc)
            outcome |= _queued(self, record)
        return {"FINISHED"} if "FINISHED" in outcome else {"CANCELLED"}


# -- a folder of meshes, search, import ----------------------------------------------------------------------

class ATELIER_OT_index_library(JobOperator, bpy.types.Operator):
    """Index the library folder's meshes into the database folder (renders views and CLIP-embeds them)"""
    bl_idname = "atelier.index_library"
    bl_label = "Index Library"
    bl_options = {"REGISTER"}
    kind = "index"

    def params(self, context) -> dict:
        s = context.scene.atelier
        return index_params(local_path(s.library_folder), local_path(s.library_db),
                            clip=pref_text(context, "clip"), views=s.library_views,
                            descriptor=s.library_descriptor)


def search_photo_image(context) -> bytes:
    """The photo search's Blender image as encoded bytes: the panel's chosen image, else the one the Image Editor
    shows (which becomes the chosen one); AddonError when there is neither."""
    s = context.scene.atelier
    image = s.search_photo_image
    if image is None:
        try:
            image = image_editor(context)[1]
        except AddonError as exc:
            raise AddonError("no photo image is chosen and no Image Editor shows one",
                             "open the photo in an Image Editor, or pick it in the Search Library panel",
                             code="no_photo") from exc
        s.search_photo_image = image
    return image_bytes(image)


class ATELIER_OT_search_library(JobOperator, bpy.types.Operator):
    """Search the indexed library by the text, a sketch or a photo: a grid of the best shapes to import"""
    bl_idname = "atelier.search_library"
    bl_label = "Search Library"
    bl_options = {"REGISTER"}
    kind = "search"

    def request(self, context) -> tuple[dict, dict[str, bytes]]:
        s = context.scene.atelier
        strokes = None
        if s.search_mode == "SKETCH" and s.sketch_source != "IMAGE":  # annotations or Grease Pencil, as seen
            from .sketch_input import sketch_strokes
            strokes = sketch_strokes(context, s.sketch_source, s.sketch_object)
        db, store = search_store(context)
        photo = search_photo_image(context) if s.search_mode == "PHOTO" and s.search_photo_source == "IMAGE" \
            else None
        return library_search_request(db, s.search_text, s.search_mode, local_path(s.search_image),
                                      s.search_k, s.search_category, strokes, s.search_catalog, s.search_tag, store,
                                      photo=photo, prompt=s.search_photo_prompt, raw_photo=s.search_raw_photo)

    def params(self, context) -> dict:
        self._request = self.request(context)  # read files and strokes once: execute() asks params, then blobs
        return self._request[0]

    def blobs(self, context) -> dict[str, bytes]:
        return self._request[1]


class ATELIER_OT_import_hit(JobOperator, bpy.types.Operator):
    """Import this library shape at the 3D cursor (a .blend asset: appended or linked from its file)"""
    bl_idname = "atelier.import_hit"
    bl_label = "Import Library Shape"
    bl_options = {"REGISTER", "UNDO"}
    kind = "fetch_shape"

    job_id: bpy.props.StringProperty(name="Search job", options={"SKIP_SAVE"})
    index: bpy.props.IntProperty(name="Hit", default=0, min=0, options={"SKIP_SAVE"})

    def hit(self) -> tuple[str, dict, str]:
        """(database, hit, store) of the search job's hit number `index`; AddonError when the search is gone."""
        record = session.get_runtime().jobs.get(self.job_id)
        hits = record.fields.get("hits") if record is not None and record.state == "done" else None
        if not hits or not 0 <= self.index < len(hits):
            raise AddonError("that search result is no longer available", "search the library again",
                             code="no_search_hit")
        return str(record.params.get("db", "")), hits[self.index], str(record.params.get("store", ""))

    def params(self, context) -> dict:
        db, hit, store = self.hit()
        return fetch_shape_params(db, hit.get("shape_id", 0), store)

    def label(self, source: str) -> str:
        try:
            name = self.hit()[1].get("name") or ""
        except AddonError:
            name = ""
        return f"{JOB_KINDS[self.kind].label} {name}".strip()

    def execute(self, context):
        try:
            db, hit, _ = self.hit()
        except AddonError:
            return super().execute(context)  # which records and reports the same error
        source = hit_source(hit)
        if source is None:
            return super().execute(context)
        if not os.path.isfile(source["file"]):  # a remote backend's file: its indexed GLB instead
            self.report({"INFO"}, f"{source['file']} is not on this computer: importing the indexed copy")
            return super().execute(context)
        return self.from_blend(context, db, hit, source)

    def from_blend(self, context, db: str, hit: dict, source: dict) -> set[str]:
        """Appends or links the hit's datablock; a done (or failed) entry in the job list says what happened."""
        runtime = session.refresh_settings(context)
        label = f"{JOB_KINDS[self.kind].label} {hit.get('name') or source['name']}"
        params = {"db": db, "shape_id": hit.get("shape_id", 0)}
        try:
            created, how = import_blend_hit(source, context.scene.atelier.blend_import_mode, context)
        except AddonError as exc:
            return _refused(self, runtime, self.kind, label, exc, params)
        except Exception as exc:  # noqa: BLE001
            return _unexpected(self, label, exc)
        record = runtime.jobs.add(JobRecord(
            id=runtime.jobs.new_id(self.kind), kind=self.kind, label=label, params=params, state="done",
            finished=time.time(), fields={"name": source["name"], "source": source, "import": how},
            outputs=[item.name for item in created]))
        record.message = f"{how}ed {', '.join(record.outputs)} from {os.path.basename(source['file'])}"
        for item in created:
            if isinstance(item, bpy.types.Object) and item.library is None:
                store_job(item, record)
        session.tag_redraw()
        return {"FINISHED"}


LIBRARY_OPERATORS = (ATELIER_OT_asset_library_toggle, ATELIER_OT_asset_library_search_in,
                     ATELIER_OT_index_asset_libraries, ATELIER_OT_index_library, ATELIER_OT_search_library,
                     ATELIER_OT_import_hit)
"""Registered by `__init__.CLASSES` after `job_ops.OPERATORS`."""
