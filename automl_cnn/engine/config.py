"""The settings of one search, shared by the CLI and the Python API.

Each setting is declared once, here or (the data settings) in :class:`~automl_cnn.data.DataOptions`,
with its default and its command-line form (:mod:`automl_cnn.options`): ``automl-cnn search``
is built from these fields, and :meth:`SearchConfig.to_dict` / :meth:`SearchConfig.from_dict`
are its one JSON form (``run.json``), from which :meth:`SearchConfig.to_params` (MLflow) derives.
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from automl_cnn.codec import from_jsonable, to_jsonable
from automl_cnn.data import DEFAULT_SPLIT, DataOptions
from automl_cnn.errors import UserInputError
from automl_cnn.options import Switch, cli_values, fractions, not_an_option, option, positive_int, switch
from automl_cnn.services.registry import POLICIES

SAMPLERS = ("tpe", "random", "cmaes", "gp", "qmc")
DATA_FIDELITIES = ("auto", "off")
PRUNERS = ("asha", "hyperband", "median", "none")
EXECUTORS = ("ray", "inprocess")
AUTO_ENSEMBLE = 5  # --ensemble auto: at most this many members
_JOINERS = {"split": "/", "image_size": "x"}  # how to_params writes these sequences (else a,b)

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
class SearchConfig(DataOptions):
    """Everything a search needs besides the data and the space (the data settings are
    :class:`~automl_cnn.data.DataOptions`' fields).

    ``time_budget`` covers the whole run, the final fit included; the search phase leaves room
    for it, estimated from the best trial's training time.
    """

    test_data: str | None = option(  # a user's test set (folder, .csv, .npz); else split from the data
        None, "--test-data", help="your own test set (folder, .csv or .npz), kept out of the search"
    )
    class_weights: bool = switch(  # weight the loss by inverse class frequency
        False, Switch("--class-weights", True, "weight the loss by inverse class frequency")
    )
    trials: int | None = option(None, "--trials", parse=positive_int, help="the most trials to run")
    time_budget: float | None = option(  # seconds
        None,
        "--time-budget",
        convert=parse_duration,
        help="wall-clock budget for the whole run, e.g. 90s, 10m, 1h (default 10m without --trials)",
    )
    max_epochs: int | None = option(None, "--max-epochs", parse=positive_int, help="cap every trial's epochs")
    workers: int | None = option(
        None, "--workers", parse=positive_int, help="trials at once (default: one per CPU core, or per GPU)"
    )
    cpus_per_trial: float = option(1.0, "--cpus-per-trial", parse=float)
    wait_for_resources: float | None = option(  # seconds; None: refuse what the cluster lacks now
        None,
        "--wait-for-resources",
        convert=parse_duration,
        help="on an autoscaling cluster: accept requests larger than it has now and wait up to this "
        "long (e.g. 15m) for workers to start; without it such requests are refused at once",
    )
    gpus_per_trial: float | None = option(  # default: 1 where the cluster has GPUs
        None, "--gpus-per-trial", parse=float, help="GPUs per trial; a fraction packs trials on one GPU"
    )
    sampler: str = option("tpe", "--sampler", choices=SAMPLERS, help="Optuna sampler (default tpe)")
    pruner: str = option("asha", "--pruner", choices=PRUNERS, help="early stopping of weak trials (default asha)")
    data_fidelity: str = option(  # see engine/fidelity.py
        "auto",
        "--data-fidelity",
        choices=DATA_FIDELITIES,
        help="auto (default): on 10,000 training images or more, the pruner's first rungs train on "
        "stratified subsets (1/9, then 1/3 of the data) and only survivors see all of it; off: every "
        "epoch trains on all of the data",
    )
    seed: int = option(0, "--seed", parse=int, help="seeds the split, the sampler and every trial")
    split: tuple[float, float, float] = option(
        DEFAULT_SPLIT, "--split", parse=fractions, help="train,val,test fractions"
    )
    warm_start: tuple[str, ...] = option(  # presets, groups, or earlier searches' folders; text: a,b or none
        ("classics",),
        "--warm-start",
        help="presets enqueued first where they fit the space: classics (default), mlp, keras_mnist, lenet5, "
        "vgg_small, resnet_small (comma-separated), or none",
    )
    objectives: tuple[str, ...] = option(  # accuracy, then any of params, flops, latency; text: a,b
        ("accuracy",),
        "--objective",
        help="accuracy, or accuracy plus any of params, flops, latency (e.g. accuracy,params) for a Pareto front",
    )
    pick: str | None = option(  # rule choosing the delivered model from a Pareto front
        None,
        "--pick",
        help="which Pareto member to deliver: accuracy, or OBJECTIVE@TOLERANCE, e.g. params@0.005 (the default: "
        "fewest of the second objective within 0.5 points of the best accuracy)",
    )
    final_repeats: int = option(  # test score as mean +- std over the seeds
        1, "--final-repeats", parse=positive_int, help="retrain the winner with N seeds"
    )
    final_top_k: int = option(1, "--final-top-k", parse=positive_int, help="also retrain and test the next best trials")
    ensemble: str = option(  # off | auto | K (at most K members); see engine/final_plan.py
        "auto",
        "--ensemble",
        help="deliver an ensemble of trials when it beats the single winner on held-out validation: auto "
        f"(default: up to {AUTO_ENSEMBLE} members, as many as the time budget allows), off, or K (at most K members)",
    )
    max_params: int | None = option(
        None, "--max-params", parse=positive_int, help="never train candidates with more parameters"
    )
    max_flops: int | None = option(
        None, "--max-flops", parse=positive_int, help="never train candidates with more FLOPs per image"
    )
    max_latency_ms: float | None = option(
        None, "--max-latency-ms", parse=float, help="never train candidates slower per image (1 CPU thread)"
    )
    tracking_uri: str | None = option(  # default: default_tracking_uri(), sqlite:///<cwd>/mlflow.db
        None, "--tracking-uri", help="MLflow tracking URI (default sqlite:///./mlflow.db)"
    )
    experiment: str = option("automl-cnn", "--experiment", help="MLflow experiment name")
    model_name: str | None = option(
        None, "--model-name", help="registered model name (default automl-cnn-<data>-<CxHxW>-<data fingerprint>)"
    )
    promote: str = option(  # when the new version takes alias champion (services/registry.py)
        "if-better",
        "--promote",
        choices=POLICIES,
        help="when the new model becomes the registered model's champion (else it is challenger): if-better "
        "(default: a higher test accuracy than the champion's on the same data and test split), always, or never",
    )
    out: Path | None = option(None, "--out", parse=Path, help="output folder (default runs/<data>-<time>)")  # noqa: RUF009
    ray_address: str | None = option(
        None, "--ray-address", help="join an existing Ray cluster (e.g. auto or 10.0.0.5:6379)"
    )
    storage: str | None = option(  # Optuna storage URL; default a journal file in the run folder
        None,
        "--storage",
        help="Optuna storage: a PostgreSQL/MySQL/SQLite URL or redis:// (default: a journal file in the run folder)",
    )
    device: str | None = option(None, "--device", choices=("cpu", "cuda"), help="force the device inside workers")
    executor: str = option(
        "ray",
        "--executor",
        choices=EXECUTORS,
        help="where trials run: ray (default), or inprocess, one at a time in this process (to debug a space)",
    )
    progress: bool | None = switch(  # live display; default: when stdout is a terminal
        None, Switch("--no-progress", False, "plain log lines instead of the live panel")
    )
    enqueue: tuple[dict[str, Any], ...] = not_an_option(())  # Optuna params of trials to run first

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sampler not in SAMPLERS:
            raise UserInputError(f"unknown sampler {self.sampler!r}; use one of: {', '.join(SAMPLERS)}")
        if self.pruner not in PRUNERS:
            raise UserInputError(f"unknown pruner {self.pruner!r}; use one of: {', '.join(PRUNERS)}")
        if self.data_fidelity not in DATA_FIDELITIES:
            raise UserInputError(f"--data-fidelity {self.data_fidelity!r}: use auto or off")
        if self.promote not in POLICIES:
            raise UserInputError(f"unknown promotion policy {self.promote!r}; use one of: {', '.join(POLICIES)}")
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
        for name in ("split", "image_size", "enqueue"):  # lists, as JSON or YAML give them
            if isinstance(getattr(self, name), list):
                object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.out is not None and not isinstance(self.out, Path):
            object.__setattr__(self, "out", Path(self.out))
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
        if self.ensemble not in ("off", "auto") and not (str(self.ensemble).isdigit() and int(str(self.ensemble)) >= 1):
            raise UserInputError(f"--ensemble {self.ensemble!r}: use off, auto, or a number of members such as 3")
        object.__setattr__(self, "ensemble", str(self.ensemble))
        if self.executor not in EXECUTORS:
            raise UserInputError(f"unknown executor {self.executor!r}; use one of: {', '.join(EXECUTORS)}")

    @classmethod
    def from_cli(cls, args: argparse.Namespace) -> SearchConfig:
        """The settings ``automl-cnn search`` parsed (its options are built from these fields)."""
        return cls(**cli_values(cls, vars(args)))

    def to_dict(self) -> dict[str, Any]:
        """Every setting as JSON values (tuples as lists, paths as text); :meth:`from_dict` reads
        it back equal."""
        out: dict[str, Any] = to_jsonable(self)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SearchConfig:
        """A config from :meth:`to_dict`'s output, or from an older ``run.json``'s (which was
        ``dataclasses.asdict`` without ``progress``). Unknown keys are ignored; missing ones take
        their defaults; the settings are checked as in the constructor."""
        return from_jsonable(cls, dict(d))

    def data_options(self) -> DataOptions:
        return DataOptions(**{f.name: getattr(self, f.name) for f in fields(DataOptions)})

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    def pick_rule(self) -> Any:
        from automl_cnn.engine.objectives import PickRule

        return PickRule.parse(self.pick, self.objectives)

    def limits(self) -> Any:
        from automl_cnn.model.profile import Limits

        return Limits(self.max_params, self.max_flops, self.max_latency_ms)

    def ensemble_size(self) -> int:
        """The most distinct members an ensemble may have (1: no ensemble)."""
        if self.ensemble == "off" or self.multi_objective:  # several objectives: the pick rule decides
            return 1
        return AUTO_ENSEMBLE if self.ensemble == "auto" else int(self.ensemble)

    def budget_seconds(self) -> float | None:
        """The time budget; without any budget a search runs 10 minutes."""
        if self.time_budget is None and self.trials is None:
            return 600.0
        return self.time_budget

    def resolved_tracking_uri(self) -> str:
        from automl_cnn.services.tracking import default_tracking_uri

        return self.tracking_uri or default_tracking_uri()

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

    def registered_name(self, data_name: str, input_shape: tuple[int, ...], fingerprint: str) -> str:
        """``--model-name``, else ``automl-cnn-<data>-<CxHxW>-<first 8 of the data fingerprint>``:
        two different datasets (even in folders of the same name) never share a registered model."""
        if self.model_name:
            return self.model_name
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", data_name).strip("-") or "data"
        return f"automl-cnn-{safe}-{'x'.join(map(str, input_shape))}-{fingerprint[:8]}"

    def default_workers(self, cluster_cpus: float, cluster_gpus: float) -> int:
        if self.workers:
            return self.workers
        if cluster_gpus >= 1 and (self.gpus_per_trial or 1) > 0:
            return max(1, int(cluster_gpus / (self.gpus_per_trial or 1)))
        return max(1, int(cluster_cpus / self.cpus_per_trial))

    def to_record(self) -> dict[str, Any]:
        """:meth:`to_dict` with every password masked (``postgresql://user:***@host/db``, the
        storage's and the tracking URI's alike): what ``run.json`` and MLflow keep. A resume asks
        for a masked password again."""
        from automl_cnn.services.credentials import mask_password

        def masked(value: Any) -> Any:
            if isinstance(value, str):
                return mask_password(value)
            return [masked(v) for v in value] if isinstance(value, list) else value

        return {k: masked(v) for k, v in self.to_dict().items()}

    def to_params(self) -> dict[str, Any]:
        """:meth:`to_record` flattened for MLflow params: every value a JSON scalar (a sequence
        joined as text: ``0.7/0.15/0.15``, ``32x32``, ``accuracy,params``, ``none`` when empty),
        passwords masked, the live display and the enqueued trials left out."""
        params = {k: v for k, v in self.to_record().items() if k not in ("progress", "enqueue")}
        for key, value in params.items():
            if isinstance(value, list):
                text = (f"{v:g}" if isinstance(v, float) else str(v) for v in value)
                params[key] = _JOINERS.get(key, ",").join(text) or "none"
        return params
