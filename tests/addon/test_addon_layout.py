"""The add-on's layout: subpackages in layers (ui -> operators -> engine -> core), imports only downward, no
import cycle between its modules (function-level imports count), no module over 600 lines. Reads the source
with `ast`; imports nothing of the add-on."""

from __future__ import annotations

import ast
from pathlib import Path

from addon_helpers import ROOT

ADDON = ROOT / "blender_addon"
LAYERS = ("ui", "operators", "engine", "core")
"""Top first: a module may import its own layer and the layers after it, never one before it."""
MAX_LINES = 600


def module_name(path: Path) -> str:
    parts = path.relative_to(ADDON).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def addon_imports(path: Path) -> set[str]:
    """The add-on modules `path` imports anywhere in its body (relative imports, resolved to module names)."""
    name = module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    if name == "":
        package = []
    known = {module_name(p) for p in ADDON.rglob("*.py")}
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ImportFrom) or node.level == 0:
            continue
        base = package[:len(package) - (node.level - 1)] if node.level > 1 else list(package)
        target = base + (node.module.split(".") if node.module else [])
        for alias in node.names:
            full = ".".join(target + [alias.name])
            out.add(full if full in known else ".".join(target))
    return out - {name}


def graph() -> dict[str, set[str]]:
    paths = sorted(ADDON.rglob("*.py"))
    assert len(paths) > 25, "the add-on's modules were not found"
    return {module_name(p): addon_imports(p) for p in paths}


def layer(name: str) -> int | None:
    top = name.split(".")[0]
    return LAYERS.index(top) if top in LAYERS else None


def test_the_import_graph_sees_function_level_imports():
    imports = graph()
    assert "engine.session" in imports["operators.importers"]  # imported inside import_search()
    assert {"core.errors", "engine.settings"} <= imports["ui.setup_ui"]


def test_no_import_cycle_between_add_on_modules():
    imports = graph()
    cycles = []

    def visit(node: str, stack: list[str], done: set[str]) -> None:
        for nxt in sorted(imports.get(node, ())):
            if nxt in stack:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in done:
                visit(nxt, stack + [nxt], done)
        done.add(node)

    done: set[str] = set()
    for start in sorted(imports):
        if start not in done:
            visit(start, [start], done)
    # A package's __init__ imported by its own modules is Python's doing, not a cycle of ours; ours have none.
    assert cycles == [], " ; ".join(" -> ".join(c) for c in cycles)


def test_layers_import_only_downward():
    upward = []
    for name, targets in graph().items():
        own = layer(name)
        if own is None:  # the top-level __init__ assembles every layer
            continue
        upward += [f"{name} -> {t}" for t in sorted(targets) if layer(t) is not None and layer(t) < own]
    assert upward == []


def test_every_module_sits_in_a_layer_and_none_is_over_600_lines():
    stray = [p.name for p in ADDON.glob("*.py") if p.name != "__init__.py"]
    assert stray == [], "put add-on modules in ui/, operators/, engine/ or core/"
    long = {module_name(p): n for p in ADDON.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}
