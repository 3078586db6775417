"""The learned training length in the search loop (``--epochs auto``): PASHA's ceiling
(:mod:`automl_cnn.engine.search.ceiling`) wired to the driver's trials.

* **Which trials.** Those whose sampled ``lr_schedule`` is in :data:`LEARNED` (``wsd``: a
  schedule that can be continued, scored on its weight average). Every other trial trains its
  own epochs exactly as with ``--epochs fixed``, and a space that cannot sample ``wsd`` gets
  today's search unchanged. ``constant`` can be continued too but is the schema's default when a
  space names no schedule: spaces written before the ceiling existed keep their lengths.
* **How long.** A learned trial trains to ``min(ceiling, cap)``; the cap is ``--max-epochs``
  when given (so a trial may train past its space's epochs: the space's number is a guess), else
  the trial's own epochs. Its record keeps the candidate as sampled (keys and repeats do not
  change); the job gets :func:`~automl_cnn.engine.search.ceiling.extended`'s.
* **Paused.** A trial that reaches the ceiling below its cap, and that the pruner and the cost
  guard let go on, is paused, not completed: its worker is released, its outputs and checkpoint
  are kept, its Optuna trial stays RUNNING and its MLflow run open. Then the ceiling decides; if it
  grew, the paused trials below the new ceiling wait to continue from their checkpoints (the
  driver submits them before any new trial).
* **The end.** When the search phase ends (time budget, ``--trials``, an exhausted space), each
  paused trial is completed with its last epoch's score: the final phase sees it as any
  completed trial, with kept outputs. A trial still being extended when the time budget stops it
  falls back to where it was paused (its outputs are that epoch's). An interruption (Ctrl-C)
  keeps them RUNNING, their MLflow runs closed as KILLED, for ``automl-cnn resume``; a resume
  restores the ceiling from ``run.json`` and pauses again a trial found at it.
* **Recorded.** ``run.json`` (``extra["training_length"]``) holds the ceiling and its decisions;
  :func:`length_line` is the summary's line saying which length the search settled on and why.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

from automl_cnn.engine.outcome import Ending, Outcome
from automl_cnn.engine.records import TrialRecord
from automl_cnn.engine.search.ceiling import Ceiling, CeilingDecision, Swap, curves_of, extended, start_ceiling
from automl_cnn.engine.search.launching import KeptWeights
from automl_cnn.engine.search.running import Running, RunningTrial
from automl_cnn.engine.session import SearchSession
from automl_cnn.model.architecture import Candidate
from automl_cnn.model.measures import EpochResult
from automl_cnn.training.schedules import EXTENDABLE

LEARNED = frozenset({"wsd"})  # schedules whose trials the ceiling governs under --epochs auto
STATE_KEY = "training_length"  # RunState.extra
KEPT_SWAPS = 3  # swaps of a decision written to run.json
KEPT_KEYS = ("extendable", "more", "continue")  # written by engine/search/extension.py, kept by _save


def space_schedules(session: SearchSession) -> tuple[str, ...]:
    return tuple(str(v) for v in session.space.training.lr_schedule.values())


def fixed_reason(session: SearchSession) -> str | None:
    """Why every trial trains its own epochs; None when the search learns the length."""
    if session.config.search.epochs == "fixed":
        return "--epochs fixed"
    schedules = space_schedules(session)
    if not LEARNED & set(schedules):
        why = "are not learned" if EXTENDABLE & set(schedules) else "cannot be extended"
        return f"the space's schedules ({', '.join(schedules)}) {why}; lr_schedule: wsd lets the search learn it"
    return None


def decision_to_json(decision: CeilingDecision) -> dict[str, Any]:
    d = asdict(decision)
    d["swaps"] = [[s.ahead_before, s.ahead_after] for s in decision.swaps[:KEPT_SWAPS]]
    d["rising"] = list(decision.rising)
    return d


def decision_from_json(saved: dict[str, Any]) -> CeilingDecision:
    swaps = tuple(Swap(int(a), int(b)) for a, b in saved.get("swaps", []))
    rising = tuple(int(t) for t in saved.get("rising", []))
    numbers = int(saved["ceiling"]), int(saved["previous"]), int(saved["trials"])
    unlearned = None if saved.get("unlearned") is None else float(saved["unlearned"])
    return CeilingDecision(*numbers, swaps, rising, bool(saved["at_cap"]), unlearned)


class TrainingLength:
    """The ceiling of one search and the trials paused at it."""

    def __init__(self, session: SearchSession) -> None:
        self.session = session
        self.max_epochs = session.config.budget.max_epochs
        self.fixed = fixed_reason(session)
        self.ceiling: Ceiling | None = None
        self.paused: dict[str, Running] = {}  # job -> a trial at the ceiling, in the order paused
        self.waiting: list[Running] = []  # paused trials to continue to a higher ceiling
        self.at_pause: dict[str, tuple[EpochResult, ...]] = {}  # job -> its history when last paused
        self._said = ""
        self._paused_before: dict[str, int] = {}  # job -> the epoch it last paused at, as run.json says
        if self.fixed is None:
            self.ceiling = self._restored() or self._started()
        self._save()

    def _started(self) -> Ceiling:
        cap = self.max_epochs or self.session.space.max_epochs()
        n_val, classes = len(self.session.bundle.val_idx), self.session.bundle.num_classes
        return Ceiling(start_ceiling(cap), cap=cap, n_val=n_val, classes=classes)

    def _restored(self) -> Ceiling | None:
        saved = self.session.state.extra.get(STATE_KEY) or {}
        if "ceiling" not in saved:
            return None
        decisions = [decision_from_json(d) for d in saved.get("decisions", [])]
        self._paused_before = {str(job): int(epochs) for job, epochs in saved.get("paused_at", {}).items()}
        n_val, classes = len(self.session.bundle.val_idx), self.session.bundle.num_classes
        return Ceiling(int(saved["ceiling"]), int(saved["cap"]), n_val, classes=classes, decisions=decisions)

    def _save(self) -> None:
        state = self.session.state
        earlier = state.extra.get(STATE_KEY) or {}
        kept = {k: earlier[k] for k in KEPT_KEYS if k in earlier}  # resume --more's (engine/search/extension.py)
        if self.ceiling is None:
            record: dict[str, Any] = {"mode": "fixed", "why": self.fixed}
        else:
            ceiling, decisions = self.ceiling, [decision_to_json(d) for d in self.ceiling.decisions]
            record = {"mode": "learned", "ceiling": ceiling.ceiling, "cap": ceiling.cap, "decisions": decisions}
            record["paused_at"] = {**self._paused_before, **{job: len(h) for job, h in self.at_pause.items()}}
        state.extra = {**state.extra, STATE_KEY: {**record, **kept}}

    # -- a trial's length ----------------------------------------------------------------------
    def learns(self, rec: TrialRecord) -> bool:
        return self.ceiling is not None and rec.candidate.training.lr_schedule in LEARNED

    def cap(self, rec: TrialRecord) -> int:
        return self.max_epochs or rec.epochs

    def target(self, rec: TrialRecord) -> int:
        """The epochs ``rec``'s job trains to."""
        if self.ceiling is None or not self.learns(rec):
            return rec.epochs
        return min(self.ceiling.ceiling, self.cap(rec))

    def job_candidate(self, rec: TrialRecord) -> Candidate:
        """The candidate sent to the worker: the record's, to the current ceiling if it learns."""
        return extended(rec.candidate, self.target(rec)) if self.learns(rec) else rec.candidate

    def as_trained(self, rec: TrialRecord) -> TrialRecord:
        """``rec`` with the epochs its job trains to (for the cost guard's next rung)."""
        return dataclasses.replace(rec, candidate=self.job_candidate(rec)) if self.learns(rec) else rec

    def pauses(self, rec: TrialRecord) -> bool:
        """``rec``'s job is done below its cap: it pauses rather than completes (and continues at
        once if the ceiling grew while it trained)."""
        return self.learns(rec) and len(rec.history) < self.cap(rec)

    def at_ceiling(self, rec: TrialRecord) -> bool:
        """``rec`` has trained to the current ceiling, below its cap (a trial found on resume)."""
        return self.pauses(rec) and len(rec.history) >= self.target(rec)

    # -- pausing and continuing ----------------------------------------------------------------
    def pause(self, running: Running, records: Iterable[TrialRecord]) -> None:
        """Park a trial at the ceiling (its worker released), then let the ceiling decide."""
        run = running[0]
        self.session.executor.release(run.job)
        self.at_pause[run.job] = run.record.history
        self._save()
        if self.target(run.record) > len(run.record.history):  # the ceiling grew while it trained
            self.waiting.append(running)
            return
        self.paused[run.job] = running
        done = len(run.record.history)
        self.session.progress.trial_running(run.job, f"paused at epoch {done}, the learned ceiling")
        self.decide(records)

    def decide(self, records: Iterable[TrialRecord]) -> CeilingDecision | None:
        """Grow or hold the ceiling from the learned trials that reached it (paused or completed);
        when it grew, the paused trials below it wait to continue."""
        ceiling = self.ceiling
        if ceiling is None or ceiling.ceiling >= ceiling.cap:
            return None
        reached = [r for r in records if self.learns(r) and (r.outcome == Outcome.COMPLETED or r.job in self.paused)]
        decision = ceiling.decide(curves_of(reached))
        if decision is None:
            return None
        self._save()
        if decision.grew:
            self.session.state.save()  # before any trial continues: a resume finds the ceiling they train to
            go_on = [job for job, (run, _t) in self.paused.items() if self.target(run.record) > len(run.record.history)]
            self.waiting += [self.paused.pop(job) for job in go_on]
        said = decision.describe()
        if said != self._said:
            self.session.progress.message(f"training length: {said}")
            self._said = said
        return decision

    def resumed(self, running: Running, kept: KeptWeights, records: Iterable[TrialRecord]) -> bool:
        """A trial an earlier driver left RUNNING, its checkpoint's epochs restored: paused again
        when it is at the restored ceiling (True); one that driver was extending remembers where
        it paused (the time budget scores it there). Either keeps its outputs of that epoch."""
        rec = running[0].record
        if self.at_ceiling(rec):
            kept.add(rec.number, rec.history[-1].val_acc)
            self.pause(running, records)
            return True
        paused = self._paused_before.get(rec.job)
        if self.pauses(rec) and paused is not None and 0 < paused <= len(rec.history):
            kept.add(rec.number, rec.history[paused - 1].val_acc)
            self.at_pause[rec.job] = rec.history[:paused]
        return False

    def next_waiting(self) -> Running:
        """A paused trial to continue now from its checkpoint, to the new ceiling."""
        running = self.waiting.pop(0)
        rec = running[0].record
        self.session.progress.message(
            f"{rec.job}: continues from epoch {len(rec.history)} to {self.target(rec)} (the learned ceiling grew)"
        )
        return running

    def stopped(self, run: RunningTrial, why: str) -> Ending | None:
        """A trial being extended when the time budget stops it: completed where it was paused
        (its kept outputs are that epoch's); None for any other trial."""
        paused = self.at_pause.get(run.job)
        if paused is None or not self.learns(run.record):
            return None
        reached = len(run.record.history)
        run.update(history=paused)
        reason = f"{why} at epoch {reached} while extended; scored where it was paused, at epoch {len(paused)}"
        return Ending(Outcome.COMPLETED, reason)

    def end_paused(self) -> list[tuple[Running, Ending]]:
        """The search phase is over: every paused trial completes with its last epoch's score."""
        ended = []
        for running in [*self.paused.values(), *self.waiting]:
            rec = running[0].record
            reason = f"trained {len(rec.history)} of its {rec.epochs} epochs: the learned ceiling when the search ended"
            ended.append((running, Ending(Outcome.COMPLETED, reason)))
        self.paused.clear()
        self.waiting.clear()
        return ended

    def interrupt(self) -> None:
        """The search is interrupted: paused trials stay RUNNING in the study, for a resume; their
        MLflow runs are closed as KILLED, as a running trial's are."""
        tracker = self.session.tracker
        for run, _trial in [*self.paused.values(), *self.waiting]:
            tags = {"automl_cnn.outcome": Outcome.INTERRUPTED, "automl_cnn.reason": "search interrupted while paused"}
            tracker.set_tags(run.record.run_id, tags)
            tracker.end_run(run.record.run_id, Outcome.INTERRUPTED.run_status)
        self.paused.clear()
        self.waiting.clear()


def length_line(extra: dict[str, Any], epochs: int) -> str:
    """Which training length the search settled on, and why (``extra``: ``RunState.extra``;
    ``epochs``: the winner's own, shown for a fixed length)."""
    saved = extra.get(STATE_KEY)
    if not saved:
        return ""
    if saved.get("mode") != "learned":
        return f"fixed, {epochs} epochs: {saved.get('why') or 'each trial trains its own epochs'}"
    decisions = [decision_from_json(d) for d in saved.get("decisions", [])]
    ceiling, grown = int(saved["ceiling"]), saved.get("more") or []
    more = ""
    if grown:  # resume --more (engine/search/extension.py)
        names = ", ".join(str(n) for n in grown[-1]["trials"])
        more = f"; --more raised it from {grown[-1]['from']} to {grown[-1]['to']} epochs to extend trials {names}"
    if not decisions:
        nothing = "fewer than 2 trials on wsd reached it, nothing to compare"
        if grown:
            return f"learned, {ceiling} epochs: it started at {grown[0]['from']} ({nothing}){more}"
        return f"learned, {ceiling} epochs, where it started: {nothing}"
    return f"learned, {decisions[-1].describe()}{more}"
