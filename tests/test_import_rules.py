"""The package's imports flow one way, and no modules import each other in a loop.

Every `import` / `from ... import` of a streamseg module is read with `ast`, including those
inside functions (a lazy import is still a dependency). Two rules:
1. No cycle: the module graph has no strongly connected component of more than one module.
2. Layers: a module of a lower layer never imports a higher one. From the top:
   faces (cli, commands, app) -> jobs (batch, bench, search) -> pipeline (video) ->
   model; train -> model; eval reads files and stores (video.store) only;
   synthetic (the shapes world) is data generation, below all but errors.
docs/ARCHITECTURE.md states the same rules.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "streamseg"

# module prefix -> prefixes it must never import (the layer rules above)
FORBIDDEN = {
    "streamseg.model": (
        "streamseg.catalog",
        "streamseg.video", "streamseg.commands", "streamseg.app", "streamseg.batch",
        "streamseg.bench", "streamseg.train", "streamseg.synthetic", "streamseg.eval",
        "streamseg.cli",
    ),
    "streamseg.video": (
        "streamseg.catalog",
        "streamseg.commands", "streamseg.app", "streamseg.batch", "streamseg.bench",
        "streamseg.train", "streamseg.synthetic", "streamseg.eval", "streamseg.cli",
    ),
    "streamseg.train": (
        "streamseg.catalog",
        "streamseg.video", "streamseg.commands", "streamseg.app", "streamseg.batch",
        "streamseg.bench", "streamseg.cli",
    ),
    "streamseg.eval": (
        "streamseg.catalog",
        "streamseg.commands", "streamseg.app", "streamseg.batch", "streamseg.bench",
        "streamseg.train", "streamseg.synthetic", "streamseg.cli",
    ),
    "streamseg.synthetic": (
        "streamseg.catalog",
        "streamseg.video", "streamseg.model", "streamseg.commands", "streamseg.app",
        "streamseg.batch", "streamseg.bench", "streamseg.train", "streamseg.eval",
        "streamseg.cli",
    ),
    "streamseg.batch": ("streamseg.commands", "streamseg.app", "streamseg.cli"),
    "streamseg.bench": ("streamseg.commands", "streamseg.app", "streamseg.cli"),
    "streamseg.catalog": (
        "streamseg.commands", "streamseg.app", "streamseg.cli", "streamseg.batch",
        "streamseg.bench",
    ),
    "streamseg.app": ("streamseg.commands", "streamseg.cli"),
    "streamseg.config": ("streamseg.",),
    "streamseg.errors": ("streamseg.",),
    "streamseg.dataclass_toml": ("streamseg.",),
    "streamseg.panoptic_png": ("streamseg.",),
    "streamseg.outputs": ("streamseg.video", "streamseg.model", "streamseg.commands"),
}  # fmt: skip
ALLOWED_BELOW = {  # narrow exceptions to FORBIDDEN, each with its reason
    # the ground floor (config, the TOML loader, the PNG codec) imports only errors
    ("streamseg.dataclass_toml", "streamseg.errors"),
    ("streamseg.panoptic_png", "streamseg.errors"),
    # eval scores label stores: it reads them through the store's reader.
    ("streamseg.eval", "streamseg.video.store"),
    ("streamseg.eval", "streamseg.video.rle"),
    # config and errors are the ground floor: everything may import them.
    ("streamseg.config", "streamseg.errors"),
    ("streamseg.config", "streamseg.dataclass_toml"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every streamseg module that `path` imports, anywhere in the file."""
    name = module_name(path)
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("streamseg"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = name.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("streamseg"):
                continue
            found.add(target)
            # `from streamseg.model import checkpoint` imports the module streamseg.model.checkpoint
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                if candidate in MODULES:
                    found.add(candidate)
    found.discard(name)
    return {m for m in found if m in MODULES}


MODULES = {module_name(p) for p in PACKAGE.rglob("*.py")}
GRAPH = {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _package_faces(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """A package's __init__ that only hands names on is not a dependency of its own modules:
    `streamseg.batch.run` importing `streamseg.batch.layout` runs `streamseg/batch/__init__.py`
    too, but that face imports them, not the other way round. Arrows from a package's own
    modules to its face are dropped; everything else is kept."""
    faces = {m for m in graph if (PACKAGE.parent / m.replace(".", "/") / "__init__.py").exists()}
    return {
        m: {t for t in targets if not (t in faces and m.startswith(t + "."))}
        for m, targets in graph.items()
    }


def test_the_graph_is_read() -> None:
    # the reader sees real arrows: a check that cannot fail is no check
    assert "streamseg.model.segmenter" in GRAPH["streamseg.model.load"]
    assert "streamseg.video.pipeline" in GRAPH["streamseg.commands.run"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles() -> None:
    assert _cycles(_package_faces(GRAPH)) == []


def test_imports_flow_one_way() -> None:
    wrong = []
    for module, targets in sorted(GRAPH.items()):
        for prefix, banned in FORBIDDEN.items():
            if module != prefix and not module.startswith(prefix + "."):
                continue
            for target in sorted(targets):
                if any(target == b or target.startswith(b) for b in banned) and not any(
                    (module == a or module.startswith(a + ".")) and target == b
                    for a, b in ALLOWED_BELOW
                ):
                    wrong.append(f"{module} -> {target}")
    assert wrong == []
