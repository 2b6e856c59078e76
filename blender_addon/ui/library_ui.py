"""The Search Library panel's asset library parts (`panels.ATELIER_PT_library` draws them): the libraries registered
in Preferences > File Paths > Asset Libraries with a tick each, what each index is doing, where the search looks, the
filters, and a hit's catalog, tags and scores."""

from __future__ import annotations

from ..core.assetlib import TEAM_LIBRARY, hit_lines, hit_source, library_db
from ..engine.settings import pref_text
from ..operators.library_ops import chosen_paths, index_root, registered_libraries


def _index_state(jobs, db: str) -> str:
    """What the newest index job into `db` says: "indexing 40%", "12 shapes", "failed", or "" (none in the list)."""
    job = next((j for j in jobs if j.kind == "index" and j.params.get("db") == db), None)
    if job is None:
        return ""
    if job.active:
        return f"indexing {100 * job.fraction:.0f}%"
    if job.state == "done":
        failed = len(job.fields.get("failed") or [])
        return f"{job.fields.get('shapes', 0)} shapes" + (f", {failed} failed" if failed else "")
    return job.state


def draw_asset_libraries(layout, context, jobs) -> None:
    """One row per registered library: its tick, name, index state and a Search In radio; then the Index
    Selected Libraries button and the Database folder's own Search In radio."""
    s = context.scene.atelier
    box = layout.box()
    box.label(text="Asset libraries (Preferences > File Paths)", icon="ASSET_MANAGER")
    libraries = registered_libraries(context)
    if not libraries:
        box.label(text="None registered: add one in Preferences > File Paths", icon="INFO")
    chosen, root = chosen_paths(s), index_root(context)
    for name, path in libraries:
        row = box.row(align=True)
        row.operator("atelier.asset_library_toggle", text="", emboss=False,
                     icon="CHECKBOX_HLT" if path in chosen else "CHECKBOX_DEHLT").path = path
        row.label(text=name)
        state = _index_state(jobs, library_db(root, path))
        if state:
            row.label(text=state)
        row.operator("atelier.asset_library_search_in", text="", emboss=False,
                     icon="RADIOBUT_ON" if s.search_library == path else "RADIOBUT_OFF").path = path
    if libraries:
        row = box.row(align=True)
        row.prop(s, "asset_blend_objects", text="")
        row.prop(s, "asset_workers")
        row.prop(s, "library_descriptor", text="")
        col = box.column()
        col.enabled = bool(chosen & {path for _, path in libraries})
        col.operator("atelier.index_asset_libraries", icon="FILE_REFRESH")
    row = layout.row(align=True)
    row.operator("atelier.asset_library_search_in", text="", emboss=False,
                 icon="RADIOBUT_ON" if not s.search_library else "RADIOBUT_OFF").path = ""
    row.prop(s, "library_db")
    team = pref_text(context, "team_library").strip()
    if team:
        row = layout.row(align=True)
        row.operator("atelier.asset_library_search_in", text="", emboss=False,
                     icon="RADIOBUT_ON" if s.search_library == TEAM_LIBRARY else "RADIOBUT_OFF").path = TEAM_LIBRARY
        row.label(text=f"Team library: {team}", icon="NETWORK_DRIVE")
    if s.search_library == TEAM_LIBRARY and not team:
        layout.label(text="Searching the team library: none is set in the preferences", icon="ERROR")
    elif s.search_library not in ("", TEAM_LIBRARY) and s.search_library not in {path for _, path in libraries}:
        layout.label(text=f"Searching {s.search_library}: no longer registered", icon="ERROR")


def draw_filters(layout, context) -> None:
    s = context.scene.atelier
    row = layout.row(align=True)
    row.prop(s, "search_catalog", text="", icon="ASSET_MANAGER")
    row.prop(s, "search_tag", text="", icon="BOOKMARKS")


def draw_hit_details(cell, hit: dict) -> None:
    """A hit's catalog, tags and fused scores (what an older backend does not send is not shown)."""
    for text, icon in hit_lines(hit):
        cell.label(text=text, icon=icon)


def any_blend_hit(hits) -> bool:
    """Whether the Append / Link choice matters for these hits."""
    return any(hit_source(hit) is not None for hit in hits if isinstance(hit, dict))
