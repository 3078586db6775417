"""The driver's database study served from memory (services/study_cache.py): what it reads back
equals what a fresh process loads from the database, and running trials are not read again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.storages import RDBStorage
from optuna.storages._cached_storage import _CachedStorage
from optuna.trial import FrozenTrial, TrialState
from sessions import FAILURES, plan_for, session_for
from sqlalchemy import event

from automl_cnn.engine.search.driver import SearchDriver
from automl_cnn.services.study import make_storage
from automl_cnn.services.study_cache import SoleWriterStorage, params_written_together

GOOD = {"blocks": 1, "block1.pooling": "max", "train.learning_rate": 0.05}
IMPOSSIBLE = {"blocks": 4, **{f"block{i}.pooling": "max" for i in range(1, 5)}, "train.learning_rate": 0.05}


def _view(trial: FrozenTrial) -> tuple[Any, ...]:
    return (
        trial.number,
        trial.state,
        trial.values,
        trial.params,
        trial.distributions,
        trial.user_attrs,
        trial.system_attrs,
        trial.intermediate_values,
        trial.datetime_start,
        trial.datetime_complete,
    )


def test_the_drivers_cached_study_equals_the_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    plan = plan_for(tmp_path, FAILURES, trials=4, storage=url, enqueue=(IMPOSSIBLE, GOOD, GOOD))
    with session_for(plan) as s:
        assert isinstance(s.study._storage, SoleWriterStorage)
        SearchDriver(s, lambda _records: float("inf")).run()
        cached = s.study.get_trials(deepcopy=False)
    (name,) = optuna.get_all_study_names(url)
    fresh = optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)
    assert len(fresh) == 4 and {t.state for t in fresh} >= {TrialState.FAIL, TrialState.COMPLETE}
    assert [_view(t) for t in cached] == [_view(t) for t in fresh]


def _statements(storage: RDBStorage) -> list[str]:
    seen: list[str] = []
    event.listen(storage.engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
    return seen


def test_running_trials_are_read_from_memory(tmp_path: Path) -> None:
    """With trials running, the plain cache reads each of them back at every ``get_trials``."""
    counts = {}
    for kind in ("plain", "sole"):
        url = f"sqlite:///{tmp_path / kind}.db"
        storage = make_storage(url, tmp_path / "unused")
        if kind == "plain":
            storage = _CachedStorage(storage._backend)
        study = optuna.create_study(storage=storage, sampler=optuna.samplers.RandomSampler(seed=0))
        for step in range(6):
            trial = study.ask()
            trial.suggest_float("x", 0.0, 1.0)
            trial.set_user_attr("k", step)
            storage.set_trial_system_attr(trial._trial_id, "s", step)  # as the pruner's rung values
            trial.report(0.1 * step, 1)
        seen = _statements(storage._backend)
        views = [_view(t) for t in study.get_trials(deepcopy=False)]
        assert [v[1] for v in views] == [TrialState.RUNNING] * 6 and [v[5] for v in views] == [
            {"k": i} for i in range(6)
        ]
        counts[kind] = (len(seen), views)
    assert counts["sole"][0] < counts["plain"][0]
    assert [v[:8] for v in counts["sole"][1]] == [v[:8] for v in counts["plain"][1]]
    assert [v[6] for v in counts["sole"][1]] == [{"s": i} for i in range(6)]


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_a_trials_suggestions_are_written_together(tmp_path: Path, kind: str) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}" if kind == "sqlite" else None
    journal = tmp_path / "study.journal"
    study = optuna.create_study(storage=make_storage(url, journal), study_name="s")
    backend = study._storage._backend
    writes: list[str] = []
    if kind == "sqlite":
        event.listen(backend.engine, "commit", lambda _conn: writes.append("commit"))
    else:
        append = backend.append_logs
        backend.append_logs = lambda logs: (writes.append("append"), append(logs))[1]
    trial = study.ask()
    writes.clear()
    with params_written_together(study):
        values = {f"x{i}": trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(8)}
        values["n"] = trial.suggest_int("n", 1, 4)
        assert trial.params == values  # the trial sees them at once
    assert len(writes) == 1
    fresh = optuna.load_study(study_name="s", storage=url or make_storage(None, journal))
    assert fresh.trials[0].params == values and study.trials[0].params == values
