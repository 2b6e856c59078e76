"""Run in a fresh process with BLENDER_USER_RESOURCES set: installs an extension zip, enables it and imports
zmq from the extension's own wheels. Prints one JSON line. Usage: python install_extension.py ZIP"""

import importlib.abc
import importlib.machinery
import json
import os
import sys
from pathlib import Path

user = Path(os.environ["BLENDER_USER_RESOURCES"])
site = user / "extensions" / ".local" / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"


class ZmqFromExtensionOnly(importlib.abc.MetaPathFinder):
    """`import zmq` must come from the wheels Blender unpacked, not from this environment's pyzmq."""

    def find_spec(self, name, path=None, target=None):
        if name != "zmq":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, [str(site)])
        if spec is None:
            raise ImportError(f"zmq is not in the extension's site-packages {site}")
        return spec


sys.meta_path.insert(0, ZmqFromExtensionOnly())
for blocked in ("torch", "backend"):
    sys.modules[blocked] = None  # importing them fails, as in Blender

import bpy  # noqa: E402
import addon_utils  # noqa: E402  (on sys.path once bpy is imported)

zip_path = sys.argv[1]
result = bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
module = "bl_ext.user_default.atelier"
loaded, enabled = addon_utils.check(module)
import zmq  # noqa: E402

mod = sys.modules.get(module)
protocol = sys.modules.get(module + ".core.protocol")
print(json.dumps({
    "result": sorted(result), "loaded": loaded, "enabled": enabled, "zmq": zmq.__file__, "zmq_version": zmq.zmq_version(),
    "site": str(site), "panel": hasattr(bpy.types, "ATELIER_PT_backend"),
    "protocol_source": getattr(protocol, "SOURCE", None), "addon_file": getattr(mod, "__file__", None),
    "prefs": module in bpy.context.preferences.addons,
}))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from bpy_exit import exit_blender_module  # noqa: E402  bpy < 5.0 crashes or hangs in its own teardown at exit

exit_blender_module(0)
