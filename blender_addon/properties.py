"""Per-scene settings of the panel's job sections (`scene.atelier`)."""


import bpy

from .kinds import MAX_SEED, MAX_STEPS, MAX_STYLES, PATTERN_SCALE_RANGE, SEARCH_MAX_K, TEXTURE_SIZE_RANGE
from .protocol import limits


class AtelierStyleImage(bpy.types.PropertyGroup):
    """One style image of the Restyle list: a file on this computer, read and sent when the job starts."""

    filepath: bpy.props.StringProperty(
        name="Style image", subtype="FILE_PATH",
        description="An image whose look the restyle job transfers (PNG, JPEG, ...; read when the job starts)")


class AtelierSceneSettings(bpy.types.PropertyGroup):
    # -- Stylize selected (Text2Mesh) --
    stylize_prompt: bpy.props.StringProperty(
        name="Prompt", default="", maxlen=limits.MAX_PROMPT_CHARS,
        description="What the selected object should look like, e.g. 'a wooden chair' or 'an iron man'")
    stylize_quality: bpy.props.EnumProperty(
        name="Quality", default="standard",
        items=[("draft", "Draft", "150 steps, 3 views: a quick look"),
               ("standard", "Standard", "500 steps, 5 views"),
               ("high", "High", "1500 steps, 5 views: the paper's settings")])
    stylize_steps: bpy.props.IntProperty(
        name="Steps", default=0, min=0, max=100_000,
        description="Optimisation steps (0: the quality preset's)")
    stylize_seed: bpy.props.IntProperty(name="Seed", default=0, min=0, max=MAX_SEED,
                                        description="Seed of the style network and the views")
    stylize_subdivide: bpy.props.BoolProperty(
        name="Subdivide sparse meshes", default=False,
        description="Subdivide a mesh with few vertices first, so colour and relief have room")
    stylize_bake: bpy.props.BoolProperty(
        name="Bake texture", default=False, description="Also paint the colours into a UV texture")
    # -- Restyle selected (NNFM texture style transfer) --
    restyle_styles: bpy.props.CollectionProperty(
        type=AtelierStyleImage, name="Style images",
        description=f"1 to {MAX_STYLES} images whose look is transferred onto the selected object's texture")
    restyle_style_index: bpy.props.IntProperty(name="Active style image", default=0, min=0)
    restyle_palette: bpy.props.StringProperty(
        name="Palette", default="auto", maxlen=200,
        description="auto: the style images' main colours; none: no colour constraint; or up to 16 colours "
                    "such as #aa3311,#f0e0c0")
    restyle_quality: bpy.props.EnumProperty(
        name="Quality", default="standard",
        items=[("draft", "Draft", "150 steps of 2 views, 512 px texture: a quick look"),
               ("standard", "Standard", "400 steps of 4 views, 1024 px texture"),
               ("high", "High", "1000 steps of 8 views, 1024 px texture: the paper's settings")])
    restyle_steps: bpy.props.IntProperty(
        name="Steps", default=0, min=0, max=MAX_STEPS, description="Optimisation steps (0: the quality preset's)")
    restyle_seed: bpy.props.IntProperty(name="Seed", default=0, min=0, max=MAX_SEED,
                                        description="Seed of the random views (and of the palette's k-means)")
    restyle_pattern_scale: bpy.props.FloatProperty(
        name="Pattern scale", default=1.0, min=PATTERN_SCALE_RANGE[0], max=PATTERN_SCALE_RANGE[1],
        description="Size of the transferred patterns on the object (1: default; smaller gives finer patterns)")
    restyle_texture_size: bpy.props.IntProperty(
        name="Texture size", default=0, min=0, max=TEXTURE_SIZE_RANGE[1], subtype="PIXEL",
        description=f"Side of the texture the job paints ({TEXTURE_SIZE_RANGE[0]} px or more; 0: the quality "
                    "preset's)")
    # -- Render views --
    render_views: bpy.props.IntProperty(name="Views", default=8, min=limits.RENDER_MIN_VIEWS,
                                        max=limits.RENDER_MAX_VIEWS)
    render_size: bpy.props.IntProperty(name="Size", default=256, min=limits.RENDER_MIN_SIZE,
                                       max=limits.RENDER_MAX_SIZE, subtype="PIXEL")
    # -- Search library (shape retrieval) --
    library_folder: bpy.props.StringProperty(
        name="Library", subtype="DIR_PATH", default="",
        description="The folder of meshes to index (OBJ, GLB, PLY, ...; sub-folders are categories), on the "
                    "backend's machine")
    library_db: bpy.props.StringProperty(
        name="Database", subtype="DIR_PATH", default="",
        description="The folder the index is written to and searched in, on the backend's machine")
    library_views: bpy.props.IntProperty(
        name="Views", default=0, min=0, max=24,
        description="Rendered views per shape when indexing (0: the backend's default, 6)")
    search_text: bpy.props.StringProperty(
        name="Search", default="", maxlen=limits.MAX_PROMPT_CHARS,
        description="What to look for, e.g. 'a wooden chair' (with a sketch: optional; with a photo: leave empty)")
    search_mode: bpy.props.EnumProperty(
        name="Query", default="TEXT",
        items=[("TEXT", "Text", "Search by the text alone"),
               ("SKETCH", "Sketch", "Search by a drawing (dark strokes on white), optionally with the text"),
               ("PHOTO", "Photo", "Search by a photo of the object (no text)")])
    search_image: bpy.props.StringProperty(
        name="Image", subtype="FILE_PATH", default="",
        description="The sketch or photo file (PNG, JPEG, ...; read when the search starts)")
    search_k: bpy.props.IntProperty(name="Results", default=10, min=1, max=SEARCH_MAX_K,
                                    description="How many shapes to show, best first")
    search_category: bpy.props.StringProperty(
        name="Category", default="", description="Only shapes of this category (the library's sub-folder); empty: all")
    # -- Jobs --
    show_history: bpy.props.BoolProperty(name="History", default=True)


def register_properties() -> None:
    bpy.types.Scene.atelier = bpy.props.PointerProperty(type=AtelierSceneSettings)


def unregister_properties() -> None:
    del bpy.types.Scene.atelier
