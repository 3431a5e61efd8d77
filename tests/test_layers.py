"""Dependencies point one way: contract and settings ← cores ← stage runtime ← apps (worker, gateway, clients) ←
CLI, benchmarks, training. Every import is read from the source (function-level ones too), so a lazy import that
points upward fails here as well as a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).parent.parent
PACKAGES = ("schemas", "models", "processors", "gateway", "producers", "moodstream")

# A module's layer is that of the longest prefix naming it (the module itself or a package above it); it may import
# its own layer and those below.
LAYERS: dict[str, int] = {
    "schemas": 0, "moodstream.settings": 0, "moodstream.logs": 0, "models": 0, "models.metrics": 0,
    "processors.vad": 1, "processors.endpointer": 1, "processors.level": 1, "processors.transcriber": 1,
    "processors.moonshine": 1, "processors.asr_backend": 1,
    "processors.text_sentiment": 1, "processors.acoustic": 1, "processors.fusion": 1, "processors.onnx": 1,
    "processors.voice_head": 1, "processors.prosody": 1, "processors.whisper_decoder": 1,
    "processors.runtime": 2, "processors.faust_overrides": 2, "processors.checkpoints": 2, "processors.slot_peek": 2,
    "processors.audio_session": 2, "processors.fusion_join": 2, "processors.dialogue": 2, "processors.text_reader": 2,
    "processors": 3, "gateway": 3, "producers": 3, "moodstream.broker": 3, "moodstream.analytics": 3,
    "moodstream.tail": 3, "moodstream.processes": 3, "moodstream.rotation": 3,
    "moodstream": 4, "models.acoustic": 4, "models.text": 4, "models.asr": 4,  # CLI, benchmarks, model scripts
}  # fmt: skip


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
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
    files = [p for package in PACKAGES for p in (ROOT / package).rglob("*.py")]
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
