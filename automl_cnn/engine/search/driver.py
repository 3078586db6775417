"""The search loop: Optuna proposes, the executor trains, results go back to the study and MLflow.

The driver asks the study for a trial whenever a worker is free, passes the candidate through
the gate (:mod:`automl_cnn.engine.search.gate`) and then steps it one epoch at a time. After each epoch
it reports the validation accuracy to the trial and asks the pruner; how each ending reaches the
study and MLflow is in :mod:`automl_cnn.engine.outcome` and :mod:`automl_cnn.engine.search.endings`.
To keep many workers busy it launches one trial at a time between the results that are ready
(:mod:`automl_cnn.engine.search.launching`), and its MLflow writes go through a background
writer during the search (``MlflowTracker.batched``), all written before ``run`` returns or raises.

The sampler never mistakes a partial score for a final one, and it learns which regions are
infeasible (Optuna's samplers rank trials with a positive constraint below feasible ones).
With several objectives Optuna cannot prune (it refuses intermediate reports), so the driver
applies multi-objective successive halving itself (:mod:`automl_cnn.engine.search.moasha`, on the
rungs of ``--pruner``): a trial it stops is told to the study as PRUNED without values, which
samplers rank below completed trials, never as a final score. On a resume the rungs are
rebuilt from the trials' histories; with a time budget, a trial whose remaining epochs cost
less than :data:`CHEAP_SHARE` of it is not stopped (there is nothing to save). Warm-start
presets are not pruned: they are known-good designs whose full results calibrate the search
(the time limit still applies; their scores are recorded at the rungs). Under ``--epochs auto``
trials on ``wsd`` train to a learned ceiling and pause there (:mod:`automl_cnn.engine.search.pausing`).
"""

from __future__ import annotations

from collections.abc import Callable

import optuna

from automl_cnn.engine.fidelity import held_plan
from automl_cnn.engine.outcome import Ending, Outcome
from automl_cnn.engine.records import TrialRecord
from automl_cnn.engine.search.cost import CostModel, cheap_to_finish, to_next_rung
from automl_cnn.engine.search.dedupe import Known, KnownResult
from automl_cnn.engine.search.endings import Endings
from automl_cnn.engine.search.extension import checkpoint_to_resume, continuation, keep_for_more
from automl_cnn.engine.search.gate import static_check
from automl_cnn.engine.search.launching import LAUNCHES_PER_PASS, KeptWeights, fit_ladder, open_trial, restore_ladder
from automl_cnn.engine.search.moasha import MultiObjectiveHalving, Verdict, for_pruner
from automl_cnn.engine.search.pausing import TrainingLength
from automl_cnn.engine.search.recovery import never_started
from automl_cnn.engine.search.running import Running, RunningTrial
from automl_cnn.engine.session import SearchSession
from automl_cnn.model.measures import EpochResult
from automl_cnn.services.run_pool import runs_ahead
from automl_cnn.training.messages import JobResult, JobSpec

MAX_REPEATS_IN_A_ROW = 200  # the sampler keeps proposing known candidates: the space is exhausted
SAVE_EVERY_SECONDS = 5.0
KEPT_WEIGHTS = 8  # completed trials whose weights the run folder keeps (the best by validation)

# when the search stops, on the budget's clock, given the records (engine.estimates.SearchDeadline)
Deadline = Callable[[list[TrialRecord]], float]


class SearchDriver:
    def __init__(
        self,
        session: SearchSession,
        deadline: Deadline,
        known: Known | None = None,
        records: list[TrialRecord] | None = None,
        resumable: list[Running] | None = None,
        max_retries: int = 2,
    ) -> None:
        self.session = session
        self.deadline = deadline
        self.known = known or Known()
        self.max_retries = max_retries
        self.cost = CostModel(len(session.bundle.train_idx), len(session.bundle.val_idx))
        self._trials: list[TrialRecord | RunningTrial] = list(records or [])  # in the order asked
        self.endings = Endings(session, self.known)
        self._running: dict[str, Running] = {}
        self._checkpoints: dict[str, bytes] = {}  # job -> its last epoch's checkpoint
        self._resumable = list(resumable or [])
        # trials an earlier driver asked for and never started count against --trials too
        self._asked = len(self._trials) + len(self._resumable) + never_started(session.study)
        self._exhausted = False
        self._waiting: str | None = None  # what the executor waits for, as last shown
        self.kept = KeptWeights(session.state, list(records or []), KEPT_WEIGHTS)
        self.halving: MultiObjectiveHalving | None = None  # early stopping with several objectives
        self.length = TrainingLength(session)  # the learned ceiling and the trials paused at it
        if session.multi_objective:
            self.halving = for_pruner(session.config.search.pruner, session.space.max_epochs())
        for rec in records or []:  # results of an earlier driver of this run are known
            if rec.duplicate_of is None:
                self.known.finish(rec.candidate.key(), self.endings.known_result(rec))
            self._replay_rungs(rec)

    @property
    def records(self) -> list[TrialRecord]:
        """Every trial so far, in the order asked: ended ones' final records, running ones' so far."""
        return [t.record if isinstance(t, RunningTrial) else t for t in self._trials]

    # -- the loop ------------------------------------------------------------------------------
    def run(self) -> list[TrialRecord]:
        # MLflow writes and checkpoints off the decision path, all written on leaving
        ahead = runs_ahead(self.session.resources.workers)  # trial runs opened ahead where launches are frequent
        with self.session.tracker.batched(ahead, self.session.parent_run), self.session.state.writes_in_background():
            try:
                self._loop()
            except BaseException:
                self.interrupt()
                raise
        return self.records

    def _loop(self) -> None:
        budget = self.session.budget
        saved = budget.elapsed()
        while True:
            if budget.elapsed() - saved > SAVE_EVERY_SECONDS:
                self.session.state.save()  # the time spent, for a resume after a crash
                saved = budget.elapsed()
            more = self._launch()
            if not self._running and not self._waiting_for_workers():
                break
            if budget.elapsed() >= self.deadline(self.records):
                self.stop_all("time budget reached")
                break
            for result in self.session.executor.wait(timeout=0.0 if more else 0.5):  # then launch the rest
                self._on_result(result)
            self._show_waiting()
            self.session.progress.refresh()
        ended = self.length.end_paused()  # the search phase is over
        keep_for_more(self.session.state, [(r.record, self._checkpoints.get(r.job)) for (r, _t), _e in ended])
        for (run, trial), ending in ended:
            self._finish(run, trial, ending)

    def _waiting_for_workers(self) -> bool:
        """Work is left but nothing runs: no worker had started when ``_launch`` looked (Ray is
        still placing them). Slots freed since then are used by the next ``_launch``."""
        return bool(self._resumable or self.length.waiting or self._may_launch())

    def _show_waiting(self) -> None:
        waiting = self.session.executor.waiting()
        if waiting != self._waiting:
            self.session.progress.set_phase(waiting or "searching")
            self._waiting = waiting

    def interrupt(self) -> None:
        """The search stops without deciding the running trials: their MLflow runs are closed as
        KILLED, the study keeps them RUNNING with their checkpoints for ``automl-cnn resume``."""
        tracker = self.session.tracker
        for run, _trial in list(self._running.values()):
            self.session.executor.release(run.job)
            tags = {"automl_cnn.outcome": Outcome.INTERRUPTED, "automl_cnn.reason": "search interrupted"}
            tracker.set_tags(run.record.run_id, tags)
            tracker.end_run(run.record.run_id, Outcome.INTERRUPTED.run_status)
        self._running.clear()
        self.length.interrupt()

    def stop_all(self, why: str, outcome: Outcome = Outcome.PRUNED) -> None:
        """Stop every running trial (time budget, interruption), recording why."""
        for run, trial in list(self._running.values()):
            ending = self.length.stopped(run, why) or Ending(outcome, f"{why} at epoch {len(run.record.history)}")
            self._finish(run, trial, ending)

    # -- launching -----------------------------------------------------------------------------
    def _may_launch(self) -> bool:
        max_trials = self.session.config.budget.trials
        if self._exhausted or (max_trials is not None and self._asked >= max_trials):
            return False
        return self._in_time()

    def _in_time(self) -> bool:
        return self.session.budget.elapsed() < self.deadline(self.records)

    def _launch(self) -> bool:
        """Launch at most :data:`LAUNCHES_PER_PASS` trials, paused ones first; True when free slots wait for more."""
        executor, launched = self.session.executor, 0
        while executor.free > 0 and launched < LAUNCHES_PER_PASS and self._in_time() and self.length.waiting:
            run, trial = self.length.next_waiting()
            self._submit(run, trial, self._checkpoints.get(run.job))
            launched += 1
        while executor.free > 0 and self._resumable and launched < LAUNCHES_PER_PASS:
            self._resume_one(*self._resumable.pop(0))
            launched += 1
        while executor.free > 0 and launched < LAUNCHES_PER_PASS and self._may_launch():
            self._launch_one()
            launched += 1
        return launched >= LAUNCHES_PER_PASS and executor.free > 0

    def _submit(self, run: RunningTrial, trial: optuna.Trial, checkpoint: bytes | None = None) -> None:
        rec = run.record
        self._running[rec.job] = (run, trial)
        first = rec.fraction(len(rec.history) + 1)  # the epoch after the checkpoint
        data = self.session.search_data
        candidate = self.length.job_candidate(rec).to_dict()  # to the learned ceiling, if it learns
        spec = JobSpec(rec.job, candidate, rec.seed, data, checkpoint, True, outputs=True, fraction=first)
        self.session.executor.submit(spec)

    def _resume_one(self, run: RunningTrial, trial: optuna.Trial) -> None:
        """Continue a trial an earlier driver left running: from its checkpoint, if it has one."""
        self._trials.append(run)
        if self._wait_or_reuse(run, trial):
            return
        saved = checkpoint_to_resume(self.session.state, run.record)  # a continuation: maybe its trial's
        if isinstance(saved, Ending):
            return self._finish(run, trial, saved)
        blob = saved[0] if saved is not None else None
        if saved is not None:
            run.update(history=tuple(saved[1]))
            self._checkpoints[run.job] = saved[0]
        restore_ladder(self.session, run)
        self._replay_rungs(run.record)
        self.session.tracker.client.update_run(run.record.run_id, status="RUNNING")
        if blob is None or not self.length.resumed((run, trial), self.kept, self.records):  # True: paused again
            self._submit(run, trial, blob)
        where = f"from epoch {len(run.record.history)}" if blob else "from the start (no checkpoint)"
        self.session.progress.message(f"{run.job}: resumed {where}")

    def _wait_or_reuse(self, run: RunningTrial, trial: optuna.Trial) -> bool:
        """True when ``run`` repeats a known candidate: it reuses the result, or waits for it."""
        if run.record.continues is not None:  # resume --more: it trains on from its trial's checkpoint
            return False
        key = run.record.candidate.key()
        earlier = self.known.lookup(key)
        if isinstance(earlier, KnownResult):
            self.known.repeats += 1
            self.endings.finish_repeat(run, trial, earlier)
            return True
        if isinstance(earlier, str):
            run.attrs().write(trial)  # its run: a resume continues it
            self.known.wait_for(earlier, (run, trial))
            self.session.progress.message(f"{run.job}: a repeat of running {earlier}; it will reuse that result")
            return True
        self.known.start(key, run.job)
        return False

    def _launch_one(self) -> None:
        trial = self.session.study.ask()
        self._asked += 1
        run = self._new_trial(trial)
        if run.record.continues is not None:
            self._continue(run, trial)
        elif not self._wait_or_reuse(run, trial):
            ending = static_check(self.session, run, self.cost)
            if ending is not None:
                self._finish(run, trial, ending)
            else:  # its run and profile (warm starts from this search rank by it), in one write
                run.attrs().write(trial)
                self._submit(run, trial)
                rec = run.record
                self.session.progress.trial_running(rec.job, f"starting: {rec.candidate.architecture.describe()}")
        if self.known.repeats >= MAX_REPEATS_IN_A_ROW:
            self._exhausted = True
            self.session.progress.message(
                f"the last {MAX_REPEATS_IN_A_ROW} proposals were all repeats: the space is exhausted"
            )

    def _continue(self, run: RunningTrial, trial: optuna.Trial) -> None:
        """Start a continuation (``resume --more``: :mod:`.extension`) from its trial's kept checkpoint."""
        started = static_check(self.session, run, self.cost) or continuation(self.session, run, trial)
        if isinstance(started, Ending):
            self._finish(run, trial, started)
            return
        self._checkpoints[run.job] = started
        self._replay_rungs(run.record)
        run.attrs().write(trial)
        self._submit(run, trial, started)

    def _new_trial(self, trial: optuna.Trial) -> RunningTrial:
        run = open_trial(self.session, trial)
        self._trials.append(run)
        return run

    # -- results -------------------------------------------------------------------------------
    def _on_result(self, result: JobResult) -> None:
        job = result.job
        if job is None or job not in self._running:
            return  # a late result of a job already stopped
        run, trial = self._running[job]
        if not run.record.where:
            where = self.session.executor.where(job)
            if where:
                run.update(where=where)
                self.session.tracker.set_tags(
                    run.record.run_id, {f"automl_cnn.worker.{k}": v for k, v in where.items()}
                )
        if result.error is not None:
            if not (result.lost and self._retry(run)):
                self._finish(run, trial, Ending(Outcome.FAILED, result.error))
            return
        assert result.epoch is not None
        if result.outputs is not None:  # the last epoch: keep what ensembles and the final fit need
            self._keep_outputs(run.record, result)
        verdict = self._record_epoch(run, trial, result)
        ending = self._decide(run, trial, result, verdict)
        if ending is not None:
            self._finish(run, trial, ending)
        elif result.done:  # at the learned ceiling, below its cap: paused (pausing.py)
            self.length.pause(self._running.pop(job), self.records)
        else:
            rec = run.record
            self.session.executor.advance(job, want_checkpoint=True, fraction=rec.fraction(len(rec.history) + 1))
            epoch, to = result.epoch, self.length.target(rec)  # a learned trial trains to the ceiling
            shown = f"epoch {epoch.epoch}/{to}" + (" (the learned ceiling)" if self.length.learns(rec) else "")
            self.session.progress.trial_running(job, f"{shown}  val {epoch.val_acc:.4f}")

    def _record_epoch(self, run: RunningTrial, trial: optuna.Trial, result: JobResult) -> Verdict | None:
        """Keep, checkpoint and log an epoch; report it to the study, or with several objectives
        record it at its rung (the verdict, if the epoch is a rung)."""
        session, epoch = self.session, result.epoch
        assert epoch is not None
        rec = run.add_epoch(epoch)
        if result.checkpoint is not None:
            self._checkpoints[rec.job] = result.checkpoint
            session.state.save_checkpoint(rec.number, result.checkpoint, rec.history)
        if rec.profile is not None:
            self.cost.observe(rec.profile.flops, epoch.seconds, rec.work(epoch.fraction))
        session.tracker.log_epoch(rec.run_id, epoch)
        if epoch.oom_backoffs:  # it ran out of memory and goes on at a smaller batch size
            used = {"automl_cnn.batch_size_used": epoch.batch_size, "automl_cnn.oom_backoffs": epoch.oom_backoffs}
            session.tracker.set_tags(rec.run_id, used)
        if not session.multi_objective:
            trial.report(epoch.val_acc, epoch.epoch)
            return None
        return self._at_rung(rec, epoch)

    def _rung_vector(self, rec: TrialRecord, epoch: EpochResult) -> tuple[float, ...] | None:
        """A trial's objectives after ``epoch``, all minimised: the validation error, then the
        static objectives (None when they are unknown)."""
        statics = self.session.objectives[1:]
        if rec.profile is None and any(name in ("params", "flops") for name in statics):
            return None
        return (1.0 - epoch.val_acc, *(rec.objective(name) for name in statics))

    def _at_rung(self, rec: TrialRecord, epoch: EpochResult) -> Verdict | None:
        vector = self._rung_vector(rec, epoch)
        if self.halving is None or vector is None:
            return None
        return self.halving.observe(rec.number, epoch.epoch, vector)

    def _replay_rungs(self, rec: TrialRecord) -> None:
        """Record a trial an earlier driver ran at the rungs it reached (a resume)."""
        if self.halving is not None and rec.duplicate_of is None:
            for epoch in rec.history:
                self._at_rung(rec, epoch)

    def _decide(
        self, run: RunningTrial, trial: optuna.Trial, result: JobResult, verdict: Verdict | None = None
    ) -> Ending | None:
        """After an epoch: complete, too slow for its share of the budget, pruned, or go on."""
        rec = run.record if result.done else fit_ladder(self.session, run)
        epoch = rec.history[-1].epoch
        limit = self.session.budget.trial_cap
        # on the data ladder, judged by the cheapest way left to finish: holding its current share
        ladder = self.session.data_ladder
        held = held_plan(ladder, rec) if ladder is not None and rec.fractions else None
        projected, rung, slack = to_next_rung(self.session, self.length.as_trained(rec), held)  # not the full schedule
        # from the first epoch alone only when far over: it is slowed by warm-up and start-up
        over = limit is not None and projected > limit * slack
        if result.done and not self.length.pauses(rec):
            return Ending(Outcome.COMPLETED)
        if over and limit is not None:
            run.update(too_slow=True)
            share = f" even on {rec.fraction(epoch):.0%} of the data" if held is not None else ""
            reason = (
                f"stopped at epoch {epoch}/{rec.epochs}: {rung} would take {projected:.0f} s{share}, over the "
                f"{limit:.0f} s a trial may take in this time budget"
            )
            return Ending(Outcome.PRUNED, reason, constraints={"trial_seconds": projected / limit - 1})
        if rec.preset is not None:
            return None
        if verdict is not None and verdict.stop and self.halving is not None and not cheap_to_finish(self.session, rec):
            reason = f"stopped at epoch {epoch}/{rec.epochs} by {self.halving.name}: {verdict.describe()}"
            return Ending(Outcome.PRUNED, reason)
        if not self.session.multi_objective and trial.should_prune():
            reason = f"stopped early at epoch {epoch}/{rec.epochs} by the {self.session.config.search.pruner} pruner"
            return Ending(Outcome.PRUNED, reason)
        return None

    def _retry(self, run: RunningTrial) -> bool:
        """Restart a trial whose worker died, from its last checkpoint; False past the limit."""
        if run.record.retries >= self.max_retries:
            return False
        blob = self._checkpoints.get(run.job)
        done = len(run.record.history)
        rec = run.update(retries=run.record.retries + 1, history=run.record.history if blob is not None else ())
        self.session.tracker.set_tags(rec.run_id, {"automl_cnn.retries": rec.retries})
        _run, trial = self._running[rec.job]
        self._submit(run, trial, blob)
        start = f"epoch {done}" if blob is not None else "the start"
        self.session.progress.message(
            f"{rec.job}: its worker died; retry {rec.retries}/{self.max_retries} from {start}"
        )
        return True

    def _keep_outputs(self, rec: TrialRecord, result: JobResult) -> None:
        """Store a finished trial's validation probabilities, and its weights while it is among the
        best :data:`KEPT_WEIGHTS` completed trials."""
        assert result.outputs is not None and result.epoch is not None
        self.session.state.save_outputs(rec.number, result.outputs.weights, result.outputs.eval_probs)
        self.kept.add(rec.number, result.epoch.val_acc)

    def _finish(self, run: RunningTrial, trial: optuna.Trial, ending: Ending) -> None:
        self._running.pop(run.job, None)
        self.session.executor.release(run.job)
        self._checkpoints.pop(run.job, None)
        self.endings.finish(run, trial, ending)
