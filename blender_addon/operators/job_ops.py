"""Operators: backend control, one submit operator per wired job kind, and job handling.

Every operator returns at once: a job operator reads the mesh, queues the job and ends; the timer
(`session.drain`) brings the result in. Bad input ends the operator with a report and a failed entry in the
job list that says the fix, never a traceback.
"""


import logging
import os
import random
import traceback

import bpy

from ..core.errors import AddonError
from ..core.kinds import (JOB_KINDS, MAX_SEED, MAX_STYLES, PARAMS_ONLY_KINDS, generate_label, generate_params,
                          picture_name, read_generate_picture, read_style_images, render_params, restyle_params,
                          stylize_params)
from ..core.meshpack import flat_matrix
from ..engine import session
from ..engine.settings import pref_text
from .importers import IMPORTERS, job_of, stored_picture, stored_styles
from .meshio import image_bytes, mesh_payload, selected_mesh_object

log = logging.getLogger(__name__)


def _report_error(op: bpy.types.Operator, error: AddonError, log_path: str = "") -> None:
    text = str(error)
    if log_path and log_path not in text and error.code.startswith("backend"):
        text += f" [backend log: {log_path}]"
    op.report({"ERROR"}, text)


def _unexpected(op: bpy.types.Operator, what: str, exc: Exception) -> set[str]:
    log.error("Atelier: %s failed:\n%s", what, traceback.format_exc())
    op.report({"ERROR"}, f"{what} failed: {type(exc).__name__}: {exc} (details in the system console)")
    return {"CANCELLED"}


def _refused(op: bpy.types.Operator, runtime, kind: str, label: str, exc: AddonError, params: dict,
             source: str = "") -> set[str]:
    """Bad input: a failed entry in the job list that says the fix, and the report."""
    runtime.fail_now(kind, label, exc, params, source)
    _report_error(op, exc)
    return {"CANCELLED"}


def _queued(op: bpy.types.Operator, record) -> set[str]:
    """The outcome of a submit: a job the runtime failed at once (e.g. the backend would not start) is reported."""
    if record.state == "failed":
        op.report({"ERROR"}, f"{record.label}: {record.error_text()}")
        return {"CANCELLED"}
    session.tag_redraw()
    return {"FINISHED"}


def _new_seed(params: dict) -> dict:
    """The params of a Variation: the same job with a random seed."""
    return {**params, "seed": random.randint(0, MAX_SEED)}


# -- backend --------------------------------------------------------------------------------------------

class ATELIER_OT_backend_start(bpy.types.Operator):
    """Start the backend (or connect to the remote one) with the settings in the preferences"""
    bl_idname = "atelier.backend_start"
    bl_label = "Start Backend"
    bl_options = {"INTERNAL"}

    def execute(self, context):
        runtime = session.refresh_settings(context)
        try:
            if runtime.state in ("failed", "lost"):
                runtime.stop()
            runtime.start()
        except AddonError as exc:
            _report_error(self, exc, runtime.log_path)
            return {"CANCELLED"}
        return {"FINISHED"}


class ATELIER_OT_backend_stop(bpy.types.Operator):
    """Stop the backend this Blender started (running jobs are cancelled); a remote one is only disconnected"""
    bl_idname = "atelier.backend_stop"
    bl_label = "Stop Backend"
    bl_options = {"INTERNAL"}

    def execute(self, context):
        session.get_runtime().stop()
        return {"FINISHED"}


class ATELIER_OT_backend_restart(bpy.types.Operator):
    """Stop the backend and start it again with the current preferences"""
    bl_idname = "atelier.backend_restart"
    bl_label = "Restart Backend"
    bl_options = {"INTERNAL"}

    def execute(self, context):
        runtime = session.refresh_settings(context)
        try:
            runtime.restart()
        except AddonError as exc:
            _report_error(self, exc, runtime.log_path)
            return {"CANCELLED"}
        return {"FINISHED"}


class ATELIER_OT_backend_release(bpy.types.Operator):
    """Ask the backend to unload its models and free GPU memory (they load again when a job needs them)"""
    bl_idname = "atelier.backend_release"
    bl_label = "Free GPU Memory"
    bl_options = {"INTERNAL"}

    def execute(self, context):
        try:
            session.get_runtime().release()
        except AddonError as exc:
            _report_error(self, exc)
            return {"CANCELLED"}
        self.report({"INFO"}, "Asked the backend to free its memory")
        return {"FINISHED"}


# -- jobs -------------------------------------------------------------------------------------------------

class JobOperator:
    """Base of the operators that submit a job: subclasses set `kind` and write `params(context)` (and
    `blobs(context)` / `meta(context)` when the job takes files or the importer needs more).

    `execute` reads the selected object's mesh (when the kind needs one), queues the job and returns;
    any AddonError becomes a report plus a failed job in the list."""

    kind = ""

    def params(self, context) -> dict:
        raise NotImplementedError

    def blobs(self, context) -> dict[str, bytes]:
        """Named binary inputs besides the mesh (e.g. style images); read here so bad files fail at once."""
        return {}

    def meta(self, context) -> dict:
        """Add-on data kept with the job for its importer and "Run again" (never sent)."""
        return {}

    def label(self, source: str) -> str:
        return f"{JOB_KINDS[self.kind].label} {source}".strip()

    def execute(self, context):
        runtime = session.refresh_settings(context)
        source, params = "", {}
        try:
            params = self.params(context)
            blobs, meta = self.blobs(context), dict(self.meta(context))
            mesh = None
            if JOB_KINDS[self.kind].needs_mesh:
                obj = self.source_object(context)
                source = obj.name
                mesh = mesh_payload(obj, context.evaluated_depsgraph_get())
                meta["transform"] = list(flat_matrix(obj.matrix_world))
            record = runtime.submit(self.kind, params, mesh, label=self.label(source), source=source, meta=meta,
                                    blobs=blobs)
        except AddonError as exc:
            return _refused(self, runtime, self.kind, self.label(source), exc, params, source)
        except Exception as exc:  # noqa: BLE001  a bug: one line in the status bar, the traceback in the console
            return _unexpected(self, JOB_KINDS[self.kind].label, exc)
        return _queued(self, record)

    def source_object(self, context) -> bpy.types.Object:
        return selected_mesh_object(context)


class ATELIER_OT_stylize(JobOperator, bpy.types.Operator):
    """Stylize the selected object from the prompt (Text2Mesh): vertex colours and a displacement shape key"""
    bl_idname = "atelier.stylize"
    bl_label = "Stylize Selected"
    bl_options = {"REGISTER"}
    kind = "stylize"

    def params(self, context) -> dict:
        s = context.scene.atelier
        return stylize_params(s.stylize_prompt, s.stylize_quality, s.stylize_steps, s.stylize_seed,
                              clip=pref_text(context, "clip"), subdivide=s.stylize_subdivide,
                              bake_texture=s.stylize_bake)


def style_paths(settings) -> list[str]:
    """The Restyle list's files as absolute paths ("//" resolved against the .blend), in list order."""
    return [os.path.normpath(bpy.path.abspath(item.filepath)) if item.filepath.strip() else ""
            for item in settings.restyle_styles]


class ATELIER_OT_restyle(JobOperator, bpy.types.Operator):
    """Restyle the selected object's texture from the style images (NNFM): a new object with the painted texture"""
    bl_idname = "atelier.restyle"
    bl_label = "Restyle Selected"
    bl_options = {"REGISTER"}
    kind = "restyle"

    def params(self, context) -> dict:
        s = context.scene.atelier
        return restyle_params(s.restyle_quality, s.restyle_steps, s.restyle_seed, s.restyle_palette,
                              s.restyle_pattern_scale, s.restyle_texture_size, clip=pref_text(context, "restyle_clip"))

    def blobs(self, context) -> dict[str, bytes]:
        return read_style_images(style_paths(context.scene.atelier))

    def meta(self, context) -> dict:
        return {"styles": style_paths(context.scene.atelier)}


def check_style_room(settings) -> None:
    """AddonError when the Restyle list already holds the most images a job takes."""
    if len(settings.restyle_styles) >= MAX_STYLES:
        raise AddonError(f"the Restyle list holds {MAX_STYLES} images, the most a job takes",
                         "remove one before adding another", code="too_many_styles")


IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".tga", ".gif")
"""What the style image browser shows besides Blender's own image filter (the backend reads these with Pillow)."""


class ATELIER_OT_restyle_style_add(bpy.types.Operator):
    """Add style images to the Restyle list (pick several at once in the file browser)"""
    bl_idname = "atelier.restyle_style_add"
    bl_label = "Add Style Images"
    bl_options = {"REGISTER", "UNDO"}

    filepath: bpy.props.StringProperty(name="File", subtype="FILE_PATH", options={"SKIP_SAVE"})
    directory: bpy.props.StringProperty(subtype="DIR_PATH", options={"HIDDEN", "SKIP_SAVE"})
    files: bpy.props.CollectionProperty(type=bpy.types.OperatorFileListElement, options={"HIDDEN", "SKIP_SAVE"})
    filter_image: bpy.props.BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})
    filter_folder: bpy.props.BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"})
    filter_glob: bpy.props.StringProperty(default=";".join(f"*{e}" for e in IMAGE_EXTENSIONS),
                                          options={"HIDDEN", "SKIP_SAVE"})

    def invoke(self, context, event):
        context.window_manager.fileselect_add(self)
        return {"RUNNING_MODAL"}

    def chosen(self) -> list[str]:
        """The picked files: several from the browser (`directory` + `files`), or the one `filepath`."""
        names = [f.name for f in self.files if f.name]
        if names and self.directory:
            return [os.path.join(bpy.path.abspath(self.directory), name) for name in names]
        return [self.filepath] if self.filepath.strip() else []

    def execute(self, context):
        s = context.scene.atelier
        chosen, added = self.chosen(), 0
        try:
            if not chosen:
                raise AddonError("no style image was chosen", "pick one or more image files")
            listed = set(style_paths(s))
            for text in chosen:
                path = os.path.normpath(bpy.path.abspath(text))
                if not os.path.isfile(path):
                    raise AddonError(f"the style image {path} does not exist", "pick an existing image file",
                                     code="style_missing")
                if path in listed:
                    continue  # already listed: adding it twice would only weigh it twice
                check_style_room(s)
                s.restyle_styles.add().filepath = path
                listed.add(path)
                added += 1
        except AddonError as exc:
            _report_error(self, exc)
            return {"FINISHED"} if added else {"CANCELLED"}
        finally:
            s.restyle_style_index = max(len(s.restyle_styles) - 1, 0)
            session.tag_redraw()
        if not added:
            self.report({"INFO"}, "the chosen images are already in the list")
        return {"FINISHED"}


class ATELIER_OT_restyle_style_remove(bpy.types.Operator):
    """Remove the selected style image from the Restyle list (the file stays where it is)"""
    bl_idname = "atelier.restyle_style_remove"
    bl_label = "Remove Style Image"
    bl_options = {"REGISTER", "UNDO"}

    index: bpy.props.IntProperty(name="Index", default=-1, min=-1,
                                 description="Which image to remove (-1: the selected one)",
                                 options={"SKIP_SAVE"})

    def execute(self, context):
        s = context.scene.atelier
        index = self.index if self.index >= 0 else s.restyle_style_index
        if not 0 <= index < len(s.restyle_styles):
            self.report({"WARNING"}, "no style image is selected")
            return {"CANCELLED"}
        s.restyle_styles.remove(index)
        s.restyle_style_index = min(index, max(len(s.restyle_styles) - 1, 0))
        session.tag_redraw()
        return {"FINISHED"}


class ATELIER_OT_render_views(JobOperator, bpy.types.Operator):
    """Render shaded views of the selected object with the backend's renderer (images in the .blend)"""
    bl_idname = "atelier.render_views"
    bl_label = "Render Views"
    bl_options = {"REGISTER"}
    kind = "render"

    def params(self, context) -> dict:
        s = context.scene.atelier
        return render_params(s.render_views, s.render_size)


# -- paths --------------------------------------------------------------------------------------------------

def local_path(text: str) -> str:
    """A path field's value as an absolute path ("//" resolved against the .blend); "" stays "" (the params
    builders then say what is missing)."""
    text = (text or "").strip()
    return os.path.normpath(bpy.path.abspath(text)) if text else ""


# -- generate ---------------------------------------------------------------------------------------------

def generate_picture(settings) -> dict:
    """The Generate panel's picture, where it comes from: {"file": absolute path} or {"image": Blender image name}
    (kept with the job: Run Again reads it again). AddonError when none is chosen."""
    if settings.generate_picture_source == "IMAGE":
        if settings.generate_image is None:
            raise AddonError("no picture image is chosen", "pick an image open in Blender in the Generate panel, or "
                             "switch Picture to File", code="no_picture")
        return {"image": settings.generate_image.name}
    return {"file": local_path(settings.generate_picture)}


def read_picture(picture: dict) -> bytes:
    """A generate picture (`generate_picture`) as encoded bytes for blob "image"; AddonError, before anything is
    sent, for a missing, empty or unreadable file or a Blender image that is gone or has no pixels."""
    if "image" in picture:
        image = bpy.data.images.get(picture["image"])
        if image is None:
            raise AddonError(f"the picture image {picture['image']!r} is gone",
                             "pick the picture again in the Generate panel", code="no_picture")
        return image_bytes(image)
    return read_generate_picture(picture.get("file", ""))


class ATELIER_OT_generate(JobOperator, bpy.types.Operator):
    """Generate shapes from the prompt or a picture (CLIP-Forge; optionally refined and styled): new objects at the
    3D cursor"""
    bl_idname = "atelier.generate"
    bl_label = "Generate"
    bl_options = {"REGISTER"}
    kind = "generate"

    def params(self, context) -> dict:
        s = context.scene.atelier
        checkpoint = local_path(pref_text(context, "generator_checkpoint"))
        from_picture = s.generate_from == "PICTURE"
        params = generate_params(s.generate_prompt, checkpoint, s.generate_samples, s.generate_refine,
                                 style=s.generate_style, style_text=s.generate_style_text,
                                 style_quality=s.generate_style_quality, style_steps=s.generate_style_steps,
                                 resolution=s.generate_resolution, threshold=s.generate_threshold,
                                 temperature=s.generate_temperature, seed=s.generate_seed, picture=from_picture)
        self._picture = generate_picture(s) if from_picture else None
        self._image = read_picture(self._picture) if from_picture else None  # read once: a bad file fails here
        return params

    def blobs(self, context) -> dict[str, bytes]:
        return {"image": self._image} if self._image is not None else {}

    def meta(self, context) -> dict:
        meta = {"location": list(context.scene.cursor.location)}  # the samples land where the cursor was
        if self._picture is not None:
            meta["picture"] = self._picture
        return meta

    def label(self, source: str) -> str:
        s = bpy.context.scene.atelier
        if s.generate_from != "PICTURE":
            return generate_label(s.generate_prompt)
        try:
            picture = generate_picture(s)
        except AddonError:
            picture = None
        return generate_label(s.generate_prompt, picture_name(picture) or "a picture")


class ATELIER_OT_run_again(bpy.types.Operator):
    """Run the job that made the active object again, on its source or from its settings alone (Variation: new seed)"""
    bl_idname = "atelier.run_again"
    bl_label = "Run Again"
    bl_options = {"REGISTER"}

    variation: bpy.props.BoolProperty(name="New seed", default=False)

    def execute(self, context):
        runtime = session.refresh_settings(context)
        stored = job_of(context.active_object)
        if stored is None:
            self.report({"ERROR"}, "the active object was not made by an Atelier job (select a result first)")
            return {"CANCELLED"}
        kind, params, source_name = stored
        label = f"{JOB_KINDS[kind].label if kind in JOB_KINDS else kind} {source_name}".strip()
        if kind not in JOB_KINDS:
            self.report({"ERROR"}, f"this add-on cannot run {kind!r} jobs")
            return {"CANCELLED"}
        if kind in PARAMS_ONLY_KINDS:
            return self.again_from_params(context, runtime, kind, params, stored_picture(context.active_object))
        source = bpy.data.objects.get(source_name)
        try:
            if source is None or source.type != "MESH":
                raise AddonError(f"the source object {source_name!r} is gone",
                                 "select a mesh object and run the job from the panel", code="no_selection")
            if self.variation:
                params = _new_seed(params)
            blobs, meta = {}, {}
            if kind == "restyle":  # the style images are read again from where they were
                meta["styles"] = stored_styles(context.active_object)
                blobs = read_style_images(meta["styles"])
            mesh = mesh_payload(source, context.evaluated_depsgraph_get())
            meta["transform"] = list(flat_matrix(source.matrix_world))
            record = runtime.submit(kind, params, mesh, label=label, source=source.name, meta=meta, blobs=blobs)
        except AddonError as exc:
            return _refused(self, runtime, kind, label, exc, params, source_name)
        except Exception as exc:  # noqa: BLE001
            return _unexpected(self, label, exc)
        return _queued(self, record)

    def again_from_params(self, context, runtime, kind: str, params: dict, picture: dict | None) -> set[str]:
        """A kind that needs no source object (PARAMS_ONLY_KINDS): the stored params as they are (a new seed for a
        Variation); generate's samples land at the 3D cursor, and its picture (if any) is read again."""
        if self.variation:
            params = _new_seed(params)
        meta = {"location": list(context.scene.cursor.location)} if kind == "generate" else {}
        label = JOB_KINDS[kind].label
        if kind == "generate":
            label = generate_label(str(params.get("prompt", "")), picture_name(picture))
        try:
            blobs = {}
            if kind == "generate" and picture:
                meta["picture"], blobs["image"] = picture, read_picture(picture)
            record = runtime.submit(kind, params, label=label, meta=meta, blobs=blobs)
        except AddonError as exc:
            return _refused(self, runtime, kind, label, exc, params)
        except Exception as exc:  # noqa: BLE001
            return _unexpected(self, label, exc)
        return _queued(self, record)


class ATELIER_OT_cancel_job(bpy.types.Operator):
    """Cancel this job (the backend stops it within one step)"""
    bl_idname = "atelier.cancel_job"
    bl_label = "Cancel Job"
    bl_options = {"INTERNAL"}

    job_id: bpy.props.StringProperty()

    def execute(self, context):
        runtime = session.get_runtime()
        job = runtime.jobs.get(self.job_id)
        if job is None or not job.active:
            self.report({"WARNING"}, "that job is not running")
            return {"CANCELLED"}
        runtime.cancel(self.job_id)
        return {"FINISHED"}


class ATELIER_OT_clear_jobs(bpy.types.Operator):
    """Remove finished, failed and cancelled jobs from the list"""
    bl_idname = "atelier.clear_jobs"
    bl_label = "Clear Finished Jobs"
    bl_options = {"INTERNAL"}

    def execute(self, context):
        session.get_runtime().jobs.clear_finished()
        return {"FINISHED"}


class ATELIER_OT_import_result(bpy.types.Operator):
    """Bring a finished job's result into the scene (the add-on's timer runs this: one undo step per result)"""
    bl_idname = "atelier.import_result"
    bl_label = "Import Atelier Result"
    bl_options = {"REGISTER", "UNDO", "INTERNAL"}

    job_id: bpy.props.StringProperty()

    def execute(self, context):
        runtime = session.get_runtime()
        record = runtime.jobs.get(self.job_id)
        if record is None or record.state != "importing" or record.result is None:
            return {"CANCELLED"}
        importer = IMPORTERS.get(record.kind)
        try:
            if importer is None:
                raise AddonError(f"this add-on has no importer for {record.kind!r} results")
            record.outputs = importer(record, context)
        except AddonError as exc:
            record.fail("import_failed", exc.message, exc.hint, runtime.log_path)
            return {"CANCELLED"}
        except Exception as exc:  # noqa: BLE001
            log.error("Atelier: importing %s failed:\n%s", record.id, traceback.format_exc())
            record.fail("import_failed", f"the result could not be imported: {type(exc).__name__}: {exc}",
                        "details in the system console")
            return {"CANCELLED"}
        record.state, record.result = "done", None
        record.message = f"made {', '.join(record.outputs)}" if record.outputs else "done"
        return {"FINISHED"}


class ATELIER_OT_notify(bpy.types.Operator):
    """Show a message from the add-on in the status bar"""
    bl_idname = "atelier.notify"
    bl_label = "Atelier Message"
    bl_options = {"INTERNAL"}

    level: bpy.props.EnumProperty(items=[(x, x, "") for x in ("INFO", "WARNING", "ERROR")], default="INFO")
    message: bpy.props.StringProperty()

    def execute(self, context):
        self.report({self.level}, self.message)
        return {"FINISHED"}


OPERATORS = (
    ATELIER_OT_backend_start, ATELIER_OT_backend_stop, ATELIER_OT_backend_restart, ATELIER_OT_backend_release,
    ATELIER_OT_stylize, ATELIER_OT_restyle, ATELIER_OT_restyle_style_add, ATELIER_OT_restyle_style_remove,
    ATELIER_OT_render_views, ATELIER_OT_generate, ATELIER_OT_run_again, ATELIER_OT_cancel_job,
    ATELIER_OT_clear_jobs, ATELIER_OT_import_result, ATELIER_OT_notify,
)
