"""A study read from memory by the one driver that writes it, and a trial's suggestions written
together.

Optuna wraps an ``RDBStorage`` in its ``_CachedStorage``, which keeps finished trials in memory
but reads every unfinished trial back from the database on each ``get_all_trials`` (the sampler
at each ``ask``, the pruner at each ``should_prune``) and on each ``get_trial``: with 256 trials
running, every decision after an epoch read 256 trials over the network. A search's study has
one writer, the driver that holds the run folder (a second driver on the same folder is refused),
so :class:`SoleWriterStorage` keeps unfinished trials in memory too: each write goes to the
database first, as before (nothing is deferred, so a killed driver loses nothing), then to the
cached trial; reads ask the database only for trials it has not seen (those of an earlier
driver, read once when the study is loaded).

Sampling a candidate makes ~20 suggestions, each one write (a transaction on PostgreSQL, an
fsync of the journal file). Inside :func:`params_written_together` they go to the trial at once
(the sampler reads the trial, not the storage) and to the storage together when sampling ends.

Both build on Optuna's private storage classes, so ``pyproject.toml`` pins Optuna's minor version
(5.1); a newer minor is admitted once ``tests/test_study_cache.py`` passes on it.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Sequence
from typing import Any

import optuna
from optuna import distributions
from optuna._typing import JSONSerializable
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages._cached_storage import _CachedStorage, _StudyInfo
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import FrozenTrial, TrialState


class SoleWriterStorage(_CachedStorage):
    """``_CachedStorage`` that also serves unfinished trials from memory (see the module)."""

    def __init__(self, backend: RDBStorage) -> None:
        super().__init__(backend)
        self._newest: dict[int, int] = {}  # per study: the newest trial id seen
        self._loaded: set[int] = set()  # studies read once: every later trial was created here
        self._deferred: list[tuple[int, str, float, distributions.BaseDistribution]] | None = None

    def _cached(self, trial_id: int) -> FrozenTrial | None:
        known = self._trial_id_to_study_id_and_number.get(trial_id)
        if known is None:
            return None
        study_id, number = known
        return self._studies[study_id].trials.get(number)

    def _replace(self, trial: FrozenTrial) -> None:
        study_id, number = self._trial_id_to_study_id_and_number[trial._trial_id]
        self._studies[study_id].trials[number] = trial

    def _get_cached_trial(self, trial_id: int) -> FrozenTrial | None:
        return self._cached(trial_id)

    def _read_trials_from_remote_storage(self, study_id: int) -> None:
        """The study's trials, read once: every later change is written through this storage."""
        with self._lock:
            if study_id not in self._studies:
                self._studies[study_id] = _StudyInfo()
            if study_id in self._loaded:
                return
            newest = self._newest.get(study_id, -1)
            trials = self._backend._get_trials(
                study_id, states=None, included_trial_ids=set(), trial_id_greater_than=newest
            )
            if trials:
                self._add_trials_to_cache(study_id, trials)
            self._loaded.add(study_id)

    def _add_trials_to_cache(self, study_id: int, trials: list[FrozenTrial]) -> None:
        super()._add_trials_to_cache(study_id, trials)
        self._newest[study_id] = max(self._newest.get(study_id, -1), *(t._trial_id for t in trials))

    def _update(self, trial_id: int, **changes: Any) -> None:
        with self._lock:
            cached = self._cached(trial_id)
            if cached is None:
                return
            trial = copy.copy(cached)  # callers may hold the old object (get_all_trials without deepcopy)
            for name, value in changes.items():
                setattr(trial, name, value)
            self._replace(trial)

    @contextlib.contextmanager
    def deferring_params(self) -> Iterator[None]:
        """Suggestions made inside are written together on leaving, in one transaction (one
        commit, not one per parameter); the trial and the sampler see them at once."""
        self._deferred = []
        try:
            yield
        finally:
            queued, self._deferred = self._deferred, None
            if queued:
                self._write_params(queued)

    def _write_params(self, queued: list[tuple[int, str, float, distributions.BaseDistribution]]) -> None:
        with self._lock, _create_scoped_session(self._backend.scoped_session, True) as session:
            for trial_id, name, value, distribution in queued:
                study_id, _ = self._trial_id_to_study_id_and_number[trial_id]
                known = self._studies[study_id].param_distribution
                self._backend._set_trial_param_without_commit(
                    session, trial_id, name, value, distribution, known.get(name)
                )
                known.setdefault(name, distribution)

    def set_trial_param(
        self,
        trial_id: int,
        param_name: str,
        param_value_internal: float,
        distribution: distributions.BaseDistribution,
    ) -> None:
        if self._deferred is not None:
            self._deferred.append((trial_id, param_name, param_value_internal, distribution))
        else:
            super().set_trial_param(trial_id, param_name, param_value_internal, distribution)
        cached = self._cached(trial_id)
        if cached is not None:
            value = distribution.to_external_repr(param_value_internal)
            self._update(
                trial_id,
                params={**cached.params, param_name: value},
                distributions={**cached.distributions, param_name: distribution},
            )

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        super().set_trial_user_attr(trial_id, key, value)
        cached = self._cached(trial_id)
        if cached is not None:
            self._update(trial_id, user_attrs={**cached.user_attrs, key: value})

    def set_trial_system_attr(self, trial_id: int, key: str, value: JSONSerializable) -> None:
        super().set_trial_system_attr(trial_id, key, value)
        cached = self._cached(trial_id)
        if cached is not None:
            self._update(trial_id, system_attrs={**cached.system_attrs, key: value})

    def set_trial_intermediate_value(self, trial_id: int, step: int, intermediate_value: float) -> None:
        super().set_trial_intermediate_value(trial_id, step, intermediate_value)
        cached = self._cached(trial_id)
        if cached is not None:
            self._update(trial_id, intermediate_values={**cached.intermediate_values, step: intermediate_value})

    def set_trial_state_values(self, trial_id: int, state: TrialState, values: Sequence[float] | None = None) -> bool:
        """The state as the database has it (with its times): the trial is read back once."""
        changed = super().set_trial_state_values(trial_id, state, values)
        fresh = self._backend.get_trial(trial_id)
        with self._lock:
            if self._cached(trial_id) is not None:
                self._replace(fresh)
        return changed


class BatchingJournalStorage(JournalStorage):
    """A journal whose suggestions for one trial are appended together (one fsync of the file,
    not one per parameter): :meth:`deferring_params`."""

    def __init__(self, backend: Any) -> None:
        super().__init__(backend)
        self._buffer: list[dict[str, Any]] | None = None

    def _write_log(self, op_code: int, extra_fields: dict[str, Any]) -> None:
        if self._buffer is None:
            super()._write_log(op_code, extra_fields)
        else:
            self._buffer.append({"op_code": op_code, "worker_id": self._replay_result.worker_id, **extra_fields})

    @contextlib.contextmanager
    def deferring_params(self) -> Iterator[None]:
        self._buffer = []
        try:
            yield
        finally:
            buffer, self._buffer = self._buffer, None
            if buffer:
                with self._thread_lock:
                    self._backend.append_logs(buffer)
                    self._sync_with_backend()


@contextlib.contextmanager
def params_written_together(study: optuna.Study) -> Iterator[None]:
    """Inside, a trial's suggestions are written to the study's storage in one go where it can
    (this module's storages); a driver killed inside leaves the trial without parameters, as one
    killed before its first suggestion did (a trial never sampled)."""
    deferring = getattr(study._storage, "deferring_params", None)
    with deferring() if deferring is not None else contextlib.nullcontext():
        yield
