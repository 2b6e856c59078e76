"""The house: no import cycle, no import from a lower layer into a higher one, nothing in the product's path
imports the procedural world, and no module is over 600 lines.

The import graph is read statically (ast) from every module under backend/, shared_protocol/, tools/ and
blender_addon/, with imports at module level and inside functions alike: a function-level import is still a
dependency, and hiding a cycle inside a function only moves the failure to the moment it runs. Relative imports
(the add-on's) are resolved against their package. An import of a package counts as an edge to the package's
`__init__`, and `from package import submodule` as an edge to the submodule; importing `a.b.c` is not counted
as an edge to `a` or `a.b` (Python runs their `__init__`s first, but that is not a dependency the code states,
and counting it would tie every module to its package in a loop).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("backend", "shared_protocol", "tools", "blender_addon")
MAX_LINES = 600

# The layers, lowest first, as the README's layout table orders them. A module may import its own layer and the
# layers below it, never one above.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("protocol", ("shared_protocol",)),
    ("core", ("backend", "backend.errors", "backend.devices", "backend.progress", "backend.checkpoints",
              "backend.external", "backend.images", "backend.train_loop")),
    ("geometry", ("backend.geometry",)),
    ("render", ("backend.render",)),
    ("models", ("backend.models",)),
    ("jobs", ("backend.stylize", "backend.retrieve", "backend.segment", "backend.generate", "backend.reconstruct")),
    ("server", ("backend.server",)),
    ("cli", ("backend.cli",)),
)
WORLD = "backend.world"
"""Test data built on the renderer: tests, benchmarks and training use it; the product's path never does."""
WORLD_MAY_IMPORT = ("protocol", "core", "geometry", "render")
"""The world is made of meshes and rendered images, nothing more."""
TRAINING_ON_WORLD = {
    "backend.models.domain_world": "the domain CLIP's training plan and held-out checks (build.py domain-clip)",
    "backend.models.domain_train": "the domain CLIP's trainer (build.py domain-clip)",
    "backend.generate.world_train": "the shipped generator's trainer on world shapes (build.py generator)",
    "backend.retrieve.data": "reads the world datasets `atelier train-retrieval/eval-retrieval --data` take",
    "backend.retrieve.train": "TASK-former training draws world captions for the shapes of a world dataset",
    "backend.retrieve.sketch_domain": "TASK-former training draws more sketches of a world dataset's shapes",
    "backend.retrieve.photo_crops": "the photo term draws more world photos of a world dataset's shapes",
    "backend.retrieve.train_points": "the point encoder's trainer draws world shapes and captions (issue 23)",
    "backend.retrieve.composition": "the sketch + text composition protocol's gallery of world shapes (retrieval_bench)",
    "backend.cli.world": "the `atelier world` command, a tool entry that writes a world dataset (imported lazily)",
}
"""The only backend modules outside world/ that may import it, and why. Product modules may not import the first
two either (they would bring the world along): see `test_nothing_in_the_products_path_imports_the_world`."""


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {}
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*.py")):
            if "__pycache__" not in path.parts:
                found[_module_name(path)] = path
    return found


MODULES = _modules()


def _known(name: str) -> str | None:
    """`name` or its nearest enclosing module that is one of ours (`backend.models.clip.load_clip` -> clip)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(module: str, path: Path) -> set[str]:
    """The modules of ours that `module` imports anywhere in its source."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    targets = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                targets.add(_known(alias.name))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                targets.add(submodule if submodule in MODULES else _known(source))
    targets.discard(None)
    targets.discard(module)
    return targets


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


ENTRY = len(LAYERS) - 1
"""`python -m package` modules (`backend.server.__main__` runs `atelier serve`) start a process: nothing imports
them, so they stand with the command at the top, whatever package holds them."""


def _layer(module: str) -> int | None:
    if module.endswith(".__main__"):
        return ENTRY
    best, rank = -1, None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), index
    # `backend` alone names only the package's __init__; its subpackages have layers of their own.
    if rank == 1 and module.startswith("backend.") and module not in LAYERS[1][1]:
        return None
    return rank


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (the graph has hundreds of nodes)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for target in edges:
                if target not in index:
                    index[target] = low[target] = counter
                    counter += 1
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph.get(target, ())))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(sorted(component))
    return components


def _cycle_report(component: list[str]) -> str:
    members = set(component)
    edges = [f"{a} -> {b}" for a in component for b in sorted(GRAPH[a]) if b in members]
    return "; ".join(edges)


def test_the_scan_sees_the_tree():
    # A scan that found nothing would pass every check below.
    assert {"backend.cli", "backend.cli.wiring", "backend.models.clip", "backend.server.app", "shared_protocol",
            "tools.render_demo", "blender_addon"} <= set(MODULES)
    assert "backend.models.store" in GRAPH["backend.models.clip"]
    assert "backend.cli.models" in GRAPH["backend.cli.serve"]  # a function-level import is an edge too


def test_the_graph_resolves_relative_imports_and_submodules():
    relative = [m for m in MODULES if m.startswith("blender_addon.") and GRAPH[m]]
    assert relative, "the add-on's relative imports were not resolved"
    assert {"backend.cli.serve", "backend.cli.generate"} <= GRAPH["backend.cli.wiring"]


def test_the_cycle_finder_finds_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert sorted(c for c in _strongly_connected(graph) if len(c) > 1) == [["a", "b", "c"]]


@pytest.mark.parametrize("top", SCANNED)
def test_no_import_cycle(top: str):
    cycles = [c for c in _strongly_connected(GRAPH) if len(c) > 1 and any(_in(m, top) for m in c)]
    assert not cycles, "import cycles:\n" + "\n".join(_cycle_report(c) for c in cycles)


def test_every_backend_module_has_a_layer():
    unplaced = [m for m in MODULES if _in(m, "backend") and not _in(m, WORLD) and _layer(m) is None]
    assert not unplaced, f"add these to LAYERS (and to the README's layout table): {unplaced}"


def test_no_import_from_a_lower_layer_into_a_higher_one():
    upward = []
    for module, targets in GRAPH.items():
        rank = _layer(module)
        if rank is None or _in(module, WORLD):
            continue
        for target in targets:
            target_rank = _layer(target)
            if target_rank is not None and target_rank > rank:
                upward.append(f"{module} ({LAYERS[rank][0]}) imports {target} ({LAYERS[target_rank][0]})")
    assert not upward, "\n".join(upward)


def test_nothing_imports_an_entry_point():
    wrong = [f"{m} imports {t}" for m, targets in GRAPH.items() for t in sorted(targets) if t.endswith(".__main__")]
    assert not wrong, "\n".join(wrong)


def test_the_world_is_built_on_the_renderer_only():
    allowed = {index for index, (name, _) in enumerate(LAYERS) if name in WORLD_MAY_IMPORT}
    wrong = [f"{m} imports {t}" for m, targets in GRAPH.items() if _in(m, WORLD) for t in sorted(targets)
             if not _in(t, WORLD) and _layer(t) not in allowed]
    assert not wrong, "\n".join(wrong)


def test_nothing_in_the_products_path_imports_the_world():
    training_only = {m for m in TRAINING_ON_WORLD if m.startswith("backend.models.")}
    wrong = []
    for module, targets in GRAPH.items():
        if not _in(module, "backend") or _in(module, WORLD) or module in TRAINING_ON_WORLD:
            continue
        for target in sorted(targets):
            if _in(target, WORLD) or target in training_only:
                wrong.append(f"{module} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_the_add_on_imports_no_backend():
    wrong = [f"{m} imports {t}" for m, targets in GRAPH.items() if _in(m, "blender_addon") for t in sorted(targets)
             if _in(t, "backend") or _in(t, "tools")]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("entry, forbidden", [
    ("backend.models", ("backend.world", "backend.server", "backend.models.domain_train", "backend.models.domain_world",
                        "backend.retrieve", "backend.cli")),
    ("backend.server.app", ("backend.world", "backend.models.domain_train", "backend.models.domain_world",
                            "backend.cli")),
    ("backend.cli", ("backend.world", "backend.models", "backend.server.app", "torch")),
])
def test_what_an_import_loads(entry: str, forbidden: tuple[str, ...]):
    # What Python really loads, module-level imports only: the static graph above counts function-level ones too.
    code = f"import sys, {entry}; print('\\n'.join(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    loaded = done.stdout.split()
    assert entry in loaded
    assert not [m for m in loaded if any(_in(m, f) for f in forbidden)]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_is_over_600_lines(module: str):
    lines = len(MODULES[module].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{MODULES[module].relative_to(ROOT)} has {lines} lines; split it by job"
