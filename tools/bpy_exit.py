"""Ending a script that runs in the bpy module (the demo, test scripts) without the module's own teardown crashing.

bpy 4.2.x segfaults at interpreter exit once a PropertyGroup with a Python method has been registered, even after it
is unregistered, and 4.5.x hangs there while such a class stays registered (a three-line script shows both: the
module's teardown is at fault, not the add-on's logic; real Blender exits its own way). So for bpy < 5.0 the process
ends here, after every stream is flushed, without that teardown. Standard library + bpy only.
"""

from __future__ import annotations

import logging
import os
import sys

FAULTY_EXIT_BELOW = (5, 0, 0)
"""bpy versions below this crash or hang in their own teardown at interpreter exit."""


def exit_blender_module(code: int) -> None:
    """Exits with `code`: sys.exit on bpy >= 5.0, else os._exit after flushing stdout, stderr and logging."""
    import bpy

    if tuple(bpy.app.version) >= FAULTY_EXIT_BELOW:
        sys.exit(code)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
