"""The sidebar panels: 3D Viewport > Sidebar (N) > Atelier. Drawing reads state only; it never waits."""

from __future__ import annotations

import os
import time

import bpy

from ..core.kinds import JOB_KINDS, MAX_STYLES, photo_to_3d_needs_db
from ..engine import session
from ..engine.settings import get_prefs
from ..operators.importers import job_of
from .library_ui import any_blend_hit, draw_asset_libraries, draw_filters, draw_hit_details

_STATE_TEXT = {
    "stopped": ("Stopped", "RADIOBUT_OFF"),
    "starting": ("Starting...", "TIME"),
    "connecting": ("Connecting...", "TIME"),
    "ready": ("Ready", "CHECKMARK"),
    "failed": ("Not available", "ERROR"),
    "lost": ("Stopped unexpectedly", "ERROR"),
}


def _wrapped(layout, text: str, icon: str = "NONE", width: int = 42) -> None:
    """Long messages as several labels (panels do not wrap text)."""
    words, line, first = text.split(), "", True
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            layout.label(text=line, icon=icon if first else "BLANK1")
            line, first = word, False
        else:
            line = f"{line} {word}".strip()
    if line:
        layout.label(text=line, icon=icon if first else "BLANK1")


def _kind_offered(layout, kind: str) -> bool:
    """False (with a note) when the connected backend does not offer this job kind."""
    runtime = session.get_runtime(optional=True)
    if runtime is not None and runtime.ready and kind not in runtime.job_kinds:
        _wrapped(layout.box(), f"This backend has no {kind} job: update the Atelier backend.", "ERROR")
        return False
    return True


class AtelierPanel:
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Atelier"


class ATELIER_PT_backend(AtelierPanel, bpy.types.Panel):
    bl_idname = "ATELIER_PT_backend"
    bl_label = "Backend"
    bl_order = 0

    def draw(self, context):
        layout = self.layout
        runtime = session.get_runtime(optional=True)
        if runtime is None:
            layout.label(text="The add-on is not registered", icon="ERROR")
            return
        text, icon = _STATE_TEXT.get(runtime.state, (runtime.state, "QUESTION"))
        if runtime.restart_pending:
            text, icon = "Restarting...", "TIME"
        box = layout.box()
        row = box.row()
        row.label(text=text, icon=icon)
        if runtime.state in ("stopped", "failed", "lost"):
            row.operator("atelier.backend_start", text="Start", icon="PLAY")
        else:
            row.operator("atelier.backend_restart", text="", icon="FILE_REFRESH")
            row.operator("atelier.backend_stop", text="Stop", icon="PAUSE")
        if runtime.welcome is not None:
            col = box.column(align=True)
            col.label(text=f"Device: {runtime.welcome.device}   Renderer: {runtime.welcome.renderer}")
            col.label(text=f"Address: {runtime.endpoint}")
            col.operator("atelier.backend_release", icon="TRASH")
        if runtime.restart_note:  # supervision restarted it (INFO) or gave up (ERROR)
            _wrapped(box, runtime.restart_note, "ERROR" if runtime.state == "lost" and not runtime.restart_pending
                     else "INFO")
        if runtime.message:
            _wrapped(box, runtime.message, "ERROR")
            if runtime.hint:
                _wrapped(box, runtime.hint, "INFO")
        if runtime.log_path:
            row = box.row()
            row.label(text=f"Log: {runtime.log_path}", icon="TEXT")
            row.operator("wm.path_open", text="", icon="FILE_FOLDER").filepath = os.path.dirname(runtime.log_path)


class ATELIER_PT_generate(AtelierPanel, bpy.types.Panel):
    """Shapes from a text prompt or a picture (CLIP-Forge), optionally refined (ISS) and styled (Text2Mesh), at the
    3D cursor."""

    bl_idname = "ATELIER_PT_generate"
    bl_label = "Generate"
    bl_order = 5

    def draw(self, context):
        layout = self.layout
        if not _kind_offered(layout, "generate"):
            return
        s = context.scene.atelier
        prefs = get_prefs(context)
        if prefs is not None:
            layout.prop(prefs, "generator_checkpoint", text="Generator")
            if not prefs.generator_checkpoint.strip():
                _wrapped(layout, "Using the backend's shipped generator; set a file from `atelier "
                                 "train-generator` to use your own", "INFO")
        layout.prop(s, "generate_from", expand=True)
        from_picture = s.generate_from == "PICTURE"
        if from_picture:
            box = layout.box()
            box.prop(s, "generate_picture_source", expand=True)
            if s.generate_picture_source == "FILE":
                box.prop(s, "generate_picture", text="")
            else:
                box.template_ID(s, "generate_image", open="image.open")
            layout.prop(s, "generate_prompt", text="Prompt (optional)")
        else:
            layout.prop(s, "generate_prompt", text="")
        row = layout.row(align=True)
        row.prop(s, "generate_samples")
        row.prop(s, "generate_refine")
        layout.prop(s, "generate_style")
        if s.generate_style:
            box = layout.box()
            box.prop(s, "generate_style_text", text="", icon="BRUSH_DATA")
            if not s.generate_style_text.strip():
                if from_picture and not s.generate_prompt.strip():
                    box.label(text="Type a style text (or a prompt to split)", icon="ERROR")
                else:
                    box.label(text="Empty: split the prompt ('a chair made of oak')", icon="INFO")
            row = box.row(align=True)
            row.prop(s, "generate_style_quality", text="")
            row.prop(s, "generate_style_steps", text="Steps")
        layout.prop(s, "generate_show_advanced", icon="TRIA_DOWN" if s.generate_show_advanced else "TRIA_RIGHT",
                    emboss=False)
        if s.generate_show_advanced:
            col = layout.column(align=True)
            col.prop(s, "generate_resolution")
            col.prop(s, "generate_threshold")
            col.prop(s, "generate_temperature")
            col.prop(s, "generate_seed")
        layout.operator("atelier.generate", icon="MESH_ICOSPHERE")

        runtime = session.get_runtime(optional=True)
        latest = _latest(runtime.jobs.all(), ("generate",)) if runtime is not None else None
        if latest is not None and latest.state in ("failed", "cancelled"):
            _wrapped(layout.box(), f"{latest.label}: {latest.error_text()}", "ERROR")
        elif latest is not None and latest.state == "done":
            box = layout.box()
            before = latest.fields.get("clip_score_before") or []
            after = latest.fields.get("clip_score_after") or []
            refined = bool(latest.fields.get("refine"))
            # The outputs come best first (the backend ranks them by CLIP score): number them so the order reads.
            for index, name in enumerate(latest.outputs):
                score = f"{before[index]:.3f}" if index < len(before) and before[index] is not None else "?"
                if refined and index < len(after) and after[index] is not None:
                    score += f" -> {after[index]:.3f}"
                box.label(text=f"#{index + 1} {name}: CLIP score {score}", icon="OUTLINER_OB_MESH")
        _run_again_box(layout, context, "generate")


class ATELIER_PT_stylize(AtelierPanel, bpy.types.Panel):
    bl_idname = "ATELIER_PT_stylize"
    bl_label = "Stylize Selected"
    bl_order = 10

    def draw(self, context):
        layout = self.layout
        if not _kind_offered(layout, "stylize"):
            return
        s = context.scene.atelier
        layout.prop(s, "stylize_prompt", text="")
        row = layout.row(align=True)
        row.prop(s, "stylize_quality", text="")
        row.prop(s, "stylize_steps")
        layout.prop(s, "stylize_seed")
        row = layout.row()
        row.prop(s, "stylize_subdivide", text="Subdivide")
        row.prop(s, "stylize_bake")
        layout.operator("atelier.stylize", icon="BRUSH_DATA")
        _run_again_box(layout, context, "stylize")


def _run_again_box(layout, context, kind: str) -> None:
    """Run Again / Variation for the active object when a `kind` job made it."""
    stored = job_of(context.active_object)
    if stored is None or stored[0] != kind or kind not in JOB_KINDS:
        return
    box = layout.box()
    _, _, source = stored
    box.label(text=f"{context.active_object.name}: {kind}" + (f" of {source}" if source else ""), icon="INFO")
    row = box.row(align=True)
    row.operator("atelier.run_again", text="Run Again", icon="FILE_REFRESH").variation = False
    row.operator("atelier.run_again", text="Variation", icon="MOD_NOISE").variation = True


class ATELIER_UL_style_images(bpy.types.UIList):
    """The Restyle list: one row per style image file (a missing file shows an error icon)."""

    bl_idname = "ATELIER_UL_style_images"

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0):
        path = bpy.path.abspath(item.filepath) if item.filepath else ""
        exists = bool(path) and os.path.isfile(path)
        layout.label(text=os.path.basename(path) or "(no file)", icon="IMAGE_DATA" if exists else "ERROR")


class ATELIER_PT_restyle(AtelierPanel, bpy.types.Panel):
    bl_idname = "ATELIER_PT_restyle"
    bl_label = "Restyle Selected"
    bl_order = 15

    def draw(self, context):
        layout = self.layout
        if not _kind_offered(layout, "restyle"):
            return
        s = context.scene.atelier
        count = len(s.restyle_styles)
        layout.label(text=f"Style images ({count} of at most {MAX_STYLES})", icon="IMAGE_DATA")
        row = layout.row()
        row.template_list("ATELIER_UL_style_images", "", s, "restyle_styles", s, "restyle_style_index", rows=3)
        col = row.column(align=True)
        col.operator("atelier.restyle_style_add", text="", icon="ADD")
        col.operator("atelier.restyle_style_remove", text="", icon="REMOVE")
        if 0 <= s.restyle_style_index < count:
            layout.prop(s.restyle_styles[s.restyle_style_index], "filepath", text="")
        if not count:
            layout.label(text="Add 1 to 16 images whose look to transfer", icon="INFO")
        layout.prop(s, "restyle_palette")
        row = layout.row(align=True)
        row.prop(s, "restyle_quality", text="")
        row.prop(s, "restyle_steps")
        row = layout.row(align=True)
        row.prop(s, "restyle_pattern_scale")
        row.prop(s, "restyle_texture_size")
        layout.prop(s, "restyle_seed")
        layout.operator("atelier.restyle", icon="TEXTURE")
        _run_again_box(layout, context, "restyle")


class ATELIER_PT_render(AtelierPanel, bpy.types.Panel):
    bl_idname = "ATELIER_PT_render"
    bl_label = "Render Views"
    bl_order = 20
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context):
        layout = self.layout
        if not _kind_offered(layout, "render"):
            return
        s = context.scene.atelier
        row = layout.row(align=True)
        row.prop(s, "render_views")
        row.prop(s, "render_size")
        layout.operator("atelier.render_views", icon="RENDER_STILL")


LIBRARY_KINDS = ("index", "search", "fetch_shape")
GRID_COLUMNS = 3


def _latest(jobs, kinds) -> object | None:
    """The newest job of these kinds (the tracker lists the newest first)."""
    return next((job for job in jobs if job.kind in kinds), None)


class ATELIER_PT_library(AtelierPanel, bpy.types.Panel):
    """Index a folder of meshes or the registered asset libraries, search by text, sketch or photo (filtered by
    catalog and tag), import a hit at the 3D cursor (a .blend asset appended or linked from its file)."""

    bl_idname = "ATELIER_PT_library"
    bl_label = "Search Library"
    bl_order = 30

    def draw(self, context):
        layout = self.layout
        if not _kind_offered(layout, "search"):
            return
        s = context.scene.atelier
        runtime = session.get_runtime(optional=True)
        jobs = runtime.jobs.all() if runtime is not None else []
        draw_asset_libraries(layout, context, jobs)
        box = layout.box()
        box.prop(s, "library_folder")
        row = box.row(align=True)
        row.prop(s, "library_views")
        row.prop(s, "library_descriptor", text="")
        row.operator("atelier.index_library", icon="FILE_REFRESH")
        layout.prop(s, "search_mode", expand=True)
        layout.prop(s, "search_text", text="", icon="VIEWZOOM")
        if s.search_mode == "SKETCH":
            layout.prop(s, "sketch_source", expand=True)
            if s.sketch_source == "IMAGE":
                layout.prop(s, "search_image", text="Sketch")
            elif s.sketch_source == "GREASE_PENCIL":
                layout.prop(s, "sketch_object", text="")
            else:
                layout.label(text="Draw with the Annotate tool (3D Cursor placement)", icon="GREASEPENCIL")
        elif s.search_mode == "PHOTO":
            layout.prop(s, "search_photo_source", expand=True)
            if s.search_photo_source == "FILE":
                layout.prop(s, "search_image", text="Photo")
            else:
                layout.template_ID(s, "search_photo_image", open="image.open")
            row = layout.row(align=True)
            row.prop(s, "search_photo_prompt", text="", icon="SELECT_SUBTRACT")
            row.prop(s, "search_raw_photo", toggle=True)
        row = layout.row(align=True)
        row.prop(s, "search_k")
        row.prop(s, "search_category", text="")
        draw_filters(layout, context)
        layout.operator("atelier.search_library", icon="VIEWZOOM")
        latest = _latest(jobs, LIBRARY_KINDS)
        if latest is not None and latest.state in ("failed", "cancelled"):
            _wrapped(layout.box(), f"{latest.label}: {latest.error_text()}", "ERROR")
        index = _latest(jobs, ("index",))
        if index is not None and index.state == "done":
            failed = index.fields.get("failed") or []
            layout.label(text=f"Indexed {index.fields.get('shapes', 0)} shapes"
                              + (f", {len(failed)} failed" if failed else ""), icon="CHECKMARK")
        search = next((job for job in jobs if job.kind == "search" and job.state == "done"), None)
        if search is None:
            return
        hits = search.fields.get("hits") or []
        query = search.params.get("text") or search.fields.get("mode", "")
        layout.label(text=f"{len(hits)} results for {query}" if hits else f"No results for {query}",
                     icon="IMGDISPLAY")
        cut = search.fields.get("cut")
        if isinstance(cut, dict):  # a photo query: what was cut out of it before the search
            area = cut.get("area_fraction")
            layout.label(text=f"Photo cut: {cut.get('method', '?')}"
                              + (f", {100 * float(area):.0f}% of the photo" if cut.get("box") and area else ""),
                         icon="SELECT_SUBTRACT")
            if cut.get("note"):
                _wrapped(layout.box(), str(cut["note"]), "INFO")
        if any_blend_hit(hits):
            row = layout.row(align=True)
            row.label(text=".blend assets:")
            row.prop(s, "blend_import_mode", expand=True)
        grid = layout.grid_flow(row_major=True, columns=GRID_COLUMNS, even_columns=True, even_rows=True, align=True)
        for number, hit in enumerate(hits):
            cell = grid.box().column(align=True)
            icon = session.hit_icon(search.id, number)
            if icon:
                cell.template_icon(icon_value=icon, scale=5.0)
            else:
                cell.label(text="", icon="MESH_DATA")
            cell.label(text=str(hit.get("name", "?")))
            cell.label(text=f"{float(hit.get('score', 0.0)):.3f}  {hit.get('category') or ''}".rstrip())
            draw_hit_details(cell, hit)
            op = cell.operator("atelier.import_hit", text="Import", icon="IMPORT")
            op.job_id, op.index = search.id, number


SEGMENT_KINDS = ("segment", "photo_to_3d")


class ATELIER_PT_segment(AtelierPanel, bpy.types.Panel):
    """Cut an object out of a photo by a prompt (points and a box from the Image Editor's 2D cursor refine it); the
    cut-out searches the library or becomes a style image; Photo to 3D restyles the closest library shape."""

    bl_idname = "ATELIER_PT_segment"
    bl_label = "Segment Photo"
    bl_order = 35

    def draw(self, context):
        layout = self.layout
        if not _kind_offered(layout, "segment"):
            return
        s = context.scene.atelier
        layout.prop(s, "segment_source", expand=True)
        if s.segment_source == "FILE":
            layout.prop(s, "segment_photo", text="")
        else:
            layout.template_ID(s, "segment_image", open="image.open")
        layout.prop(s, "segment_prompt", text="", icon="VIEWZOOM")
        layout.prop(s, "segment_proposer")

        box = layout.box()
        row = box.row(align=True)
        row.label(text=f"Points ({len(s.segment_points)})", icon="RESTRICT_SELECT_OFF")
        row.operator("atelier.segment_point_add", text="On", icon="ADD").positive = True
        row.operator("atelier.segment_point_add", text="Off", icon="REMOVE").positive = False
        row.operator("atelier.segment_points_clear", text="", icon="X").index = -1
        for index, point in enumerate(s.segment_points):
            row = box.row(align=True)
            row.label(text=f"{'on' if point.positive else 'off'} at ({point.u:.3f}, {point.v:.3f})",
                      icon="LAYER_ACTIVE" if point.positive else "LAYER_USED")
            row.operator("atelier.segment_points_clear", text="", icon="X").index = index
        row = box.row(align=True)
        row.prop(s, "segment_use_box")
        row.operator("atelier.segment_box_corner", text="Corner 1").corner = 0
        row.operator("atelier.segment_box_corner", text="Corner 2").corner = 1
        if s.segment_use_box:
            u0, v0, u1, v1 = s.segment_box
            box.label(text=f"Box ({u0:.3f}, {v0:.3f}) to ({u1:.3f}, {v1:.3f})")
        if not len(s.segment_points) and not s.segment_use_box:
            _wrapped(box, "Optional: place the Image Editor's 2D cursor (Shift + right-click) on the photo, then "
                          "add it as a point or a box corner", "INFO")
        layout.operator("atelier.segment_photo", icon="SELECT_SUBTRACT")

        runtime = session.get_runtime(optional=True)
        latest = _latest(runtime.jobs.all(), SEGMENT_KINDS) if runtime is not None else None
        if latest is not None and latest.state in ("failed", "cancelled"):
            _wrapped(layout.box(), f"{latest.label}: {latest.error_text()}", "ERROR")
        elif latest is not None and latest.kind == "segment" and latest.state == "done":
            area = latest.fields.get("area")
            layout.label(text=f"{latest.fields.get('method', '')}"
                              + (f", {100 * float(area):.0f}% of the photo" if area is not None else ""),
                         icon="CHECKMARK")

        layout.prop(s, "segment_cutout")
        cutout = s.segment_cutout
        if cutout is not None:
            layout.template_icon(icon_value=layout.icon(cutout), scale=5.0)
        col = layout.column(align=True)
        col.enabled = cutout is not None
        col.operator("atelier.search_cutout", icon="VIEWZOOM")
        col.operator("atelier.cutout_to_style", icon="TEXTURE")

        draw_photo_to_3d(layout.box(), s, latest)


def draw_photo_to_3d(box, s, latest) -> None:
    """The Segment Photo panel's Photo to 3D box: the method, its options, the button and the last result. Retrieve
    restyles the Search Library's closest shape; Reconstruct fits Gaussians (from its Init); Auto reconstructs from
    the closest shape. The database field is needed only where the method (or init) searches the library."""
    box.label(text="Photo to 3D (the Search Library's database)", icon="MESH_DATA")
    box.row(align=True).prop(s, "photo3d_method", expand=True)
    if s.photo3d_method == "retrieve":
        row = box.row(align=True)
        row.prop(s, "photo3d_quality", text="")
        row.prop(s, "photo3d_steps")
    else:
        if s.photo3d_method == "reconstruct":
            box.prop(s, "photo3d_init", text="Init")
        row = box.row(align=True)
        row.prop(s, "photo3d_recon_steps", text="Steps")
        row.prop(s, "photo3d_texture_steps", text="Texture steps")
        box.row(align=True).prop(s, "photo3d_guidance", expand=True)
        if s.photo3d_guidance == "zero123":
            box.prop(s, "photo3d_zero123", text="Zero123 folder")
            box.prop(s, "photo3d_clip_fallback", text="Allow CLIP fallback")
    why = photo_to_3d_needs_db(s.photo3d_method, s.photo3d_init if s.photo3d_method == "reconstruct" else "")
    if why and not (s.library_db.strip() or s.search_library):
        _wrapped(box, f"{why}: set the Search Library's database first", "INFO")
    box.operator("atelier.photo_to_3d", icon="IMPORT")
    if latest is not None and latest.kind == "photo_to_3d" and latest.state == "done" \
            and latest.fields.get("method") in ("reconstruct", "auto"):
        f = latest.fields
        iou = f.get("silhouette_iou")
        box.label(text=f"{f.get('gaussians', 0)} Gaussians, {f.get('faces', 0)} faces"
                       + (f", silhouette IoU {float(iou):.2f}" if iou is not None else ""), icon="CHECKMARK")
        if f.get("prior"):
            box.label(text=f"Started from {f['prior']}")
        for note in f.get("notes") or []:
            _wrapped(box, str(note), "INFO")


class ATELIER_PT_jobs(AtelierPanel, bpy.types.Panel):
    bl_idname = "ATELIER_PT_jobs"
    bl_label = "Jobs"
    bl_order = 100

    def draw(self, context):
        layout = self.layout
        runtime = session.get_runtime(optional=True)
        if runtime is None:
            return
        jobs = runtime.jobs.all()
        active = [j for j in jobs if j.active or j.state == "importing"]
        for job in active:
            box = layout.box()
            row = box.row()
            row.label(text=job.label, icon="SORTTIME")
            if job.active:
                row.operator("atelier.cancel_job", text="", icon="CANCEL").job_id = job.id
            if job.state == "waiting":
                box.label(text="Waiting for the backend...")
            elif job.state == "queued":
                box.label(text=f"Queued ({job.position} ahead)")
            else:
                eta = f", {job.eta_s:.0f} s left" if job.eta_s is not None else ""
                box.progress(factor=job.fraction, type="BAR",
                             text=f"{job.stage or job.state} {job.step}/{job.total}{eta}")
            if job.loss is not None:
                box.label(text=f"Loss {job.loss:.4f}")
            icon = session.preview_icon(job)
            if icon:
                box.template_icon(icon_value=icon, scale=8.0)
        finished = [j for j in jobs if not (j.active or j.state == "importing")]
        if not finished:
            if not active:
                layout.label(text="No jobs yet")
            return
        s = context.scene.atelier
        row = layout.row()
        row.prop(s, "show_history", text=f"History ({len(finished)})", icon="TRIA_DOWN" if s.show_history else
                 "TRIA_RIGHT", emboss=False)
        row.operator("atelier.clear_jobs", text="", icon="X")
        if not s.show_history:
            return
        for job in finished:
            box = layout.box()
            icon = {"done": "CHECKMARK", "cancelled": "CANCEL"}.get(job.state, "ERROR")
            ago = time.time() - (job.finished or job.created)
            box.label(text=f"{job.label} - {job.state} ({ago:.0f} s ago)", icon=icon)
            if job.params:
                _wrapped(box, job.summary(), "PROPERTIES")
            if job.state == "failed":
                _wrapped(box, job.error_text(), "INFO")
            elif job.message and job.state == "done":
                _wrapped(box, job.message, "OUTLINER_OB_MESH")
                if "loss_last" in job.fields:
                    box.label(text=f"Loss {job.fields.get('loss_first', 0):.4f} -> {job.fields['loss_last']:.4f}")
                if job.fields.get("unwrapped"):
                    box.label(text="The mesh had no UVs: it was unwrapped automatically", icon="UV")
                if job.fields.get("palette"):
                    box.label(text=f"Palette ({job.fields.get('palette_source', '')}): "
                                   f"{', '.join(map(str, job.fields['palette']))}", icon="COLOR")


PANELS = (ATELIER_UL_style_images, ATELIER_PT_backend, ATELIER_PT_generate, ATELIER_PT_stylize, ATELIER_PT_restyle,
          ATELIER_PT_render, ATELIER_PT_library, ATELIER_PT_segment, ATELIER_PT_jobs)
