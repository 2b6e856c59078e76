"""Where the add-on gets the wire protocol (`shared_protocol`, standard library only) from. No bpy.

1. A built extension carries its own copy, `<package>/shared_protocol/`, with its imports made relative by
   `python build.py extension`: it never depends on what else is on Blender's `sys.path`.
2. Otherwise (a checkout) the top-level `shared_protocol` package when it is importable: the tests put the
   repository root on `sys.path`.
3. Otherwise the checkout's `shared_protocol/` next to the add-on's folder (a developer who links `blender_addon/`
   into Blender's extensions folder), loaded under its own name without touching `sys.path`.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

_ADDON = __package__.rpartition(".")[0] if __package__ else ""
"""The add-on's top package (this module lives in its `core` subpackage)."""
_VENDORED = f"{_ADDON}.shared_protocol" if _ADDON else None


def _from_checkout():
    folder = Path(__file__).resolve().parents[2] / "shared_protocol"  # <checkout>/blender_addon/core/
    if not (folder / "__init__.py").is_file():
        raise ImportError(
            "the Atelier add-on cannot find its protocol package: install the extension zip that "
            "`python build.py extension` writes, or run it from an Atelier checkout")
    spec = importlib.util.spec_from_file_location("shared_protocol", folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["shared_protocol"] = module  # its modules import `shared_protocol.x` absolutely
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["shared_protocol"]
        raise
    return module


if _VENDORED and importlib.util.find_spec(_VENDORED) is not None:
    shared_protocol = importlib.import_module(_VENDORED)
    SOURCE = "vendored"
elif importlib.util.find_spec("shared_protocol") is not None:
    shared_protocol = importlib.import_module("shared_protocol")
    SOURCE = "repository"
else:
    shared_protocol = _from_checkout()
    SOURCE = "checkout"
"""Which of the three it is: "vendored", "repository" or "checkout"."""

sp = shared_protocol
Accepted = sp.Accepted
Array = sp.Array
Cancel = sp.Cancel
Error = sp.Error
Hello = sp.Hello
MeshPayload = sp.MeshPayload
PROTOCOL_VERSION = sp.PROTOCOL_VERSION
Progress = sp.Progress
ProtocolError = sp.ProtocolError
Release = sp.Release
Result = sp.Result
Shutdown = sp.Shutdown
Status = sp.Status
Submit = sp.Submit
Welcome = sp.Welcome
from_frames = sp.from_frames
is_job_id = sp.is_job_id
to_frames = sp.to_frames
limits = importlib.import_module(f"{sp.__name__}.limits")
requests = importlib.import_module(f"{sp.__name__}.requests")
"""One request dataclass per job kind: the params' defaults, bounds and checks the backend applies too."""
ParamError = importlib.import_module(f"{sp.__name__}.errors").ParamError

__all__ = [
    "Accepted", "Array", "Cancel", "Error", "Hello", "MeshPayload", "PROTOCOL_VERSION", "Progress",
    "ParamError", "ProtocolError", "Release", "Result", "SOURCE", "Shutdown", "Status", "Submit", "Welcome", "from_frames",
    "is_job_id", "limits", "requests", "shared_protocol", "to_frames",
]
