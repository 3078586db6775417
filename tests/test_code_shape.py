"""The package stays readable: small modules, short functions, narrow signatures."""

from __future__ import annotations

import ast
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
