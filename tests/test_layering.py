"""The import layering: data flows one way (models → calib → export → engines → bench/eval →
pipeline/deploy → commands → cli), no module imports a later stage, and no modules import each
other in a cycle.

Imports are read from the source (module level and inside functions alike), so a lazy import
that closes a loop counts as much as a top-level one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import trtq

PACKAGE = Path(trtq.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """The trtq modules `path` imports (`from trtq.a import b` counts trtq.a.b when that is a
    module, else trtq.a)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("trtq")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("trtq"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if _exists(sub) else node.module)
    return found


def _exists(module: str) -> bool:
    base = PACKAGE.parent.joinpath(*module.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _graph(folder: str) -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in (PACKAGE / folder).rglob("*.py")}


def test_plugins_import_nothing_from_engines():
    offenders = {m: sorted(i for i in imports if i.startswith("trtq.engines"))
                 for m, imports in _graph("plugins").items()}
    assert {m: i for m, i in offenders.items() if i} == {}


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle among the modules of `graph`, or []."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> list[str]:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target in graph and target not in state:
                found = visit(target, path + [target])
                if found:
                    return found
        state[module] = 2
        return []

    for module in sorted(graph):
        if module not in state:
            found = visit(module, [module])
            if found:
                return found
    return []


def test_engines_and_plugins_have_no_import_cycle():
    graph = {**_graph("engines"), **_graph("plugins")}
    assert "trtq.engines.build_config" in graph["trtq.engines.tensorrt_api"]  # read as modules
    assert _cycle(graph) == []


def test_the_cycle_finder_finds_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) == []


# Each top-level part of the package and its layer; a module may import its own layer and below.
LAYERS = {
    "errors": 0, "progress": 0, "system": 0, "tensorrt_flavour": 0, "__init__": 0,
    "recipes": 1, "data": 1, "artifacts": 1,
    "staging": 2, "models": 2,
    "calib": 3,
    "plugins": 4, "export": 4,
    "engines": 5, "api": 5, "onnx_ptq": 5,
    "eval": 6, "bench": 6,
    "pipeline_report": 7, "pipeline_int8": 7, "deploy": 7, "autoquant": 7,
    "pipeline": 8,
    "commands": 9, "cli": 10, "__main__": 11,
}


def _part(module: str) -> str:
    return module.split(".")[1] if module.count(".") else "__init__"


def _whole_package() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in PACKAGE.rglob("*.py")}


def test_every_part_has_a_layer():
    assert {_part(m) for m in _whole_package()} <= set(LAYERS)


# The package root exposes the Python API (`trtq.quantize`, ...) by a lazy module __getattr__:
# `import trtq` stays cheap and imports nothing above layer 0.
FACADE = {("trtq", "trtq.api")}


def test_no_module_imports_a_later_stage():
    upward = sorted(f"{module} → {target}" for module, targets in _whole_package().items()
                    for target in targets
                    if LAYERS[_part(target)] > LAYERS[_part(module)]
                    and (module, target) not in FACADE)
    assert upward == []


def test_importing_trtq_does_not_import_the_api():
    import subprocess
    import sys

    code = "import sys, trtq; print('trtq.api' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False"]


def test_the_package_has_no_import_cycle():
    graph = _whole_package()
    assert len(graph) > 100
    assert _cycle(graph) == []
