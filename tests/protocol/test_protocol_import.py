"""shared_protocol is standard-library only: the Blender add-on imports it without numpy or torch."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import json, sys
import shared_protocol
from shared_protocol import Array, MeshPayload, Submit, from_frames, to_frames
payload = MeshPayload(Array.from_list([[0, 0, 0], [1, 0, 0], [0, 1, 0]], "float32"), Array.from_list([[0, 1, 2]], "int32"))
assert from_frames(to_frames(Submit(job="j", kind="render", mesh=payload))).mesh == payload
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def test_import_loads_no_numpy_torch_or_bpy():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=True)
    loaded = set(json.loads(out.stdout))
    assert "shared_protocol" in loaded
    assert not loaded & {"numpy", "torch", "bpy", "zmq", "PIL", "backend"}, loaded & {"numpy", "torch", "bpy"}


def test_sources_import_only_the_standard_library():
    import ast
    from pathlib import Path

    import shared_protocol

    allowed = set(sys.stdlib_module_names) | {"shared_protocol"}
    for path in Path(shared_protocol.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.name} imports {name}"
