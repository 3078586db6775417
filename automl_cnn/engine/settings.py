"""The groups a search's settings come in: budget, search, final, limits, cluster and tracking
(the data group is :class:`~automl_cnn.data.options.DataSettings`).

Each group is a small frozen dataclass whose fields carry their command-line form
(:mod:`automl_cnn.options`); ``automl-cnn search --help`` shows one section per group. Each
group checks and normalises its own settings in ``__post_init__``: a duration, size or number
given as text from Python is parsed there by its flag's parser, as from the command line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automl_cnn.errors import UserInputError
from automl_cnn.metrics import AUTO_IMBALANCE, METRICS, metric_name
from automl_cnn.options import (
    Switch,
    duration,
    not_an_option,
    option,
    parse_given_text,
    positive_int,
    registry_help,
    switch,
)
from automl_cnn.services.registry import POLICIES
from automl_cnn.services.study import PRUNERS, SAMPLERS
from automl_cnn.space.presets import GROUPS, PRESETS

DATA_FIDELITIES = ("auto", "off")
EPOCHS = ("auto", "fixed")
EXECUTORS = ("ray", "inprocess")
FINAL_STARTS = ("restart", "continue")  # a final fit from random weights, or from its trial's
AUTO_ENSEMBLE = 5  # --ensemble auto: at most this many members


def _positive_ints(settings: Any, *names: str) -> None:
    for name in names:
        value = getattr(settings, name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise UserInputError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")


def _positive_seconds(settings: Any, name: str) -> None:
    value = getattr(settings, name)
    if value is not None and (not isinstance(value, int | float) or isinstance(value, bool) or value <= 0):
        raise UserInputError(f"--{name.replace('_', '-')} {value!r} must be a positive duration, e.g. 90s, 10m or 1h")
    if value is not None:
        object.__setattr__(settings, name, float(value))


@dataclass(frozen=True)
class BudgetSettings:
    """How long the search may run. ``time_budget`` covers the whole run, the final fit
    included; the search phase leaves room for it, estimated from the best trial's training time."""

    time_budget: float | None = option(  # seconds
        None,
        "--time-budget",
        parse=duration,
        help="wall-clock budget for the whole run, e.g. 90s, 10m, 1h (default 10m without --trials)",
    )
    trials: int | None = option(
        None, "--trials", parse=positive_int, help="the most trials to run", shown="no limit but the time budget"
    )
    max_epochs: int | None = option(
        None,
        "--max-epochs",
        parse=positive_int,
        help="cap every trial's epochs (under --epochs auto also how far the learned ceiling grows)",
        shown="the space's own",
    )

    def __post_init__(self) -> None:
        parse_given_text(self, UserInputError)
        _positive_ints(self, "trials", "max_epochs")
        _positive_seconds(self, "time_budget")


@dataclass(frozen=True)
class SearchSettings:
    """How trials are proposed, stopped early and compared."""

    sampler: str = option(
        "tpe", "--sampler", choices=tuple(SAMPLERS), help=registry_help(SAMPLERS, "Optuna sampler (default tpe): ")
    )
    pruner: str = option(
        "asha",
        "--pruner",
        choices=tuple(PRUNERS),
        help=registry_help(PRUNERS, "early stopping of weak trials (default asha): "),
    )
    data_fidelity: str = option(  # see engine/fidelity.py
        "auto",
        "--data-fidelity",
        choices=DATA_FIDELITIES,
        help="auto (default): on 10,000 training images or more, the pruner's first rungs train on "
        "stratified subsets (1/9, then 1/3 of the data) and only survivors see all of it; off: every "
        "epoch trains on all of the data",
    )
    epochs: str = option(  # see engine/search/pausing.py
        "auto",
        "--epochs",
        choices=EPOCHS,
        help="auto (default): trials on the wsd schedule train to a ceiling the search learns: it starts "
        "at 3 epochs and triples while the ranking of the trials that reached it changes beyond noise or "
        "the leaders still rise; trials at the old ceiling continue from their checkpoints; the cap is "
        "--max-epochs, else each trial's own epochs (other schedules always train their own epochs); "
        "fixed: every trial trains its own epochs",
    )
    metric: str = option(  # see automl_cnn/metrics.py
        "auto",
        "--metric",
        parse=metric_name,
        help="what the search optimises and reports: auto (default: balanced_accuracy when the largest class has "
        f"more than {AUTO_IMBALANCE:g}x the training images of the smallest, else accuracy), accuracy, "
        "balanced_accuracy (the mean recall over classes), macro_f1 (the mean F1 over classes: also charges "
        "false alarms of a rare class)",
    )
    seed: int = option(0, "--seed", parse=int, help="seeds the split, the sampler and every trial")
    warm_start: tuple[str, ...] = option(  # presets, groups, or earlier searches' folders; text: a,b or none
        ("classics",),
        "--warm-start",
        help=registry_help(
            {**GROUPS, **PRESETS},
            "presets enqueued first where they fit the space, comma-separated, or none, or an earlier "
            "search's folder (default classics): ",
        ),
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
    backbone_weights: str | None = option(  # see space/backbone.py override_weights
        None,
        "--backbone-weights",
        help="a weights file (.pth or .safetensors) for every backbone family of the space, or "
        "FAMILY=FILE[,FAMILY=FILE] for some; also torchvision or none",
        shown="the space's backbone.weights",
    )
    enqueue: tuple[dict[str, Any], ...] = not_an_option(())  # Optuna params of trials to run first

    def __post_init__(self) -> None:
        parse_given_text(self, UserInputError)
        if self.sampler not in SAMPLERS:
            raise UserInputError(f"unknown sampler {self.sampler!r}; use one of: {', '.join(SAMPLERS)}")
        if self.pruner not in PRUNERS:
            raise UserInputError(f"unknown pruner {self.pruner!r}; use one of: {', '.join(PRUNERS)}")
        if isinstance(self.backbone_weights, Path):
            object.__setattr__(self, "backbone_weights", str(self.backbone_weights))
        if self.metric not in METRICS:
            raise UserInputError(f"unknown metric {self.metric!r}; use one of: {', '.join(METRICS)}")
        if self.epochs not in EPOCHS:
            raise UserInputError(f"--epochs {self.epochs!r}: use auto or fixed")
        if self.data_fidelity not in DATA_FIDELITIES:
            raise UserInputError(f"--data-fidelity {self.data_fidelity!r}: use auto or off")
        if isinstance(self.warm_start, str):
            names = [] if self.warm_start in ("", "none") else self.warm_start.split(",")
            object.__setattr__(self, "warm_start", tuple(n.strip() for n in names if n.strip()))
        for name in self.warm_start:
            if name not in GROUPS and name not in PRESETS and not Path(name).expanduser().is_dir():
                known = ", ".join([*GROUPS, *PRESETS, "none"])
                raise UserInputError(f"unknown warm start {name!r}; use one of: {known}, or an earlier search's folder")
        from automl_cnn.engine.objectives import PickRule, parse_objectives

        object.__setattr__(self, "objectives", parse_objectives(self.objectives))
        for name in ("warm_start", "enqueue"):  # lists, as JSON or YAML give them
            object.__setattr__(self, name, tuple(getattr(self, name)))
        PickRule.parse(self.pick, self.objectives)  # validates
        if len(self.objectives) > 1 and self.sampler == "cmaes":
            raise UserInputError("CMA-ES optimises one objective; with several use --sampler tpe, random, gp or qmc")


@dataclass(frozen=True)
class FinalSettings:
    """What happens after the search: the winner's retraining and the delivered ensemble."""

    final_repeats: int = option(  # test score as mean +- std over the seeds
        1, "--final-repeats", parse=positive_int, help="retrain the winner with N seeds"
    )
    final_top_k: int = option(1, "--final-top-k", parse=positive_int, help="also retrain and test the next best trials")
    ensemble: str = option(  # off | auto | K (at most K members); see engine/final/plan.py
        "auto",
        "--ensemble",
        help="deliver an ensemble of trials when it beats the single winner on held-out validation: auto "
        f"(default: up to {AUTO_ENSEMBLE} members, as many as the time budget allows), off, or K (at most K members)",
    )
    final_start: str = option(  # see engine/final/start.py
        "restart",
        "--final-start",
        choices=FINAL_STARTS,
        help="where each final fit starts: restart (default: from random weights) or continue (the first "
        "seed of each trial from the trial's own weights, at a tenth of its learning rate)",
    )

    def __post_init__(self) -> None:
        parse_given_text(self, UserInputError)
        if self.final_start not in FINAL_STARTS:
            raise UserInputError(f"--final-start {self.final_start!r}: use {' or '.join(FINAL_STARTS)}")
        for name in ("final_repeats", "final_top_k"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise UserInputError(f"--{name.replace('_', '-')} must be a positive integer")
        if self.ensemble not in ("off", "auto") and not (str(self.ensemble).isdigit() and int(str(self.ensemble)) >= 1):
            raise UserInputError(f"--ensemble {self.ensemble!r}: use off, auto, or a number of members such as 3")
        object.__setattr__(self, "ensemble", str(self.ensemble))


def _limit(parse: Callable[[str], Any], flag: str, what: str) -> Any:
    """A hard limit's setting: off by default; a candidate ``what`` is never trained."""
    return option(None, flag, parse=parse, help=f"never train candidates {what}", shown="no limit")


@dataclass(frozen=True)
class LimitsSettings:
    """Hard limits: a candidate beyond any of them is never trained."""

    max_params: int | None = _limit(positive_int, "--max-params", "with more parameters")
    max_flops: int | None = _limit(positive_int, "--max-flops", "with more FLOPs per image")
    max_latency_ms: float | None = _limit(float, "--max-latency-ms", "slower per image (1 CPU thread)")

    def __post_init__(self) -> None:
        parse_given_text(self, UserInputError)

    def check(self, prof: Any, latency_ms: float | None = None) -> dict[str, tuple[str, float]]:
        """Broken limits: ``name -> (reason, relative excess > 0)``
        (:meth:`automl_cnn.model.profile.Limits.check`)."""
        from automl_cnn.model.profile import Limits

        return Limits(self.max_params, self.max_flops, self.max_latency_ms).check(prof, latency_ms)


@dataclass(frozen=True)
class ClusterSettings:
    """Where trials run and what each takes."""

    workers: int | None = option(
        None, "--workers", parse=positive_int, help="trials at once (default: one per CPU core, or per GPU)"
    )
    cpus_per_trial: float = option(1.0, "--cpus-per-trial", parse=float, help="CPU cores each trial takes")
    gpus_per_trial: float | None = option(  # default: 1 where the cluster has GPUs
        None,
        "--gpus-per-trial",
        parse=float,
        help="GPUs per trial; a fraction packs trials on one GPU",
        shown="1 where the cluster has GPUs, else 0",
    )
    wait_for_resources: float | None = option(  # seconds; None: refuse what the cluster lacks now
        None,
        "--wait-for-resources",
        parse=duration,
        help="on an autoscaling cluster: accept requests larger than it has now and wait up to this "
        "long (e.g. 15m) for workers to start",
        shown="none: such requests are refused at once",
    )
    ray_address: str | None = option(
        None,
        "--ray-address",
        help="join an existing Ray cluster (e.g. auto or 10.0.0.5:6379)",
        shown="a local Ray on this machine",
    )
    device: str | None = option(
        None,
        "--device",
        choices=("cpu", "cuda"),
        help="force the device inside workers",
        shown="cuda where the worker has a GPU, else cpu",
    )
    executor: str = option(
        "ray",
        "--executor",
        choices=EXECUTORS,
        help="where trials run: ray (default), or inprocess, one at a time in this process (to debug a space)",
    )

    def __post_init__(self) -> None:
        parse_given_text(self, UserInputError)
        _positive_ints(self, "workers")
        _positive_seconds(self, "wait_for_resources")
        if self.cpus_per_trial <= 0:
            raise UserInputError("--cpus-per-trial must be positive")
        if self.gpus_per_trial is not None and self.gpus_per_trial < 0:
            raise UserInputError("--gpus-per-trial must be zero or positive")
        if self.executor not in EXECUTORS:
            raise UserInputError(f"unknown executor {self.executor!r}; use one of: {', '.join(EXECUTORS)}")


@dataclass(frozen=True)
class TrackingSettings:
    """Where the run is recorded (its folder, MLflow, the study) and how it is shown."""

    out: Path | None = option(None, "--out", parse=Path, help="output folder (default runs/<data>-<time>)")  # noqa: RUF009
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
    storage: str | None = option(  # Optuna storage URL; default a journal file in the run folder
        None,
        "--storage",
        help="Optuna storage: a PostgreSQL/MySQL/SQLite URL or redis:// (default: a journal file in the run folder)",
    )
    progress: bool | None = switch(  # live display; default: when stdout is a terminal
        None,
        Switch("--no-progress", False, "plain log lines instead of the live panel"),
        shown="the live panel when the output is a terminal",
    )

    def __post_init__(self) -> None:
        parse_given_text(self, UserInputError)
        if self.promote not in POLICIES:
            raise UserInputError(f"unknown promotion policy {self.promote!r}; use one of: {', '.join(POLICIES)}")
