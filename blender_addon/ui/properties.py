"""Per-scene settings of the panel's job sections (`scene.atelier`)."""


import bpy

from ..core.assetlib import BLEND_IMPORT_MODES
from ..core.kinds import (INDEX_MAX_WORKERS, GENERATE_MAX_REFINE, GENERATE_MAX_SAMPLES, GENERATE_RESOLUTION_RANGE,
                          GENERATE_TEMPERATURE_RANGE, GENERATE_THRESHOLD_RANGE, MAX_SEED, MAX_STEPS, MAX_STYLES,
                          PATTERN_SCALE_RANGE, QUALITIES, SEARCH_MAX_K, SEGMENT_MAX_POINTS, TEXTURE_SIZE_RANGE)
from ..core.protocol import limits


class AtelierStyleImage(bpy.types.PropertyGroup):
    """One style image of the Restyle list: a file on this computer, read and sent when the job starts."""

    filepath: bpy.props.StringProperty(
        name="Style image", subtype="FILE_PATH",
        description="An image whose look the restyle job transfers (PNG, JPEG, ...; read when the job starts)")


class AtelierChosenLibrary(bpy.types.PropertyGroup):
    """An asset library (Preferences > File Paths) ticked for indexing in the Search Library panel, by its folder."""

    path: bpy.props.StringProperty(name="Folder", description="The library's folder (`assetlib.library_key`)")


class AtelierSegmentPoint(bpy.types.PropertyGroup):
    """One point prompt of the Segment Photo panel, in the Image Editor's normalised image coordinates."""

    u: bpy.props.FloatProperty(name="U", min=0.0, max=1.0, description="Across the photo, 0 at the left edge")
    v: bpy.props.FloatProperty(name="V", min=0.0, max=1.0, description="Up the photo, 0 at the bottom edge")
    positive: bpy.props.BoolProperty(name="On the object", default=True,
                                     description="On the object (include) or off it (exclude)")


def _is_grease_pencil(_settings, obj) -> bool:
    return obj.type in ("GREASEPENCIL", "GPENCIL")


# The field groups the job sections share.

def _text_field(description: str, name: str = "Prompt"):
    """A prompt-like text, as long as the protocol takes."""
    return bpy.props.StringProperty(name=name, default="", maxlen=limits.MAX_PROMPT_CHARS, description=description)


def _quality_field(draft: str, standard: str, high: str, default: str = "standard", name: str = "Quality"):
    """A menu of the quality presets (`kinds.QUALITIES`), each with what it means for this job."""
    return bpy.props.EnumProperty(name=name, default=default,
                                  items=[(q, q.title(), text) for q, text in zip(QUALITIES, (draft, standard, high))])


def _steps_field(description: str, name: str = "Steps"):
    """Optimisation steps, 0 meaning the quality preset's."""
    return bpy.props.IntProperty(name=name, default=0, min=0, max=MAX_STEPS, description=description)


def _seed_field(description: str):
    return bpy.props.IntProperty(name="Seed", default=0, min=0, max=MAX_SEED, description=description)


class AtelierSceneSettings(bpy.types.PropertyGroup):
    # -- Stylize selected (Text2Mesh) --
    stylize_prompt: _text_field("What the selected object should look like, e.g. 'a wooden chair' or 'an iron man'")
    stylize_quality: _quality_field("150 steps, 3 views: a quick look", "500 steps, 5 views",
                                    "1500 steps, 5 views: the paper's settings")
    stylize_steps: _steps_field("Optimisation steps (0: the quality preset's)")
    stylize_seed: _seed_field("Seed of the style network and the views")
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
    restyle_quality: _quality_field("150 steps of 2 views, 512 px texture: a quick look",
                                    "400 steps of 4 views, 1024 px texture",
                                    "1000 steps of 8 views, 1024 px texture: the paper's settings")
    restyle_steps: _steps_field("Optimisation steps (0: the quality preset's)")
    restyle_seed: _seed_field("Seed of the random views (and of the palette's k-means)")
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
    library_descriptor: bpy.props.EnumProperty(
        name="Describe by", default="views",
        items=[("views", "Views", "Rendered views and line drawings, 12 vectors a shape: every query kind at its best"),
               ("points", "Points", "One point-cloud vector a shape: faster indexing, 1/12 of the memory"),
               ("both", "Both", "Views and points, their scores fused")],
        description="What describes each shape in a new index (an existing index keeps its own)")
    search_text: _text_field("What to look for, e.g. 'a wooden chair' (with a sketch: optional; with a photo: leave "
                             "empty)", name="Search")
    search_mode: bpy.props.EnumProperty(
        name="Query", default="TEXT",
        items=[("TEXT", "Text", "Search by the text alone"),
               ("SKETCH", "Sketch", "Search by a drawing (dark strokes on white), optionally with the text"),
               ("PHOTO", "Photo", "Search by a photo of the object (no text)")])
    search_image: bpy.props.StringProperty(
        name="Image", subtype="FILE_PATH", default="",
        description="The sketch or photo file (PNG, JPEG, ...; read when the search starts)")
    search_photo_source: bpy.props.EnumProperty(
        name="Photo from", default="FILE",
        items=[("FILE", "File", "A photo on disk"),
               ("IMAGE", "Image", "An image open in Blender (empty: the one the Image Editor shows)")])
    search_photo_image: bpy.props.PointerProperty(
        type=bpy.types.Image, name="Image",
        description="The photo to search by (empty: the image the Image Editor shows)")
    search_photo_prompt: _text_field("What to cut out of the photo before the search, e.g. 'the red chair' "
                                     "(empty: the object that stands out from the background)", name="Object")
    search_raw_photo: bpy.props.BoolProperty(
        name="Whole Photo", default=False,
        description="Search with the whole photo, background included, instead of its cut-out object")
    sketch_source: bpy.props.EnumProperty(
        name="Sketch from", default="IMAGE",
        items=[("IMAGE", "Image", "A drawing on disk (dark strokes on white)"),
               ("ANNOTATION", "Annotations", "The scene's annotation strokes (Annotate tool), as the 3D view sees "
                                             "them"),
               ("GREASE_PENCIL", "Grease Pencil", "A Grease Pencil object's strokes, as the 3D view sees them")])
    sketch_object: bpy.props.PointerProperty(
        type=bpy.types.Object, name="Grease Pencil", poll=_is_grease_pencil,
        description="The Grease Pencil object whose strokes are the sketch (empty: the active object)")
    search_k: bpy.props.IntProperty(name="Results", default=10, min=1, max=SEARCH_MAX_K,
                                    description="How many shapes to show, best first")
    search_category: bpy.props.StringProperty(
        name="Category", default="", description="Only shapes of this category (the library's sub-folder); empty: all")
    asset_libraries_chosen: bpy.props.CollectionProperty(
        type=AtelierChosenLibrary, name="Libraries to index",
        description="The asset libraries ticked in the Search Library panel (Index Selected Libraries indexes them)")
    asset_blend_objects: bpy.props.EnumProperty(
        name="Index", default="assets",
        items=[("assets", "Assets", "Objects and collections marked as assets in each .blend"),
               ("all", "All meshes", "Every mesh object of each .blend, marked or not")])
    asset_workers: bpy.props.IntProperty(
        name="Workers", default=0, min=0, max=INDEX_MAX_WORKERS,
        description="Blender processes reading .blend files in parallel (0: the backend's choice)")
    search_library: bpy.props.StringProperty(
        name="Search in", default="",
        description="The asset library (its folder) whose index the search reads; empty: the Database folder")
    search_catalog: bpy.props.StringProperty(
        name="Catalog", default="", description="Only assets in this catalog or below it, e.g. Furniture/Chairs")
    search_tag: bpy.props.StringProperty(name="Tag", default="", description="Only assets with this tag")
    blend_import_mode: bpy.props.EnumProperty(
        name="Import .blend assets", default=BLEND_IMPORT_MODES[0],
        items=[("AUTO", "Auto", "Link collections (an instance), append objects (a local copy)"),
               ("APPEND", "Append", "A local copy with its own materials, modifiers and rig"),
               ("LINK", "Link", "Linked from the library file: a collection instance, or a library override of "
                                "an object")])
    # -- Segment photo --
    segment_source: bpy.props.EnumProperty(
        name="Photo", default="FILE",
        items=[("FILE", "File", "A photo on disk"),
               ("IMAGE", "Image", "An image open in Blender (e.g. in the Image Editor)")])
    segment_photo: bpy.props.StringProperty(
        name="Photo", subtype="FILE_PATH", default="",
        description="The photo to cut the object out of (PNG, JPEG, ...; read when the job starts)")
    segment_image: bpy.props.PointerProperty(
        type=bpy.types.Image, name="Image", description="The image to cut the object out of")
    segment_prompt: _text_field("What to cut out of the photo, e.g. 'the red chair'")
    segment_proposer: bpy.props.EnumProperty(
        name="Masks", default="auto",
        items=[("auto", "Auto", "SAM when the backend has its weights, else superpixels"),
               ("sam", "SAM", "Segment Anything's masks (needs its weights on the backend)"),
               ("superpixels", "Superpixels", "Colour groups: no weights needed, rougher edges")])
    segment_points: bpy.props.CollectionProperty(
        type=AtelierSegmentPoint, name="Points",
        description=f"Up to {SEGMENT_MAX_POINTS} points on (or off) the object, placed with the Image Editor's "
                    "2D cursor")
    segment_use_box: bpy.props.BoolProperty(
        name="Box", default=False, description="Limit the object to a box (two corners set from the 2D cursor)")
    segment_box: bpy.props.FloatVectorProperty(
        name="Box corners", size=4, min=0.0, max=1.0, default=(0.0, 0.0, 1.0, 1.0),
        description="Two opposite corners (u, v, u, v) in the photo's normalised coordinates, v up")
    segment_cutout: bpy.props.PointerProperty(
        type=bpy.types.Image, name="Cut-out",
        description="The cut-out (RGBA) to search the library with or to use as a style image")
    photo3d_method: bpy.props.EnumProperty(
        name="Method", default="retrieve",
        items=[("retrieve", "Retrieve", "The Search Library's closest shape, restyled after the photo"),
               ("reconstruct", "Reconstruct", "3D Gaussians fitted to the photo, then a mesh with a baked texture"),
               ("auto", "Auto", "Reconstruct, starting from the Search Library's closest shape")])
    photo3d_quality: _quality_field("A quick restyle", "", "", default="draft")
    photo3d_steps: _steps_field("Restyle steps (0: the quality preset's)")
    photo3d_init: bpy.props.EnumProperty(
        name="Init", default="sphere",
        items=[("sphere", "Sphere", "Start from a ball of Gaussians: no library needed"),
               ("retrieve", "Retrieve", "Start from the Search Library's closest shape (needs its database)"),
               ("generate", "Generate", "Start from the backend's generator's shape for the prompt"),
               ("best", "Best", "Whichever of the library's match and the generated shape fits the photo best "
                                "(needs the database)")])
    photo3d_recon_steps: bpy.props.IntProperty(
        name="Steps", default=0, min=0, max=MAX_STEPS,
        description="Gaussian fitting steps (0: the backend's 300)")
    photo3d_texture_steps: bpy.props.IntProperty(
        name="Texture steps", default=-1, min=-1, max=MAX_STEPS,
        description="Steps refining the mesh's baked texture (-1: the backend's 60; 0: bake only)")
    photo3d_guidance: bpy.props.EnumProperty(
        name="Guidance", default="clip",
        items=[("clip", "CLIP", "Unseen sides guided by CLIP and the prompt"),
               ("zero123", "Zero123", "Unseen sides guided by Zero123 (its weights on the backend's machine)")])
    photo3d_zero123: bpy.props.StringProperty(
        name="Zero123 folder", subtype="DIR_PATH", default="",
        description="The Zero123 weights folder on the backend's machine (empty: the backend's cache)")
    photo3d_clip_fallback: bpy.props.BoolProperty(
        name="Allow CLIP fallback", default=False,
        description="Without Zero123's weights, guide by CLIP instead of failing")
    # -- Generate (text or picture to shape: CLIP-Forge, ISS refinement, Text2Mesh style) --
    generate_from: bpy.props.EnumProperty(
        name="From", default="TEXT",
        items=[("TEXT", "Text", "Shapes from the prompt"),
               ("PICTURE", "Picture", "Shapes like a picture of one (its CLIP image embedding; refinement aims at it "
                                      "too); the prompt is optional")])
    generate_picture_source: bpy.props.EnumProperty(
        name="Picture", default="FILE",
        items=[("FILE", "File", "A picture on disk"),
               ("IMAGE", "Image", "An image open in Blender (e.g. in the Image Editor)")])
    generate_picture: bpy.props.StringProperty(
        name="Picture", subtype="FILE_PATH", default="",
        description="A picture of the shape to make (PNG, JPEG, ...; read when the job starts)")
    generate_image: bpy.props.PointerProperty(
        type=bpy.types.Image, name="Image", description="The picture of the shape to make")
    generate_prompt: _text_field(
        "The shape to make, e.g. 'a chair' (with Style it: 'a chair made of oak'); the generator's CLIP reads it (the "
        "domain CLIP knows prompts such as 'a photo of a chair'). From a picture: optional")
    generate_samples: bpy.props.IntProperty(
        name="Samples", default=2, min=1, max=GENERATE_MAX_SAMPLES,
        description="Shapes to draw for the prompt, placed side by side at the 3D cursor to choose from")
    generate_refine: bpy.props.IntProperty(
        name="Refine", default=0, min=0, max=GENERATE_MAX_REFINE,
        description="Test-time refinement steps per shape (ISS: moves the surface so its renders match the prompt "
                    "better; 0: off)")
    generate_style: bpy.props.BoolProperty(
        name="Style it", default=False,
        description="Also stylize the shapes (Text2Mesh: vertex colours and relief) in the same job")
    generate_style_text: _text_field(
        "What the shapes should look like, e.g. 'made of oak' (empty: split the prompt: 'a chair made of oak' makes "
        "the shape 'a chair' and styles it with the whole prompt)", name="Style")
    generate_style_quality: _quality_field("150 steps, 3 views: a quick look", "500 steps, 5 views",
                                           "1500 steps, 5 views", default="draft", name="Style quality")
    generate_style_steps: _steps_field("Stylization steps per shape (0: the style quality preset's)",
                                       name="Style steps")
    generate_show_advanced: bpy.props.BoolProperty(name="Advanced", default=False)
    generate_resolution: bpy.props.IntProperty(
        name="Resolution", default=64, min=GENERATE_RESOLUTION_RANGE[0], max=GENERATE_RESOLUTION_RANGE[1],
        description="Grid cells per axis the surface is extracted on (decoded coarse to fine; higher: finer detail, "
                    "slower)")
    generate_threshold: bpy.props.FloatProperty(
        name="Threshold", default=0.5, min=GENERATE_THRESHOLD_RANGE[0], max=GENERATE_THRESHOLD_RANGE[1],
        description="Occupancy probability of the surface (lower it when shapes come out empty or thin)")
    generate_temperature: bpy.props.FloatProperty(
        name="Temperature", default=0.5, min=GENERATE_TEMPERATURE_RANGE[0], max=GENERATE_TEMPERATURE_RANGE[1],
        description="Sampling temperature (below 1: typical shapes; above: more variety)")
    generate_seed: _seed_field("Seed of the shapes' draws (and of refinement and style)")
    # -- Jobs --
    show_history: bpy.props.BoolProperty(name="History", default=True)


def register_properties() -> None:
    bpy.types.Scene.atelier = bpy.props.PointerProperty(type=AtelierSceneSettings)


def unregister_properties() -> None:
    del bpy.types.Scene.atelier
