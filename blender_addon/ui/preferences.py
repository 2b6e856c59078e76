"""Add-on preferences: where the backend runs and how to reach it. `engine/settings.py` reads them."""

import os
from pathlib import Path

import bpy

from ..engine import session
from ..engine.runtime import BackendSettings
from ..engine.settings import ADDON_ID, backend_settings
from . import setup_ui


class AtelierPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    mode: bpy.props.EnumProperty(
        name="Backend", default="LOCAL",
        items=[("LOCAL", "Local", "Start the backend on this computer, from the Python below"),
               ("REMOTE", "Remote", "Connect to a backend on another machine (a GPU box), encrypted with CurveZMQ")])
    python: bpy.props.StringProperty(
        name="Backend Python", subtype="FILE_PATH",
        description="The python executable of the environment where the Atelier backend is installed "
                    "(empty: $ATELIER_BACKEND_PYTHON)")
    device: bpy.props.EnumProperty(
        name="Device", default="auto",
        items=[("auto", "Auto", "CUDA if present, else Apple MPS, else CPU"), ("cuda", "CUDA", "NVIDIA GPU"),
               ("mps", "MPS", "Apple GPU"), ("cpu", "CPU", "No GPU (slow, but works everywhere)")])
    auto_start: bpy.props.BoolProperty(
        name="Start with Blender", default=False,
        description="Start the local backend when Blender starts, so the first job does not wait for it "
                    "(a job always starts it when it is not running)")
    remote_address: bpy.props.StringProperty(
        name="Address", default="", description="The remote backend, e.g. tcp://gpu-box:5557")
    curve_dir: bpy.props.StringProperty(
        name="Key folder", subtype="DIR_PATH",
        description="Folder with client.key_secret and server.key from `atelier keys DIR` on the backend machine")
    clip: bpy.props.StringProperty(
        name="CLIP model", default="",
        description="CLIP the stylize job uses, e.g. ViT-B-32:openai, domain, or a checkpoint path on the backend "
                    "machine (empty: the backend's default)")
    restyle_clip: bpy.props.StringProperty(
        name="Restyle CLIP model", default="",
        description="CLIP the restyle job takes its features from, e.g. RN50:openai, ViT-B-32:openai, or a "
                    "checkpoint path on the backend machine (empty: the backend's default, RN50:openai)")
    generator_checkpoint: bpy.props.StringProperty(
        name="Generator checkpoint", subtype="FILE_PATH", default="",
        description="The generate job's shape generator, on the backend machine: a file `atelier train-generator "
                    "--library DIR --out FILE` wrote (it records the CLIP it was trained with). Empty: the "
                    "backend's shipped generator, trained on the procedural world")
    index_blender: bpy.props.StringProperty(
        name="Blender for indexing", subtype="FILE_PATH", default="",
        description="The Blender a local backend reads .blend, FBX and USD libraries with: an executable, or a Python "
                    "with the bpy module (empty: this Blender)")
    team_library: bpy.props.StringProperty(
        name="Team library",
        description="A shared shape library every artist can search: a Milvus server (http://host:19530; the backend "
                    "reads its token from $ATELIER_MILVUS_TOKEN) or a Milvus Lite file (.db) on the backend's machine "
                    "(empty: none)")
    library_index_dir: bpy.props.StringProperty(
        name="Asset library indexes", subtype="DIR_PATH",
        description="Where the Search Library panel keeps one index per asset library registered in File Paths "
                    "(empty: the add-on's user folder); a remote backend must see the same path")
    log_dir: bpy.props.StringProperty(
        name="Log folder", subtype="DIR_PATH",
        description="Where the local backend writes its log (empty: the add-on's user folder)")
    start_timeout: bpy.props.FloatProperty(
        name="Start timeout", default=120.0, min=5.0, max=3600.0, unit="TIME_ABSOLUTE",
        description="Seconds a local backend may take to start (torch takes a while the first time)")
    connect_timeout: bpy.props.FloatProperty(
        name="Connect timeout", default=10.0, min=0.2, max=600.0, unit="TIME_ABSOLUTE",
        description="Seconds to wait for the backend's answer to the handshake")

    # Install Backend (setup_ui.py draws these and runs installer.py)
    install_base_python: bpy.props.StringProperty(
        name="Base Python", subtype="FILE_PATH",
        description="The Python that creates the backend's environment (3.11 or newer; empty: Blender's own Python)")
    install_dir: bpy.props.StringProperty(
        name="Install folder", subtype="DIR_PATH",
        description="Where the backend's environment (venv/) and the install logs go (empty: the add-on's user folder)")
    install_source: bpy.props.StringProperty(
        name="Backend source", subtype="FILE_PATH",
        description="The Atelier checkout folder (with pyproject.toml) or an atelier wheel (.whl) or sdist (.tar.gz) "
                    "(empty: the checkout this add-on runs from, if it runs from one)")
    install_torch: bpy.props.EnumProperty(
        name="PyTorch", default="AUTO",
        items=[("AUTO", "Auto", "CUDA wheels when an NVIDIA GPU is found, the macOS wheels (MPS) on Apple silicon, "
                                "else CPU wheels"),
               ("CUDA", "CUDA", "NVIDIA GPU (the wheel index follows the driver's CUDA version)"),
               ("MPS", "MPS", "Apple silicon GPU"), ("CPU", "CPU", "No GPU (smaller download)")])
    install_nvdiffrast: bpy.props.BoolProperty(
        name="Also install nvdiffrast (CUDA only, non-commercial licence)", default=False,
        description="NVIDIA's rasterizer, faster on CUDA; NVIDIA Source Code License: non-commercial use only. "
                    "Built from source: needs git and the CUDA toolkit")

    def settings(self) -> BackendSettings:
        return backend_settings(self)

    def draw(self, context):
        layout = self.layout
        layout.prop(self, "mode", expand=True)
        col = layout.column()
        if self.mode == "LOCAL":
            col.prop(self, "python")
            if not self.python and os.environ.get("ATELIER_BACKEND_PYTHON"):
                col.label(text=f"Using $ATELIER_BACKEND_PYTHON: {os.environ['ATELIER_BACKEND_PYTHON']}", icon="INFO")
            col.prop(self, "device")
            col.prop(self, "auto_start")
            col.prop(self, "start_timeout")
            col.prop(self, "log_dir")
            col.prop(self, "index_blender")
        else:
            col.prop(self, "remote_address")
            col.prop(self, "curve_dir")
        col.prop(self, "connect_timeout")
        col.prop(self, "clip")
        col.prop(self, "restyle_clip")
        col.prop(self, "generator_checkpoint")
        col.prop(self, "library_index_dir")
        col.prop(self, "team_library")
        runtime = session.get_runtime(optional=True)
        log_path = runtime.log_path if runtime is not None else str(self.settings().log_path)
        row = layout.row()
        row.label(text=f"Backend log: {log_path or 'named by the remote backend once connected'}", icon="TEXT")
        if log_path:
            row.operator("wm.path_open", text="", icon="FILE_FOLDER").filepath = str(Path(log_path).parent)
        if self.mode == "LOCAL":
            setup_ui.draw_install(self, layout)
        setup_ui.draw_weights(self, layout)
