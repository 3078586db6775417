"""The settings of one search, shared by the CLI and the Python API."""

from __future__ import annotations

import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from automl_cnn.errors import UserInputError

SAMPLERS = ("tpe", "random", "cmaes", "gp", "qmc")
PRUNERS = ("asha", "hyperband", "median", "none")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|hr)?\s*$")
_UNITS = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600}


def parse_duration(text: str | float | int | None) -> float | None:
    """``"90s"``, ``"10m"``, ``"1.5h"`` or a number of seconds -> seconds."""
    if text is None:
        return None
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        m = _DURATION.match(text)
        if not m:
            raise UserInputError(f"time budget {text!r} is not a duration; write e.g. 90s, 10m or 1h")
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds <= 0:
        raise UserInputError(f"time budget {text!r} must be positive")
    return seconds


@dataclass(frozen=True)
class SearchConfig:
    """Everything a search needs besides the data and the space.

    ``time_budget`` covers the whole run, the final fit included; the search phase leaves room
    for it, estimated from the best trial's training time.
    """

    trials: int | None = None
    time_budget: float | None = None  # seconds
    max_epochs: int | None = None
    workers: int | None = None  # default: one per CPU core, or one per GPU
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None  # default: 1 where the cluster has GPUs
    sampler: str = "tpe"
    pruner: str = "asha"
    seed: int = 0
    split: tuple[float, float, float] = (0.7, 0.15, 0.15)
    test_data: str | None = None  # a user's test set (folder, .csv, .npz); else split from the data
    image_size: tuple[int, int] | None = None  # resize every image; default derived from the data
    strict: bool = False  # a bad image file is an error instead of a skipped file
    data_root: str = "~/.cache/automl_cnn/torchvision"  # where torchvision datasets are read from
    download: bool = False  # let torchvision fetch a dataset missing from data_root
    memory_budget: int | None = 2 * 1024**3  # decoded bytes kept in memory before streaming
    stream: bool | None = None  # force streaming (True) or in-memory (False)
    class_weights: bool = False  # weight the loss by inverse class frequency
    tracking_uri: str | None = None  # default: sqlite:///<cwd>/mlflow.db
    experiment: str = "automl-cnn"
    model_name: str | None = None  # registered model name; default automl-cnn-<data>
    out: Path | None = None  # default: runs/<data>-<timestamp>
    ray_address: str | None = None
    storage: str | None = None  # Optuna storage URL; default a journal file in the run folder
    device: str | None = None  # force "cpu" or "cuda" inside workers
    progress: bool | None = None  # live display; default: when stdout is a terminal
    enqueue: tuple[dict[str, Any], ...] = ()  # Optuna params of trials to run first
    warm_start: tuple[str, ...] = ("classics",)  # presets, groups, or earlier searches' folders
    objectives: tuple[str, ...] = ("accuracy",)  # accuracy, then any of params, flops, latency
    pick: str | None = None  # rule choosing the delivered model from a Pareto front
    max_params: int | None = None
    max_flops: int | None = None
    max_latency_ms: float | None = None
    final_repeats: int = 1  # retrain the winner with this many seeds; test score as mean +- std
    final_top_k: int = 1  # also retrain (and report) the next best trials

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise UserInputError(f"unknown sampler {self.sampler!r}; use one of: {', '.join(SAMPLERS)}")
        if self.pruner not in PRUNERS:
            raise UserInputError(f"unknown pruner {self.pruner!r}; use one of: {', '.join(PRUNERS)}")
        for name in ("trials", "max_epochs", "workers"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise UserInputError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if isinstance(self.warm_start, str):
            names = [] if self.warm_start in ("", "none") else self.warm_start.split(",")
            object.__setattr__(self, "warm_start", tuple(n.strip() for n in names if n.strip()))
        from automl_cnn.engine.objectives import PickRule, parse_objectives
        from automl_cnn.space.presets import GROUPS, PRESETS

        for name in self.warm_start:
            if name not in GROUPS and name not in PRESETS and not Path(name).expanduser().is_dir():
                known = ", ".join([*GROUPS, *PRESETS, "none"])
                raise UserInputError(f"unknown warm start {name!r}; use one of: {known}, or an earlier search's folder")
        object.__setattr__(self, "objectives", parse_objectives(self.objectives))
        if isinstance(self.enqueue, list):
            object.__setattr__(self, "enqueue", tuple(self.enqueue))
        PickRule.parse(self.pick, self.objectives)  # validates
        if len(self.objectives) > 1 and self.sampler == "cmaes":
            raise UserInputError("CMA-ES optimises one objective; with several use --sampler tpe, random, gp or qmc")
        for name in ("final_repeats", "final_top_k"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise UserInputError(f"--{name.replace('_', '-')} must be a positive integer")
        if self.cpus_per_trial <= 0:
            raise UserInputError("--cpus-per-trial must be positive")
        if self.gpus_per_trial is not None and self.gpus_per_trial < 0:
            raise UserInputError("--gpus-per-trial must be zero or positive")

    def data_options(self) -> Any:
        from automl_cnn.data import DataOptions

        return DataOptions(
            image_size=self.image_size,
            strict=self.strict,
            data_root=Path(self.data_root),
            download=self.download,
            memory_budget=self.memory_budget,
            stream=self.stream,
        )

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    def pick_rule(self) -> Any:
        from automl_cnn.engine.objectives import PickRule

        return PickRule.parse(self.pick, self.objectives)

    def limits(self) -> Any:
        from automl_cnn.model.profile import Limits

        return Limits(self.max_params, self.max_flops, self.max_latency_ms)

    def budget_seconds(self) -> float | None:
        """The time budget; without any budget a search runs 10 minutes."""
        if self.time_budget is None and self.trials is None:
            return 600.0
        return self.time_budget

    def resolved_tracking_uri(self) -> str:
        return self.tracking_uri or f"sqlite:///{Path.cwd() / 'mlflow.db'}"

    def out_dir(self, data_name: str) -> Path:
        if self.out is not None:
            return Path(self.out).expanduser().resolve()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", data_name).strip("-") or "data"
        base = (Path.cwd() / "runs" / f"{safe}-{stamp}").resolve()
        out, n = base, 1
        while out.exists():  # two searches started in the same second
            n += 1
            out = base.with_name(f"{base.name}-{n}")
        return out

    def registered_name(self, data_name: str) -> str:
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", data_name).strip("-") or "data"
        return self.model_name or f"automl-cnn-{safe}"

    def default_workers(self, cluster_cpus: float, cluster_gpus: float) -> int:
        if self.workers:
            return self.workers
        if cluster_gpus >= 1 and (self.gpus_per_trial or 1) > 0:
            return max(1, int(cluster_gpus / (self.gpus_per_trial or 1)))
        return max(1, int(cluster_cpus / self.cpus_per_trial))

    def to_params(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k not in ("progress", "enqueue")}
        out["warm_start"] = ",".join(self.warm_start) or "none"
        from automl_cnn.services.study import mask_password

        out["storage"] = mask_password(self.storage)
        out["objectives"] = ",".join(self.objectives)
        out["split"] = "/".join(f"{f:g}" for f in self.split)
        if self.image_size:
            out["image_size"] = "x".join(map(str, self.image_size))
        return out


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1
