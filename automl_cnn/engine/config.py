"""The settings of one search, shared by the CLI and the Python API.

A :class:`SearchConfig` is made of small frozen groups (:mod:`automl_cnn.engine.settings`, and
:class:`~automl_cnn.data.options.DataSettings` for the data): ``budget``, ``search``, ``data``,
``final``, ``limits``, ``cluster`` and ``tracking``, read as ``cfg.budget.time_budget``. Each
setting is declared once, in its group, with its default and its command-line form
(:mod:`automl_cnn.options`): ``automl-cnn search`` is built from these fields, one help section
per group. :meth:`SearchConfig.from_settings` builds a config from flat settings
(``time_budget="10m"``), for the command line and the Python API alike;
:meth:`SearchConfig.to_dict` / :meth:`SearchConfig.from_dict` are its one JSON form (``run.json``,
by group; the flat form of earlier versions still loads), from which :meth:`SearchConfig.to_params`
(MLflow, flat keys as before) derives.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from automl_cnn.codec import from_jsonable, to_jsonable
from automl_cnn.data.options import DataOptions, DataSettings
from automl_cnn.engine.settings import (
    AUTO_ENSEMBLE,
    DATA_FIDELITIES,
    EXECUTORS,
    BudgetSettings,
    ClusterSettings,
    FinalSettings,
    LimitsSettings,
    SearchSettings,
    TrackingSettings,
)
from automl_cnn.errors import UserInputError
from automl_cnn.options import cli_values, duration
from automl_cnn.services.study import PRUNERS, SAMPLERS

__all__ = [
    "AUTO_ENSEMBLE",
    "DATA_FIDELITIES",
    "EXECUTORS",
    "PRUNERS",
    "SAMPLERS",
    "SearchConfig",
    "parse_duration",
]

GROUP = "automl_cnn.group"  # the metadata key of a group field's one-line description
_JOINERS = {"split": "/", "image_size": "x"}  # how to_params writes these sequences (else a,b)


def parse_duration(text: str | float | int | None, flag: str = "--time-budget") -> float | None:
    """``"90s"``, ``"10m"``, ``"1.5h"`` or a number of seconds -> seconds (positive)."""
    if text is None:
        return None
    if isinstance(text, str):
        try:
            return duration(text)
        except argparse.ArgumentTypeError as exc:
            raise UserInputError(f"{flag} {text!r}: {exc}") from None
    if text <= 0:
        raise UserInputError(f"{flag} {text!r} must be a positive duration, e.g. 90s, 10m or 1h")
    return float(text)


def _group(settings: type, about: str) -> Any:
    """A group of settings: a field holding one frozen settings object, with what its CLI group is about."""
    return field(default_factory=settings, metadata={GROUP: about})


@dataclass(frozen=True)
class SearchConfig:
    """Everything a search needs besides the data and the space, by group. Build one from flat
    settings with :meth:`from_settings`; a group may also be given whole (an instance or a dict)."""

    budget: BudgetSettings = _group(BudgetSettings, "how long the search runs")
    search: SearchSettings = _group(SearchSettings, "how trials are proposed, stopped early and compared")
    data: DataSettings = _group(DataSettings, "how the data is read and split (--data names it)")
    final: FinalSettings = _group(FinalSettings, "after the search: retraining the winner, the ensemble")
    limits: LimitsSettings = _group(LimitsSettings, "candidates beyond a limit are never trained")
    cluster: ClusterSettings = _group(ClusterSettings, "where trials run and what each takes")
    tracking: TrackingSettings = _group(TrackingSettings, "where the run is recorded and how it is shown")

    def __post_init__(self) -> None:
        for name, cls in self.groups().items():  # a group given as a dict (from YAML, say)
            value = getattr(self, name)
            if not isinstance(value, cls):
                object.__setattr__(self, name, _build(cls, name, _mapping(value, name)))

    @classmethod
    def groups(cls) -> dict[str, type[Any]]:
        """Group name -> its settings class, in the order ``--help`` shows them."""
        return {f.name: f.default_factory for f in fields(cls)}  # type: ignore[misc]

    @classmethod
    def about(cls, group: str) -> str:
        """The group's one-line description."""
        return str(next(f for f in fields(cls) if f.name == group).metadata[GROUP])

    @classmethod
    def from_settings(cls, **settings: Any) -> SearchConfig:
        """A config from flat settings (``trials=6, time_budget="10m"``), as the Python API and
        the command line give them; a group may be given whole too (``budget=BudgetSettings(...)``
        or a dict). Text is parsed as on the command line; an unknown name is a one-line error."""
        flat: dict[str, dict[str, Any]] = {name: {} for name in GROUP_OF.values()}
        whole: dict[str, Any] = {}
        for key, value in settings.items():
            if key in flat:
                whole[key] = value
            elif key in GROUP_OF:
                flat[GROUP_OF[key]][key] = value
            else:
                raise UserInputError(f"unknown setting {key!r}; the settings are: {', '.join(GROUP_OF)}")
        groups: dict[str, Any] = {}
        for name, cls_ in cls.groups().items():
            base: Any = whole.get(name)
            if isinstance(base, cls_):
                groups[name] = dataclasses.replace(base, **flat[name]) if flat[name] else base
            elif base is not None or flat[name]:
                groups[name] = _build(cls_, name, {**_mapping(base or {}, name), **flat[name]})
        return cls(**groups)

    @classmethod
    def from_cli(cls, args: argparse.Namespace) -> SearchConfig:
        """The settings ``automl-cnn search`` parsed (its options are built from the groups' fields)."""
        parsed = vars(args)
        return cls.from_settings(**{k: v for g in cls.groups().values() for k, v in cli_values(g, parsed).items()})

    def settings(self) -> dict[str, Any]:
        """Every setting by its own name, the groups flattened: ``{"time_budget": 600.0, ...}``."""
        return {f.name: getattr(group, f.name) for group in self._group_values() for f in fields(group)}

    def _group_values(self) -> list[Any]:
        return [getattr(self, name) for name in self.groups()]

    def to_dict(self) -> dict[str, Any]:
        """Every setting as JSON values, by group (tuples as lists, paths as text);
        :meth:`from_dict` reads it back equal."""
        out: dict[str, Any] = to_jsonable(self)
        return out

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> SearchConfig:
        """A config from :meth:`to_dict`'s output, or from an older ``run.json``'s, whose
        settings were flat (``{"trials": 5, ...}``). Unknown keys are ignored; missing ones take
        their defaults; the settings are checked as in the constructor."""
        flat = flat_settings(record)
        groups: dict[str, Any] = {
            name: from_jsonable(cls_, {f.name: flat[f.name] for f in fields(cls_) if f.name in flat})
            for name, cls_ in cls.groups().items()
        }
        return cls(**groups)

    def data_options(self) -> DataOptions:
        return self.data.options()

    @property
    def multi_objective(self) -> bool:
        return len(self.search.objectives) > 1

    def pick_rule(self) -> Any:
        from automl_cnn.engine.objectives import PickRule

        return PickRule.parse(self.search.pick, self.search.objectives)

    def ensemble_size(self) -> int:
        """The most distinct members an ensemble may have (1: no ensemble)."""
        if self.final.ensemble == "off" or self.multi_objective:  # several objectives: the pick rule decides
            return 1
        return AUTO_ENSEMBLE if self.final.ensemble == "auto" else int(self.final.ensemble)

    def budget_seconds(self) -> float | None:
        """The time budget; without any budget a search runs 10 minutes."""
        if self.budget.time_budget is None and self.budget.trials is None:
            return 600.0
        return self.budget.time_budget

    def resolved_tracking_uri(self) -> str:
        from automl_cnn.services.tracking import default_tracking_uri

        return self.tracking.tracking_uri or default_tracking_uri()

    def out_dir(self, data_name: str) -> Path:
        if self.tracking.out is not None:
            return Path(self.tracking.out).expanduser().resolve()
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
        if self.tracking.model_name:
            return self.tracking.model_name
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", data_name).strip("-") or "data"
        return f"automl-cnn-{safe}-{'x'.join(map(str, input_shape))}-{fingerprint[:8]}"

    def default_workers(self, cluster_cpus: float, cluster_gpus: float) -> int:
        if self.cluster.workers:
            return self.cluster.workers
        if cluster_gpus >= 1 and (self.cluster.gpus_per_trial or 1) > 0:
            return max(1, int(cluster_gpus / (self.cluster.gpus_per_trial or 1)))
        return max(1, int(cluster_cpus / self.cluster.cpus_per_trial))

    def to_record(self) -> dict[str, Any]:
        """:meth:`to_dict` with every password masked (``postgresql://user:***@host/db``, the
        storage's and the tracking URI's alike): what ``run.json`` and MLflow keep. A resume asks
        for a masked password again."""
        from automl_cnn.services.credentials import mask_password

        def masked(value: Any) -> Any:
            if isinstance(value, str):
                return mask_password(value)
            if isinstance(value, dict):
                return {k: masked(v) for k, v in value.items()}
            return [masked(v) for v in value] if isinstance(value, list) else value

        record: dict[str, Any] = masked(self.to_dict())
        return record

    def to_params(self) -> dict[str, Any]:
        """:meth:`to_record` flattened for MLflow params: every value a JSON scalar (a sequence
        joined as text: ``0.7/0.15/0.15``, ``32x32``, ``accuracy,params``, ``none`` when empty),
        passwords masked, the live display and the enqueued trials left out. The keys are the
        settings' own names (``time_budget``), not their groups'."""
        flat = flat_settings(self.to_record())
        params = {k: v for k, v in flat.items() if k not in ("progress", "enqueue")}
        for key, value in params.items():
            if isinstance(value, list):
                text = (f"{v:g}" if isinstance(v, float) else str(v) for v in value)
                params[key] = _JOINERS.get(key, ",").join(text) or "none"
        return params


GROUP_OF: dict[str, str] = {  # setting -> its group: every setting's name is unique across the groups
    f.name: name for name, cls in SearchConfig.groups().items() for f in fields(cls)
}


def flat_settings(data: Mapping[str, Any]) -> dict[str, Any]:
    """A config's JSON form, by group or flat (an older ``run.json``), as flat settings:
    ``{"budget": {"trials": 5}}`` and ``{"trials": 5}`` both give ``{"trials": 5}``."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key in SearchConfig.groups() and isinstance(value, Mapping):
            flat.update(value)
        else:
            flat[key] = value
    return flat


def _mapping(value: Any, group: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise UserInputError(f"settings group {group!r} must be a dict of settings or its settings class")
    return value


def _build(cls: type, group: str, values: Mapping[str, Any]) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UserInputError(f"unknown {group} setting {unknown[0]!r}; the {group} settings are: {', '.join(known)}")
    return cls(**values)
