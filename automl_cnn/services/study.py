"""Optuna's side: samplers, pruners and the study, chosen by name."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import optuna
from optuna.pruners import BasePruner
from optuna.samplers import BaseSampler
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from automl_cnn.options import Entry
from automl_cnn.services.credentials import mask_password as mask_password  # the one masking, re-exported
from automl_cnn.services.study_cache import BatchingJournalStorage, SoleWriterStorage

STUDY_FILE = "study.journal"  # the study's journal in a run folder


def _tpe(seed: int) -> BaseSampler:
    # group=True: the space is conditional (blocks beyond the sampled count do not exist);
    # constant_liar: trials still running count as bad, so parallel workers spread out.
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True, n_startup_trials=8)


def _cmaes(seed: int) -> BaseSampler:
    return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False, consider_pruned_trials=False)


def _gp(seed: int) -> BaseSampler:
    return optuna.samplers.GPSampler(seed=seed, warn_independent_sampling=False)


def _qmc(seed: int) -> BaseSampler:
    return optuna.samplers.QMCSampler(
        seed=seed, scramble=True, warn_independent_sampling=False, warn_asynchronous_seeding=False
    )


# name -> the sampler for a seed, and what it is: --sampler's choices and help come from here
SAMPLERS: dict[str, Entry[Callable[[int], BaseSampler]]] = {
    "tpe": Entry(_tpe, "multivariate TPE, learns from every finished trial"),
    "random": Entry(lambda seed: optuna.samplers.RandomSampler(seed=seed), "uniform random proposals"),
    "cmaes": Entry(_cmaes, "CMA-ES, one objective only"),
    "gp": Entry(_gp, "a Gaussian process, for small budgets"),
    "qmc": Entry(_qmc, "scrambled Sobol points, spread evenly over the space"),
}

# name -> the pruner for the most epochs a trial trains, and what it does (epochs are the resource)
PRUNERS: dict[str, Entry[Callable[[int], BasePruner]]] = {
    "asha": Entry(
        lambda max_epochs: optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3),
        "asynchronous successive halving: keeps the best third at each rung",
    ),
    "hyperband": Entry(
        lambda max_epochs: optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max_epochs, reduction_factor=3),
        "several successive-halving brackets",
    ),
    "median": Entry(
        lambda max_epochs: optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=1),
        "stops a trial below the median of earlier trials at the same epoch",
    ),
    "none": Entry(lambda max_epochs: optuna.pruners.NopPruner(), "every trial trains all its epochs"),
}


def make_sampler(name: str, seed: int) -> BaseSampler:
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}")
    return SAMPLERS[name].value(seed)


def make_pruner(name: str, max_epochs: int) -> BasePruner:
    """Early stopping on epochs as the resource."""
    if name not in PRUNERS:
        raise ValueError(f"unknown pruner {name!r}")
    return PRUNERS[name].value(max_epochs)


def make_storage(url: str | None, default_journal: Path) -> Any:
    """The study's storage: a journal file beside the run by default; an SQL database URL
    (``postgresql://...``, for a study shared across machines), a ``redis://`` journal, or a
    journal file path."""
    if not url:
        return journal_storage(default_journal)
    if url.startswith(("postgresql", "mysql", "sqlite:")):
        # read from memory by the one driver that writes it (services/study_cache.py)
        return SoleWriterStorage(optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True}))
    if url.startswith(("redis://", "rediss://")):
        from optuna.storages.journal import JournalRedisBackend

        return BatchingJournalStorage(JournalRedisBackend(url))
    return journal_storage(Path(url).expanduser())


def journal_storage(path: Path) -> JournalStorage:
    """A journal file: safe for several processes on one machine, and a record to resume from."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return BatchingJournalStorage(JournalFileBackend(str(path)))


def create_study(
    storage: JournalStorage | str | None,
    study_name: str,
    sampler: BaseSampler,
    pruner: BasePruner,
    objectives: dict[str, Literal["maximize", "minimize"]] | None = None,
) -> optuna.Study:
    """A study of ``objectives`` (metric name -> direction; default: maximise ``accuracy``);
    an existing study of that name in ``storage`` is loaded, to resume it."""
    objectives = objectives or {"accuracy": "maximize"}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        sampler=sampler,
        pruner=pruner if len(objectives) == 1 else optuna.pruners.NopPruner(),
        directions=list(objectives.values()),
        load_if_exists=True,
    )
    if study.metric_names is None:
        study.set_metric_names(list(objectives))
    return study
