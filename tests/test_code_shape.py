"""The package stays readable: small modules, short functions, narrow signatures."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "automl_cnn"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
MAX_PARAMETERS = 7  # not counting self / cls
EXEMPT_LENGTH = {"cli.py:build_parser"}  # a parser reads best as one list of options


def _functions() -> list[tuple[str, ast.FunctionDef | ast.AsyncFunctionDef]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                out.append((f"{path.relative_to(PACKAGE)}:{node.name}", node))
    return out


def test_no_module_is_over_400_lines() -> None:
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert not long, long


def test_no_function_is_over_60_lines() -> None:
    long = {
        name: n
        for name, node in _functions()
        if (n := (node.end_lineno or node.lineno) - node.lineno + 1) > MAX_FUNCTION_LINES and name not in EXEMPT_LENGTH
    }
    assert not long, long


def test_no_signature_has_over_7_parameters() -> None:
    wide = {}
    for name, node in _functions():
        a = node.args
        params = [
            *a.posonlyargs,
            *a.args,
            *a.kwonlyargs,
            *([a.vararg] if a.vararg else []),
            *([a.kwarg] if a.kwarg else []),
        ]
        count = len([p for p in params if p.arg not in ("self", "cls")])
        if count > MAX_PARAMETERS:
            wide[name] = count
    assert not wide, wide


# -- structure checks beyond size ---------------------------------------------------------------
REPEAT_LINES = 6  # a run of this many non-trivial lines found twice in the package is repeated code
MAX_UNTESTED_MODULES = 3  # package modules that no test imports (or runs with ``python -m``)
TESTS = Path(__file__).resolve().parent


def _code_lines(path: Path) -> list[tuple[int, str]]:
    """The lines of ``path`` that carry code: stripped, without blanks, comments, docstring-only
    lines, imports and lone brackets (what every module has and nobody could share)."""
    out = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", "from ", "import ", '"""', "@")) or len(line) <= 3:
            continue
        out.append((number, line))
    return out


def test_no_code_is_repeated_in_the_package() -> None:
    """No run of 6 code lines stands twice in the package (the same lines, whitespace aside)."""
    seen: dict[tuple[str, ...], str] = {}
    repeats = []
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = _code_lines(path)
        for i in range(len(lines) - REPEAT_LINES + 1):
            window = tuple(text for _, text in lines[i : i + REPEAT_LINES])
            where = f"{path.relative_to(PACKAGE)}:{lines[i][0]}"
            if window in seen and not seen[window].startswith(f"{path.relative_to(PACKAGE)}:"):
                repeats.append(f"{where} repeats {seen[window]}")
            seen.setdefault(window, where)
    assert not repeats, repeats


def _module_names() -> set[str]:
    """The package's modules that hold code (a package's ``__init__`` with only a docstring is no module here)."""
    names = set()
    for path in PACKAGE.rglob("*.py"):
        body = ast.parse(path.read_text(encoding="utf-8")).body
        if path.name == "__init__.py" and all(isinstance(n, ast.Expr) for n in body):
            continue
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names.add(".".join(p for p in parts if p != "__init__"))
    return names


def _named_by_tests() -> set[str]:
    """Every ``automl_cnn`` module a test imports, or names in a string (``python -m automl_cnn``,
    ``monkeypatch.setattr("automl_cnn.x.y", …)``)."""
    named: set[str] = set()
    for path in TESTS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                named.add(node.module)
                named.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                named.update(a.name for a in node.names)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                named.add(node.value)
    if "automl_cnn" in named:  # ``python -m automl_cnn`` runs its __main__
        named.add("automl_cnn.__main__")
    return named


def test_almost_every_module_is_imported_by_a_test() -> None:
    named = _named_by_tests()
    untested = sorted(m for m in _module_names() if not any(n == m or n.startswith(m + ".") for n in named))
    assert len(untested) <= MAX_UNTESTED_MODULES, untested


def test_mypy_requires_every_function_typed() -> None:
    """``mypy automl_cnn`` (CI runs it) fails on an untyped function: the setting stays on."""
    config = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["mypy"]
    assert config.get("disallow_untyped_defs") is True


ORCHESTRATION = ("app.py", "engine", "deliver")  # where a name must say what it holds


def test_the_orchestration_tier_names_what_it_holds() -> None:
    """No single-letter parameters (``s`` for a session) and no ``self.s`` in app, engine and deliver."""
    short = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = str(path.relative_to(PACKAGE))
        if not where.startswith(ORCHESTRATION):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                args = node.args
                short += [
                    f"{where}:{node.name}({a.arg})"
                    for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]
                    if len(a.arg) == 1
                ]
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
                short += [f"{where}: self.{node.attr}"] if len(node.attr) == 1 else []
    assert not short, short
