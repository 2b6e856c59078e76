"""Operators: backend control, one submit operator per wired job kind, and job handling.

Every operator returns at once: a job operator reads the mesh, queues the job and ends; the timer
(`session.drain`) brings the result in. Bad input ends the operator with a report and a failed entry in the
job list that says the fix, never a traceback.
"""


import logging
import random
import traceback

import bpy

from . import session
from .errors import AddonError
from .importers import IMPORTERS, job_of
from .kinds import JOB_KINDS, MAX_SEED, render_params, stylize_params
from .meshio import mesh_payload, selected_mesh_object
from .meshpack import flat_matrix
from .preferences import get_prefs

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
    """Base of the operators that submit a job: subclasses set `kind` and write `params(context)`.

    `execute` reads the selected object's mesh (when the kind needs one), queues the job and returns;
    any AddonError becomes a report plus a failed job in the list."""

    kind = ""

    def params(self, context) -> dict:
        raise NotImplementedError

    def label(self, source: str) -> str:
        return f"{JOB_KINDS[self.kind].label} {source}".strip()

    def execute(self, context):
        runtime = session.refresh_settings(context)
        source, params = "", {}
        try:
            params = self.params(context)
            mesh, meta = None, {}
            if JOB_KINDS[self.kind].needs_mesh:
                obj = self.source_object(context)
                source = obj.name
                mesh = mesh_payload(obj, context.evaluated_depsgraph_get())
                meta["transform"] = list(flat_matrix(obj.matrix_world))
            record = runtime.submit(self.kind, params, mesh, label=self.label(source), source=source, meta=meta)
        except AddonError as exc:
            runtime.fail_now(self.kind, self.label(source), exc, params, source)
            _report_error(self, exc)
            return {"CANCELLED"}
        except Exception as exc:  # noqa: BLE001  a bug: one line in the status bar, the traceback in the console
            return _unexpected(self, JOB_KINDS[self.kind].label, exc)
        if record.state == "failed":
            self.report({"ERROR"}, f"{record.label}: {record.error_text()}")
            return {"CANCELLED"}
        session.tag_redraw()
        return {"FINISHED"}

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
        prefs = get_prefs(context)
        return stylize_params(s.stylize_prompt, s.stylize_quality, s.stylize_steps, s.stylize_seed,
                              clip=prefs.clip if prefs is not None else "", subdivide=s.stylize_subdivide,
                              bake_texture=s.stylize_bake)


class ATELIER_OT_render_views(JobOperator, bpy.types.Operator):
    """Render shaded views of the selected object with the backend's renderer (images in the .blend)"""
    bl_idname = "atelier.render_views"
    bl_label = "Render Views"
    bl_options = {"REGISTER"}
    kind = "render"

    def params(self, context) -> dict:
        s = context.scene.atelier
        return render_params(s.render_views, s.render_size)


class ATELIER_OT_run_again(bpy.types.Operator):
    """Run the job that made the active object again on its source (Variations: with a new seed)"""
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
        source = bpy.data.objects.get(source_name)
        try:
            if source is None or source.type != "MESH":
                raise AddonError(f"the source object {source_name!r} is gone",
                                 "select a mesh object and run the job from the panel", code="no_selection")
            if self.variation:
                params = {**params, "seed": random.randint(0, MAX_SEED)}
            mesh = mesh_payload(source, context.evaluated_depsgraph_get())
            record = runtime.submit(kind, params, mesh, label=label, source=source.name,
                                    meta={"transform": list(flat_matrix(source.matrix_world))})
        except AddonError as exc:
            runtime.fail_now(kind, label, exc, params, source_name)
            _report_error(self, exc)
            return {"CANCELLED"}
        except Exception as exc:  # noqa: BLE001
            return _unexpected(self, label, exc)
        if record.state == "failed":
            self.report({"ERROR"}, f"{record.label}: {record.error_text()}")
            return {"CANCELLED"}
        return {"FINISHED"}


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
    ATELIER_OT_stylize, ATELIER_OT_render_views, ATELIER_OT_run_again, ATELIER_OT_cancel_job,
    ATELIER_OT_clear_jobs, ATELIER_OT_import_result, ATELIER_OT_notify,
)
