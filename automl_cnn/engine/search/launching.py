"""Opening trials for the driver (with their shares of the data ladder), and keeping the best
trials' weights, at a cost that does not grow with the number of concurrent workers or of trials.

A launch costs the driver a few hundred milliseconds (sampling, the gate, opening the MLflow run);
deciding after an epoch a few tens. Filling 256 free slots in one go would leave every result
that comes in meanwhile waiting for the whole burst, its worker idle: the driver launches at
most :data:`LAUNCHES_PER_PASS` trial, then handles every result that is ready (the cheaper way
to keep a worker busy), then launches the next. The cap is a count, not a time, so that what the
study has been told before each ``ask`` does not depend on the machine's speed (with one worker,
nothing changes: a launch only ever waits for a free slot).
"""

from __future__ import annotations

import bisect
import math

import optuna

from automl_cnn.engine.fidelity import fitted_plan, restored_plan
from automl_cnn.engine.outcome import Outcome, TrialAttrs
from automl_cnn.engine.records import TrialRecord, trial_seed
from automl_cnn.engine.runstate import RunState
from automl_cnn.engine.search.running import RunningTrial
from automl_cnn.engine.session import SearchSession
from automl_cnn.services.study_cache import params_written_together
from automl_cnn.space.sampling import sample_candidate

LAUNCHES_PER_PASS = 1  # trials launched before the driver handles the results ready


def open_trial(session: SearchSession, trial: optuna.Trial) -> RunningTrial:
    """Sample the trial's candidate (recorded in the study at once) and open its MLflow run."""
    number = trial.number
    with params_written_together(session.study):  # one write, not one per suggestion
        candidate = sample_candidate(trial, session.space)
    enqueued = TrialAttrs.read(trial)
    preset = enqueued.preset  # an enqueued warm-start design's name
    continues = enqueued.continues  # resume --more: it goes on from that trial's checkpoint, with its seed
    seed = trial_seed(session.config.search.seed, number)
    if continues is not None and enqueued.seed is not None:
        seed = int(enqueued.seed)
    # at once: a driver killed from here on leaves a trial that a resume can record
    key = candidate.key()
    TrialAttrs(seed=seed, candidate=candidate.to_json(), candidate_key=key, preset=preset, continues=continues).write(
        trial
    )
    tags = {"automl_cnn.trial": str(number), "automl_cnn.outcome": Outcome.RUNNING}
    if preset:
        tags["automl_cnn.preset"] = str(preset)
    if continues is not None:
        tags["automl_cnn.continues_trial"] = str(continues)
    name = f"trial-{number}" + (f" ({preset})" if preset else "")
    name += f" (continues trial {continues})" if continues is not None else ""
    run_id = session.tracker.start_run(name, {**candidate.flat_params(), "seed": seed}, tags, parent=session.parent_run)
    session.tracker.log_dataset(run_id, session.bundle)
    run = RunningTrial(TrialRecord(number, seed, run_id, candidate, preset=preset, continues=continues))
    restore_ladder(session, run)
    return run  # the driver records its run in the study with what the gate finds (one write)


def restore_ladder(session: SearchSession, run: RunningTrial) -> None:
    """A trial's shares of the data on the ladder (a new trial, or one a resume continues)."""
    ladder = session.data_ladder
    if ladder is not None:
        run.update(fractions=tuple(restored_plan(ladder, run.record)), eval_share=session.eval_share)


def fit_ladder(session: SearchSession, run: RunningTrial) -> TrialRecord:
    """At a stage of the data ladder: lower the trial's share to what its time allows."""
    rec, ladder, limit = run.record, session.data_ladder, session.budget.trial_cap
    fitted = fitted_plan(ladder, rec, limit) if ladder is not None and limit is not None else None
    if fitted is None:
        return rec
    whole = rec.projected_seconds() or 0.0
    plan, cap = fitted
    rec = run.update(fractions=tuple(plan))
    session.tracker.set_tags(rec.run_id, {"automl_cnn.data_cap": f"{cap:.4g}"})
    session.progress.message(
        f"{rec.job}: trains on {cap:.0%} of the data from epoch {len(rec.history) + 1}: the ladder's larger "
        f"shares would take {whole:.0f} s, over the {limit:.0f} s a trial may take"
    )
    return rec


class KeptWeights:
    """The completed trials whose weights the run folder keeps: the best ``size`` by validation
    accuracy (ties: the later trial). Each completion costs one insertion and at most one file
    deleted, not a scan of every record and every stored file."""

    def __init__(self, state: RunState, records: list[TrialRecord], size: int) -> None:
        self.state, self.size = state, size
        scored = [(r.val_acc or 0.0, r.number) for r in records if r.outcome == Outcome.COMPLETED and r.history]
        self._best = sorted(scored)[-size:] if size > 0 else []  # ascending: the first is the next out
        self._tidied = False  # files an earlier driver left are removed at the first completion

    @property
    def numbers(self) -> set[int]:
        return {number for _acc, number in self._best}

    def add(self, number: int, val_acc: float) -> None:
        """Trial ``number`` completed with ``val_acc``, its weights just saved: keep them while it
        is among the best, and delete the weights of the trial it pushes out. A trial paused at
        the learned ceiling and completed later is added again: its new score replaces the old."""
        score = val_acc if math.isfinite(val_acc) else -math.inf
        self._best = [kept for kept in self._best if kept[1] != number]
        bisect.insort(self._best, (score, number))
        dropped = self._best.pop(0) if len(self._best) > self.size else None
        if not self._tidied:
            self.state.keep_trial_weights(self.numbers)
            self._tidied = True
        elif dropped is not None:
            self.state.drop_trial_weights(dropped[1])
