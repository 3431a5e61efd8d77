"""Dependencies point one way: contract and settings ← cores ← stage runtime ← apps (worker, gateway, clients) ←
CLI, benchmarks, training. Every import is read from the source (function-level ones too), so a lazy import that
points upward fails here as well as a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parent.parent
# The import namespace's packages and the folders that hold them (pyproject.toml maps them the same way).
FOLDERS = {
    "moodstream": "moodstream", "moodstream.schemas": "schemas", "moodstream.processors": "processors",
    "moodstream.gateway": "gateway", "moodstream.producers": "producers", "moodstream.models": "models",
}  # fmt: skip

# The folders are the layers. A module's layer is that of the longest prefix naming it (the module itself or a
# package above it); it may import its own layer and those below.
LAYERS: dict[str, int] = {
    "moodstream": 0, "moodstream.schemas": 0, "moodstream.models": 0,  # settings, logs, the contract, model paths
    "moodstream.broker.generations": 0,  # the rotation's topic naming, which the settings carry
    "moodstream.processors": 1,  # the pure cores
    "moodstream.processors.runtime": 2, "moodstream.broker": 2,  # the stage runtime, the broker side
    "moodstream.processors.stages": 3, "moodstream.gateway": 3, "moodstream.producers": 3,  # apps
    "moodstream.cli": 4, "moodstream.__main__": 4,  # the command, benchmarks
    "moodstream.models.acoustic": 4, "moodstream.models.text": 4, "moodstream.models.asr": 4,  # training scripts
}  # fmt: skip


def module_name(path: Path) -> str:
    package, folder = next((p, f) for p, f in FOLDERS.items() if path.is_relative_to(ROOT / f))
    parts = [*package.split("."), *path.relative_to(ROOT / folder).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int:
    named = [p for p in LAYERS if module == p or module.startswith(p + ".")]
    assert named, f"{module} has no layer: add it to LAYERS"
    return LAYERS[max(named, key=len)]


def imports(path: Path, known: set[str]) -> set[str]:
    """Project modules `path` imports anywhere in its body (`from a import b` counts as a.b where that is a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name in known}


def graph() -> dict[str, set[str]]:
    files = [p for folder in FOLDERS.values() for p in (ROOT / folder).rglob("*.py")]
    known = {module_name(p) for p in files}
    return {module_name(p): imports(p, known) - {module_name(p)} for p in files}


def test_no_module_imports_a_higher_layer() -> None:
    upward = [
        f"{module} (layer {layer(module)}) imports {target} (layer {layer(target)})"
        for module, targets in graph().items()
        for target in targets
        if layer(target) > layer(module) and not module.startswith(target + ".")  # a package's own __init__
    ]
    assert upward == []


def test_no_import_cycles() -> None:
    edges = graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the path, 2 done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(edges.get(module, ())):
            if module.startswith(target + "."):  # importing one's own package __init__ is not a cycle
                continue
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert cycles == []
