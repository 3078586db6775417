"""After the search: pick the winner, retrain it on train + validation, score it once on test.

The winner is chosen on validation scores only. ``--final-repeats N`` retrains it with N
seeds (the test score is then reported as mean ± std, as when comparing models in a paper);
``--final-top-k K`` retrains the next best trials the same way, for a table of how much the
ranking holds on data the search never saw. The model delivered is the first seed's winner.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any

from automl_cnn.engine.final.start import CONTINUE_LR_SCALE, Start, continued, plan_starts
from automl_cnn.engine.objectives import OBJECTIVES, PickRule, pareto_front
from automl_cnn.engine.outcome import Outcome
from automl_cnn.engine.records import TrialRecord
from automl_cnn.engine.session import SearchSession
from automl_cnn.errors import AutoMLError
from automl_cnn.model.architecture import Candidate
from automl_cnn.model.measures import EpochResult
from automl_cnn.training.messages import JobResult, JobSpec, Outputs


def eligible(records: list[TrialRecord]) -> list[TrialRecord]:
    """Completed trials with a score; a repeat within this search stands behind its original."""
    return [
        r
        for r in records
        if r.outcome == "completed" and r.val_acc is not None and (r.duplicate_of is None or r.reused_from)
    ]


def front(records: list[TrialRecord], objectives: tuple[str, ...]) -> list[TrialRecord]:
    """The completed trials no other completed trial dominates on ``objectives``."""
    directions = [OBJECTIVES[o] for o in objectives]
    return pareto_front(eligible(records), lambda r: [r.objective(o) for o in objectives], directions)


def pick_winner(
    records: list[TrialRecord], objectives: tuple[str, ...] = ("accuracy",), rule: PickRule | None = None
) -> TrialRecord:
    """The trial to deliver: by ``rule`` among the Pareto front (several objectives), or the best
    final validation accuracy (fewer parameters break ties). When no trial completed (a budget
    too short for one), the best partly trained trial wins."""
    rule = rule or PickRule()
    completed = eligible(records)
    if completed:
        pool = front(records, objectives) if len(objectives) > 1 else completed
        if rule.objective == "accuracy":
            return max(pool, key=lambda r: (r.val_acc or 0.0, -(r.profile.params if r.profile else 0)))
        return rule.choose(pool, lambda r, o: r.objective(o))  # type: ignore[no-any-return]
    partial = [r for r in records if r.history and not r.too_slow] or [r for r in records if r.history]
    if partial:
        return max(partial, key=lambda r: (len(r.history), r.val_acc or 0.0))
    reasons = sorted({r.reason for r in records if r.reason})[:3]
    raise AutoMLError(
        f"no trial produced a result ({len(records)} tried; e.g. {'; '.join(reasons) or 'none started'}); "
        "widen the space or raise the budget"
    )


def runners_up(records: list[TrialRecord], winner: TrialRecord, count: int) -> list[TrialRecord]:
    """The next ``k`` completed trials by validation accuracy, after the winner."""
    others = [r for r in eligible(records) if r is not winner]
    return sorted(others, key=lambda r: -(r.val_acc or 0.0))[:count]


@dataclass
class FinalFit:
    trial: int
    seed: int
    weights: dict[str, Any]
    history: list[EpochResult]
    outputs: Outputs | None = None  # the check split's probabilities, and the weight average's
    start: str = ""  # where it started, for the verdict (--final-start continue): see engine/final/start.py


def with_epochs(candidate: Candidate, epochs: int | None) -> Candidate:
    """The candidate trained for ``epochs`` (its schedule stretched to them)."""
    if not epochs or epochs == candidate.training.epochs:
        return candidate
    return dataclasses.replace(candidate, training=dataclasses.replace(candidate.training, epochs=epochs))


MAX_RETRIES = 2  # restarts of a final fit whose worker died
SAVE_EVERY_SECONDS = 5.0


@dataclass(frozen=True)
class FitKind:
    """What the fits are for: the final fits, or second seeds of trials to tell them apart."""

    prefix: str  # job names: f"{prefix}-{k}"
    tag: str  # the MLflow tag marking their runs
    of_trial: str  # the MLflow tag naming the trial fitted
    second_seed: bool  # on the search's data (train, scored on all of validation), no weight average


FINAL = FitKind("final", "automl_cnn.final_fit", "automl_cnn.trial_of_final", False)
SECOND_SEED = FitKind("second-seed", "automl_cnn.second_seed", "automl_cnn.trial_of_second_seed", True)


def final_fit(
    session: SearchSession,
    jobs: list[tuple[TrialRecord, int]],
    epochs: dict[int, int] | None = None,
    kind: FitKind = FINAL,
) -> list[FinalFit]:
    """Train each (trial's candidate, seed) on train + the selection half of validation, for
    ``epochs[trial]`` epochs (default: the trial's), scored each epoch on the check half, in
    parallel where slots allow; results in the order of ``jobs``. With ``kind=SECOND_SEED`` the
    fits train as the trials did (train, scored on validation). On any failure or interruption
    no MLflow run stays RUNNING."""
    fits = FinalFits(session, jobs, epochs or {}, kind)
    try:
        return fits.run()
    except BaseException:
        fits.close_runs("KILLED")
        raise


class FinalFits:
    def __init__(
        self, session: SearchSession, jobs: list[tuple[TrialRecord, int]], epochs: dict[int, int], kind: FitKind
    ) -> None:
        self.session = session
        self.epochs, self.kind = epochs, kind
        self.what = "second seed" if kind.second_seed else "final fit"
        self.todo = [(f"{kind.prefix}-{k}", rec, seed) for k, (rec, seed) in enumerate(jobs)]
        self.threads = session.executor.threads_for(len(jobs))
        self.names = [name for name, _, _ in self.todo]
        self.info = {name: (rec, seed) for name, rec, seed in self.todo}
        self.starts: dict[str, Start] = plan_starts(session, [(n, rec) for n, rec, _ in self.todo], kind.second_seed)
        self.histories: dict[str, list[EpochResult]] = {name: [] for name in self.names}
        self.runs: dict[str, str] = {}  # job -> MLflow run still open
        self.done: dict[str, FinalFit] = {}
        self.pending_weights: set[str] = set()
        self.checkpoints: dict[str, tuple[int, bytes]] = {}  # job -> (epochs done, checkpoint) before its last
        self.retries: dict[str, int] = {name: 0 for name in self.names}
        self.started: set[int] = set()  # trials with a fit started (a further seed may be skipped)
        self.waiting: str | None = None  # what the executor waits for, as last shown
        self.phase = session.progress.phase

    def close_runs(self, status: str) -> None:
        for run_id in self.runs.values():
            self.session.tracker.end_run(run_id, status)
        self.runs.clear()

    def _start(self, job: str, rec: TrialRecord, seed: int) -> None:
        self.started.add(rec.number)
        finished = self.session.state.load_weights(job)  # an earlier driver of this run trained it
        start = self.starts[job]
        if finished is not None:
            self.done[job] = FinalFit(rec.number, seed, finished[0], finished[1], finished[2], start.note)
            self.session.progress.message(f"{job}: trained by an earlier driver of this run; its weights are reused")
            return
        saved = self.session.state.load_checkpoint(job)
        self.runs[job] = self.session.tracker.start_run(
            f"{job} (trial {rec.number})",
            {**self._recipe(job, rec).flat_params(), "seed": seed, "trial": rec.number},
            {self.kind.tag: "true", self.kind.of_trial: str(rec.number), **_start_tag(start)},
            parent=self.session.parent_run,
        )
        self.session.tracker.log_dataset(self.runs[job], self.session.bundle)
        if saved is not None:  # killed mid-fit before: continue from its last epoch
            blob, self.histories[job] = saved[0], list(saved[1])
            self.checkpoints[job] = (len(saved[1]), blob)
            self._submit(job, rec, seed, blob)
            done = len(saved[1])
            self.session.progress.message(f"{job}: resumed from epoch {done} (checkpoint of an earlier driver)")
            return
        self._submit(job, rec, seed)
        if start.note:
            self.session.progress.message(f"{job}: {self._said(start)}")
        self.session.progress.trial_running(job, f"{self.what} of trial {rec.number}: starting")

    def _candidate(self, rec: TrialRecord) -> Candidate:
        return with_epochs(rec.candidate, self.epochs.get(rec.number))

    def _recipe(self, job: str, rec: TrialRecord) -> Candidate:
        """What ``job`` trains: its trial's candidate, for the planned epochs, with the
        continuing recipe where it starts from the trial's weights."""
        candidate = self._candidate(rec)
        return continued(candidate) if self.starts[job].continued else candidate

    @staticmethod
    def _said(start: Start) -> str:
        if not start.continued:
            return start.note
        return f"{start.note}, at {CONTINUE_LR_SCALE:g}x its learning rate (a half-epoch warmup, then a cosine to zero)"

    def _submit(self, job: str, rec: TrialRecord, seed: int, checkpoint: bytes | None = None) -> None:
        # a trial that ran out of memory is refitted at the batch size it backed off to
        backoffs = rec.history[-1].oom_backoffs if rec.history else 0
        candidate = self._recipe(job, rec).to_dict()
        second = self.kind.second_seed
        data = self.session.search_data if second else self.session.refit_data
        init = self.starts[job].weights if checkpoint is None else None  # a checkpoint holds the weights
        spec = JobSpec(job, candidate, seed, data, checkpoint, True, self.threads, backoffs, average=not second)
        self.session.executor.submit(dataclasses.replace(spec, init_weights=init) if init is not None else spec)

    def _retry(self, job: str, rec: TrialRecord, seed: int) -> bool:
        """Restart a fit whose worker died, from its last checkpoint; False past the limit. A fit
        lost after its last epoch reruns that epoch (from the one before) to get its weights."""
        if self.retries[job] >= MAX_RETRIES:
            return False
        self.retries[job] += 1
        epochs, blob = self.checkpoints.get(job, (0, None))
        del self.histories[job][epochs:]
        self.pending_weights.discard(job)
        self.session.tracker.set_tags(self.runs[job], {"automl_cnn.retries": self.retries[job]})
        self._submit(job, rec, seed, blob)
        retry = f"retry {self.retries[job]}/{MAX_RETRIES}"
        self.session.progress.message(f"{job}: its worker died; {retry} from epoch {epochs}")
        return True

    def run(self) -> list[FinalFit]:
        executor = self.session.executor
        saved = time.monotonic()
        while self.todo or executor.jobs:
            while self.todo and executor.free > 0:
                job, rec, seed = self.todo.pop(0)
                if self._time_is_up() and rec.number in self.started:
                    self._skip(job, rec)
                else:
                    self._start(job, rec, seed)
            for result in executor.wait(timeout=0.5):
                self._on_result(result)
            self._show_waiting()
            self.session.progress.refresh()
            if time.monotonic() - saved > SAVE_EVERY_SECONDS:  # the budget spent, for a resume
                self.session.state.save()
                saved = time.monotonic()
        self.session.state.save()
        return [self.done[name] for name in self.names]

    def _time_is_up(self, next_epoch: float = 0.0, rec: TrialRecord | None = None) -> bool:
        """The time for ``rec``'s fit is spent, or would be before an epoch of ``next_epoch``
        seconds ends (without ``rec``: the whole budget is spent). A fit planned longer than its
        trial's epochs (spare time stretched it) stops before the export reserve, so that the run
        ends inside its budget when the fits run slower than planned; a fit at its trial's own
        epochs runs into the reserve, up to the whole budget (a fit that starts late, after a
        search phase that overran under load, would otherwise be cut after one epoch). Second
        seeds are never cut: a cut fit's score would not stand beside its trial's."""
        left = self.session.budget.left()
        if self.kind.second_seed or left is None:
            return False
        stretched = rec is not None and self._candidate(rec).training.epochs > rec.epochs
        return left <= next_epoch + (self.session.budget.export_reserve if stretched else 0.0)

    def _skip(self, job: str, rec: TrialRecord) -> None:
        """A further seed of a trial already fitted is not started once the time is spent."""
        self.names.remove(job)
        self.session.progress.message(
            f"{job}: not started: the time budget is spent, and trial {rec.number} is fitted with fewer seeds"
        )

    def _cut(self, job: str, rec: TrialRecord, epoch: EpochResult) -> None:
        """A fit still training whose next epoch would not end inside its time stops after this
        epoch; its weights are checked against the trial's own like any final fit's."""
        total = self._candidate(rec).training.epochs
        why = "the time budget is spent" if total <= rec.epochs else "the time left is kept for the export"
        self.session.tracker.set_tags(self.runs[job], {"automl_cnn.stopped_at_epoch": epoch.epoch})
        self.session.progress.message(
            f"{job}: stopped at epoch {epoch.epoch}/{total}: {why} (its weights are checked against the trial's own)"
        )

    def _show_waiting(self) -> None:
        """The panel says when the fit waits for a worker to start (a lost node, an autoscaler)."""
        waiting = self.session.executor.waiting()
        if waiting == self.waiting:
            return
        if waiting and not self.waiting:
            self.phase = self.session.progress.phase
        self.session.progress.set_phase(waiting or self.phase)
        self.waiting = waiting

    def _on_result(self, result: JobResult) -> None:
        job = str(result.job)
        rec, seed = self.info[job]
        if result.error is not None:
            if not (result.lost and self._retry(job, rec, seed)):
                self._fail(job, rec.number, seed, result.error)
        elif result.weights is not None:
            self.pending_weights.discard(job)
            history, outputs, note = self.histories[job], result.outputs, self.starts[job].note
            self.done[job] = FinalFit(rec.number, seed, result.weights, history, outputs, note)
            self.session.state.save_weights(job, result.weights, self.histories[job], result.outputs)
            self.session.state.drop_checkpoint(job)
            self.session.executor.release(job)
            self.session.tracker.end_run(self.runs.pop(job), Outcome.COMPLETED.run_status)
            self.session.progress.running.pop(job, None)
        else:
            assert result.epoch is not None
            if result.checkpoint is not None and not result.done:
                self.checkpoints[job] = (result.epoch.epoch, result.checkpoint)
                history = [*self.histories[job], result.epoch]
                self.session.state.save_checkpoint(job, result.checkpoint, history)  # for a resume
                self.session.state.save()  # with the time spent up to this checkpoint
            self._on_epoch(job, rec, result.epoch, result.done)

    def _on_epoch(self, job: str, rec: TrialRecord, epoch: EpochResult, done: bool) -> None:
        self.histories[job].append(epoch)
        metrics = {k: v for k, v in epoch.to_dict().items() if k != "epoch" and not _nan(v)}
        self.session.tracker.log_metrics(self.runs[job], metrics, step=epoch.epoch)
        total = self._candidate(rec).training.epochs
        on = "val" if self.kind.second_seed else "check"
        score = "" if math.isnan(epoch.val_acc) else f"  {on} {epoch.val_acc:.4f}"
        text = f"{self.what} of trial {rec.number}: epoch {epoch.epoch}/{total}{score}"
        self.session.progress.trial_running(job, text)
        if not done and self._time_is_up(epoch.seconds, rec):  # the next epoch, as long as this one
            self._cut(job, rec, epoch)
            done = True
        if done:
            self.pending_weights.add(job)
            self.session.executor.request_weights(job)
        else:
            self.session.executor.advance(job, want_checkpoint=True, threads=self._threads_now())

    def _threads_now(self) -> int:
        """Threads for each fit still to run: the cores of fits that finished go to the others
        (a lone fit left uses every core of the search)."""
        return self.session.executor.threads_for(len(self.session.executor.jobs) + len(self.todo))

    def _fail(self, job: str, number: int, seed: int, error: str) -> None:
        run_id = self.runs.pop(job)
        self.session.tracker.set_tags(run_id, {"automl_cnn.outcome": Outcome.FAILED.value, "automl_cnn.reason": error})
        self.session.tracker.end_run(run_id, Outcome.FAILED.run_status)
        for other in self.session.executor.jobs:
            self.session.executor.release(other)
        raise AutoMLError(f"the {self.what} of trial {number} (seed {seed}) failed: {error}")


def _start_tag(start: Start) -> dict[str, str]:
    """The MLflow tag saying which trial's weights a final fit continued from (none: random weights)."""
    return {"automl_cnn.continued_from_trial": str(start.trial)} if start.continued else {}


def _nan(value: float) -> bool:
    return isinstance(value, float) and math.isnan(value)
