"""``--warm-start FOLDER``: reuse an earlier search's results on the same data.

The earlier study's finished trials are added to the new study (where the new space can
express them, with the new space's distributions), so the sampler starts from what was learnt,
and their results are known to the driver, so a candidate trained before is not trained again.
Results on other data are refused: the earlier search's data fingerprint must match.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from automl_cnn.engine.imbalance import preset_loss
from automl_cnn.engine.outcome import Outcome, TrialAttrs, study_history
from automl_cnn.engine.runstate import RUN_FILE
from automl_cnn.engine.search.dedupe import Known, KnownResult
from automl_cnn.engine.session import SearchSession
from automl_cnn.errors import UserInputError
from automl_cnn.metrics import label, resolve
from automl_cnn.services.study import STUDY_FILE, journal_storage
from automl_cnn.space.presets import GROUPS, PRESETS, warm_start_params
from automl_cnn.space.sampling import sample_candidate
from automl_cnn.space.schema import SearchSpace

log = logging.getLogger("automl_cnn")


class _Recorder:
    """Replays fixed params through the sampling code, recording the distributions asked for."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params
        self.distributions: dict[str, BaseDistribution] = {}

    def _take(self, name: str, dist: BaseDistribution) -> Any:
        self.distributions[name] = dist
        if name not in self.params:
            raise KeyError(name)
        return self.params[name]

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        return self._take(name, optuna.distributions.CategoricalDistribution(list(choices)))

    def suggest_int(self, name: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        return int(self._take(name, optuna.distributions.IntDistribution(low, high, log=log, step=step)))

    def suggest_float(self, name: str, low: float, high: float, step: float | None = None, log: bool = False) -> float:
        return float(self._take(name, optuna.distributions.FloatDistribution(low, high, log=log, step=step)))


def distributions_in(space: SearchSpace, params: dict[str, Any]) -> dict[str, BaseDistribution] | None:
    """The new space's distributions for exactly these params, or None if it cannot express them."""
    rec = _Recorder(params)
    try:
        sample_candidate(rec, space)  # type: ignore[arg-type]
    except KeyError:
        return None
    if set(rec.distributions) != set(params):
        return None
    for name, dist in rec.distributions.items():
        try:
            if not dist._contains(dist.to_internal_repr(params[name])):
                return None
        except (ValueError, TypeError):
            return None
    return rec.distributions


def load_study(folder: Path) -> optuna.Study:

    path = folder / STUDY_FILE
    if not path.is_file():
        raise UserInputError(f"{folder}: no {STUDY_FILE} here; give the output folder of an earlier search")
    storage = journal_storage(path)
    names = optuna.get_all_study_names(storage)
    if not names:
        raise UserInputError(f"{path}: the journal holds no study; give the output folder of an earlier search")
    return optuna.load_study(study_name=names[-1], storage=storage)


def _values(trial: FrozenTrial, objectives: tuple[str, ...]) -> tuple[float, ...] | None:
    """The earlier trial's values for this search's objectives (None if any is unknown)."""
    if trial.state != TrialState.COMPLETE or not trial.values:
        return None
    attrs = TrialAttrs.read(trial)
    static = {"params": attrs.params, "flops": attrs.flops, "latency": attrs.latency_ms}
    out = [float(trial.values[0]) if name == "accuracy" else static[name] for name in objectives]
    if any(v is None for v in out):
        return None
    return tuple(float(v) for v in out if v is not None)


def check_compatible(folder: Path, fingerprint: str, split: str, metric: str, train_counts: Sequence[int]) -> Path:
    """Refuse an earlier search on other data or another split, or one that scored its trials by
    another metric than ``metric`` (this search's, resolved on the same data: ``train_counts``
    per class): its scores would not compare."""
    folder = folder.expanduser().resolve()
    run_file = folder / RUN_FILE
    if not run_file.is_file() or not (folder / STUDY_FILE).is_file():
        raise UserInputError(f"--warm-start {folder}: not the output folder of an earlier automl-cnn search")
    earlier = json.loads(run_file.read_text(encoding="utf-8"))
    their_split = earlier.get("extra", {}).get("split")
    if earlier.get("fingerprint") != fingerprint or their_split != split:
        raise UserInputError(
            f"{folder} searched other data or another split (data {earlier.get('fingerprint')}, split "
            f"{their_split}; here data {fingerprint}, split {split}); a warm start reuses results on the same "
            "data and split only (same --seed and --split)"
        )
    asked = earlier.get("config", {}).get("search", {}).get("metric", "auto")  # a run from before --metric: auto
    theirs = resolve(asked, train_counts)[0]  # the same data and split: the same counts
    if theirs != metric:
        raise UserInputError(
            f"{folder} scored its trials by {label(theirs)} and this search scores by {label(metric)}; a warm start "
            f"reuses scores of the same metric only (pass --metric {theirs}, or start without --warm-start)"
        )
    return folder


def apply_warm_starts(session: SearchSession, known: Known) -> None:
    """Enqueue the ``enqueue`` setting's params (Python API) and the presets (they run first), and add earlier searches'
    results to the study and to ``known``."""
    cfg, study = session.config, session.study
    for params in cfg.search.enqueue:
        study.enqueue_trial(dict(params), skip_if_exists=True)
    presets = [n for n in cfg.search.warm_start if n in GROUPS or n in PRESETS]
    # under macro F1 the presets weight their loss by class where the space searches it (under balanced
    # accuracy their plain loss is corrected post hoc): on a short budget they may be the only trials
    # that complete (engine/imbalance.py)
    corrected = preset_loss(session.space, session.metric[0])
    for preset, params in warm_start_params(presets, session.space):
        params = {**params, **corrected}
        study.enqueue_trial(params, user_attrs={"preset": preset}, skip_if_exists=True)
    for name in cfg.search.warm_start:
        if name not in presets:
            added, reused = warm_start_from(session, Path(name), known)
            session.progress.message(
                f"warm start from {name}: {added} trials told to the sampler, {reused} results reusable"
            )


def warm_start_from(session: SearchSession, folder: Path, known: Known) -> tuple[int, int]:
    """Add the earlier search's trials to the study and its results to ``known``.

    Returns (trials added to the study, results known for repeats).
    """
    counts = session.bundle.counts()["train"]
    folder = check_compatible(folder, session.bundle.fingerprint(), session.split_id, session.metric[0], counts)
    objectives = session.objectives
    added = reused = 0
    for t in load_study(folder).get_trials(deepcopy=False):
        attrs = TrialAttrs.read(t)
        candidate = attrs.get_candidate()
        if not Outcome.of_state(t.state).finished or candidate is None:
            continue
        values = _values(t, objectives)
        known.results.setdefault(candidate.key(), _known_result(t, attrs, values, folder))
        reused += 1
        if t.state == TrialState.FAIL or (t.state == TrialState.COMPLETE and values is None):
            continue
        dists = distributions_in(session.space, dict(t.params))
        if dists is None:
            continue
        session.study.add_trial(
            optuna.trial.create_trial(
                state=t.state,
                params=dict(t.params),
                distributions=dists,
                values=list(values) if values is not None else None,
                intermediate_values=dict(t.intermediate_values) if len(objectives) == 1 else None,
                user_attrs={**t.user_attrs, "warm_start_from": str(folder)},
                system_attrs={k: v for k, v in t.system_attrs.items() if k.startswith("constraints")},
            )
        )
        added += 1
    log.info("warm start from %s: %d trials added to the study, %d results reusable", folder, added, reused)
    return added, reused


def _known_result(trial: FrozenTrial, attrs: TrialAttrs, values: tuple[float, ...] | None, folder: Path) -> KnownResult:
    return KnownResult(
        number=trial.number,
        outcome=Outcome.of_state(trial.state),
        reason=attrs.reason or "",
        values=values,
        intermediate=dict(trial.intermediate_values),
        constraints=dict(trial.constraints),
        history=study_history(trial),
        latency_ms=attrs.latency_ms,
        source=str(folder),
    )
