"""Per-scene settings of the panel's job sections (`scene.atelier`)."""


import bpy

from .kinds import MAX_SEED
from .protocol import limits


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
    # -- Render views --
    render_views: bpy.props.IntProperty(name="Views", default=8, min=limits.RENDER_MIN_VIEWS,
                                        max=limits.RENDER_MAX_VIEWS)
    render_size: bpy.props.IntProperty(name="Size", default=256, min=limits.RENDER_MIN_SIZE,
                                       max=limits.RENDER_MAX_SIZE, subtype="PIXEL")
    # -- Jobs --
    show_history: bpy.props.BoolProperty(name="History", default=True)


def register_properties() -> None:
    bpy.types.Scene.atelier = bpy.props.PointerProperty(type=AtelierSceneSettings)


def unregister_properties() -> None:
    del bpy.types.Scene.atelier
