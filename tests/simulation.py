"""The driver-scale benchmark's simulated executor (benchmarks/driver_scale.py) for tests of the
driver's own scheduling and of the simulation's bookkeeping, and the fake clock both run on."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "driver_scale.py"


def driver_scale() -> ModuleType:
    """benchmarks/driver_scale.py as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("driver_scale", BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["driver_scale"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


class Clock:
    """Time that passes only when something sleeps on it."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
