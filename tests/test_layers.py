"""The package's layers: imports point one way, and no modules import each other in a cycle,
counting imports inside functions (the hidden ones) too."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "automl_cnn"
# each layer may import only from the layers after it in this list; a name is a module or a
# package (its longest matching prefix decides), so sub-packages can stand on different floors
LAYERS: list[set[str]] = [
    {"cli", "__init__", "__main__"},
    {"app"},  # search and resume: Plan -> Session -> search -> final -> deliver
    {"deliver"},  # what users take home: the folder, the report, the registered model
    {"engine.final"},  # tie-break, plan, fits, check, ensemble: the delivered model decided
    {"engine.search"},  # the driver and what it calls: gate, endings, dedupe, cost, MOASHA
    {"engine"},  # what both phases share: config, session, budget, records, run state
    {"services"},
    {"space", "training"},
    {"model"},
    {"data"},
    {"codec", "errors", "metrics", "options", "stats"},
]
THIRD_PARTY_SERVICES = {"ray", "mlflow"}  # never imported by the pure core
CORE = {"space", "training", "model", "data", "codec", "errors", "metrics", "options", "stats"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(p for p in parts if p != "__init__") or "__init__"
        out[name] = path
    return out


def _imports(path: Path) -> set[str]:
    """Every module of ours or third party that ``path`` imports, anywhere in the file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def _ours(imports: set[str], modules: dict[str, Path]) -> set[str]:
    names = {i.removeprefix("automl_cnn.") for i in imports if i.startswith("automl_cnn.")}
    return {n for n in names if n in modules}


def _layer(module: str) -> int:
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        prefix = ".".join(parts[:end])
        for i, layer in enumerate(LAYERS):
            if prefix in layer:
                return i
    raise AssertionError(f"{module} is on no layer of tests/test_layers.py")


def test_imports_point_down_the_layers() -> None:
    modules = _modules()
    wrong = []
    for name, path in modules.items():
        for target in _ours(_imports(path), modules):
            if _layer(target) < _layer(name):
                wrong.append(f"{name} imports {target}")
    assert not wrong, wrong


def test_the_core_never_imports_ray_or_mlflow() -> None:
    modules = _modules()
    core = [n for n in modules if n.split(".")[0] in CORE]
    wrong = [f"{n} imports {i}" for n in core for i in _imports(modules[n]) if i.split(".")[0] in THIRD_PARTY_SERVICES]
    assert not wrong, wrong


def test_no_import_cycles_even_inside_functions() -> None:
    modules = _modules()
    graph = {
        n: {t for t in _ours(_imports(p), modules) if t != n and not n.startswith(t + ".")} for n, p in modules.items()
    }
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n, [n])
    assert not cycles, cycles
