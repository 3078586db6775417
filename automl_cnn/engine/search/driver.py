"""The search loop: Optuna proposes, the executor trains, results go back to the study and MLflow.

The driver asks the study for a trial whenever a worker is free, passes the candidate through
the gate (:mod:`automl_cnn.engine.search.gate`) and then steps it one epoch at a time. After each epoch
it reports the validation accuracy to the trial and asks the pruner; how each ending reaches the
study and MLflow is in :mod:`automl_cnn.engine.outcome` and :mod:`automl_cnn.engine.search.endings`.

The sampler never mistakes a partial score for a final one, and it learns which regions are
infeasible (Optuna's samplers rank trials with a positive constraint below feasible ones).
With several objectives Optuna cannot prune (it refuses intermediate reports), so the driver
applies multi-objective successive halving itself (:mod:`automl_cnn.engine.search.moasha`, on the
rungs of ``--pruner``): a trial it stops is told to the study as PRUNED without values, which
samplers rank below completed trials, never as a final score. On a resume the rungs are
rebuilt from the trials' histories; with a time budget, a trial whose remaining epochs cost
less than :data:`CHEAP_SHARE` of it is not stopped (there is nothing to save). Warm-start
presets are not pruned: they are known-good designs whose full results calibrate the search
(the time limit still applies; their scores are recorded at the rungs).
"""

from __future__ import annotations

from collections.abc import Callable

import optuna

from automl_cnn.engine.fidelity import fitted_plan, held_plan, restored_plan
from automl_cnn.engine.outcome import Ending, Outcome, TrialAttrs
from automl_cnn.engine.records import TrialRecord, trial_seed
from automl_cnn.engine.search.cost import CostModel
from automl_cnn.engine.search.dedupe import Known, KnownResult
from automl_cnn.engine.search.endings import Endings
from automl_cnn.engine.search.gate import static_check
from automl_cnn.engine.search.moasha import MultiObjectiveHalving, Verdict, for_pruner
from automl_cnn.engine.session import SearchSession
from automl_cnn.model.measures import EpochResult
from automl_cnn.space.sampling import sample_candidate
from automl_cnn.training.messages import JobResult, JobSpec

MAX_REPEATS_IN_A_ROW = 200  # the sampler keeps proposing known candidates: the space is exhausted
SAVE_EVERY_SECONDS = 5.0
CHEAP_SHARE = 0.03  # with several objectives, a trial this close to done (share of the budget) is not stopped
KEPT_WEIGHTS = 8  # completed trials whose weights the run folder keeps (the best by validation)

# the elapsed time on the session's budget clock at which the search stops, given the records
# (automl_cnn.engine.estimates.SearchDeadline; tests pass ``lambda records: math.inf``)
Deadline = Callable[[list[TrialRecord]], float]
Running = tuple[TrialRecord, optuna.Trial]


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
        self.s = session
        self.deadline = deadline
        self.known = known or Known()
        self.max_retries = max_retries
        self.cost = CostModel(len(session.bundle.train_idx), len(session.bundle.val_idx))
        self.records: list[TrialRecord] = list(records or [])
        self.endings = Endings(session, self.known)
        self._running: dict[str, Running] = {}
        self._checkpoints: dict[str, bytes] = {}  # job -> its last epoch's checkpoint
        self._resumable = list(resumable or [])
        self._asked = len(self.records) + len(self._resumable)
        self._exhausted = False
        self._waiting: str | None = None  # what the executor waits for, as last shown
        self.halving: MultiObjectiveHalving | None = None  # early stopping with several objectives
        if session.multi_objective:
            self.halving = for_pruner(session.config.pruner, session.space.max_epochs())
        for rec in self.records:  # results of an earlier driver of this run are known
            if rec.candidate is not None and rec.duplicate_of is None:
                self.known.finish(rec.candidate.key(), self.endings.known_result(rec))
            self._replay_rungs(rec)

    # -- the loop ------------------------------------------------------------------------------
    def run(self) -> list[TrialRecord]:
        budget = self.s.budget
        saved = budget.elapsed()
        try:
            while True:
                if budget.elapsed() - saved > SAVE_EVERY_SECONDS:
                    self.s.state.save()  # the time spent, for a resume after a crash
                    saved = budget.elapsed()
                self._launch()
                if not self._running and not self._waiting_for_workers():
                    break
                if budget.elapsed() >= self.deadline(self.records):
                    self.stop_all("time budget reached")
                    break
                for result in self.s.executor.wait(timeout=0.5):
                    self._on_result(result)
                self._show_waiting()
                self.s.progress.refresh()
        except BaseException:
            self.interrupt()
            raise
        return self.records

    def _waiting_for_workers(self) -> bool:
        """Work is left but nothing runs: no worker had started when ``_launch`` looked (Ray is
        still placing them). Slots freed since then are used by the next ``_launch``."""
        return bool(self._resumable or self._may_launch())

    def _show_waiting(self) -> None:
        waiting = self.s.executor.waiting()
        if waiting != self._waiting:
            self.s.progress.set_phase(waiting or "searching")
            self._waiting = waiting

    def interrupt(self) -> None:
        """The search stops without deciding the running trials: their MLflow runs are closed as
        KILLED, while the study keeps them RUNNING with their checkpoints, so that
        ``automl-cnn resume`` continues them."""
        tracker = self.s.tracker
        for rec, _trial in list(self._running.values()):
            self.s.executor.release(rec.job)
            tags = {"automl_cnn.outcome": Outcome.INTERRUPTED, "automl_cnn.reason": "search interrupted"}
            tracker.set_tags(rec.run_id, tags)
            tracker.end_run(rec.run_id, Outcome.INTERRUPTED.run_status)
        self._running.clear()

    def stop_all(self, why: str, outcome: Outcome = Outcome.PRUNED) -> None:
        """Stop every running trial (time budget, interruption), recording why."""
        for rec, trial in list(self._running.values()):
            self._finish(rec, trial, Ending(outcome, f"{why} at epoch {len(rec.history)}"))

    # -- launching -----------------------------------------------------------------------------
    def _may_launch(self) -> bool:
        max_trials = self.s.config.trials
        if self._exhausted or (max_trials is not None and self._asked >= max_trials):
            return False
        return self.s.budget.elapsed() < self.deadline(self.records)

    def _launch(self) -> None:
        while self.s.executor.free > 0 and self._resumable:
            self._resume_one(*self._resumable.pop(0))
        while self.s.executor.free > 0 and self._may_launch():
            self._launch_one()

    def _submit(self, rec: TrialRecord, trial: optuna.Trial, checkpoint: bytes | None = None) -> None:
        assert rec.candidate is not None
        self._running[rec.job] = (rec, trial)
        first = rec.fraction(len(rec.history) + 1)  # the epoch after the checkpoint
        data = self.s.search_data
        spec = JobSpec(rec.job, rec.candidate.to_dict(), rec.seed, data, checkpoint, True, outputs=True, fraction=first)
        self.s.executor.submit(spec)

    def _resume_one(self, rec: TrialRecord, trial: optuna.Trial) -> None:
        """Continue a trial an earlier driver left running: from its checkpoint, if it has one."""
        assert rec.candidate is not None
        self.records.append(rec)
        if self._wait_or_reuse(rec, trial):
            return
        saved = self.s.state.load_checkpoint(rec.number)
        blob = None
        if saved is not None:
            blob, rec.history = saved[0], list(saved[1])
            self._checkpoints[rec.job] = blob
        self._restore_ladder(rec)
        self._replay_rungs(rec)
        self.s.tracker.client.update_run(rec.run_id, status="RUNNING")
        self._submit(rec, trial, blob)
        where = f"from epoch {len(rec.history)}" if blob else "from the start (no checkpoint)"
        self.s.progress.message(f"{rec.job}: resumed {where}")

    def _wait_or_reuse(self, rec: TrialRecord, trial: optuna.Trial) -> bool:
        """True when ``rec`` repeats a known candidate: it reuses the result, or waits for it."""
        assert rec.candidate is not None
        key = rec.candidate.key()
        earlier = self.known.lookup(key)
        if isinstance(earlier, KnownResult):
            self.known.repeats += 1
            self.endings.finish_repeat(rec, trial, earlier)
            return True
        if isinstance(earlier, str):
            self.known.wait_for(earlier, (rec, trial))
            self.s.progress.message(f"{rec.job}: a repeat of running {earlier}; it will reuse that result")
            return True
        self.known.start(key, rec.job)
        return False

    def _launch_one(self) -> None:
        trial = self.s.study.ask()
        self._asked += 1
        rec = self._new_record(trial)
        if not self._wait_or_reuse(rec, trial):
            ending = static_check(self.s, rec, self.cost)
            if rec.profile is not None:  # what warm starts from this search need to rank it
                TrialAttrs(params=rec.profile.params, flops=rec.profile.flops, latency_ms=rec.latency_ms).write(trial)
            if ending is not None:
                self._finish(rec, trial, ending)
            else:
                self._submit(rec, trial)
                assert rec.candidate is not None
                self.s.progress.trial_running(rec.job, f"starting: {rec.candidate.architecture.describe()}")
        if self.known.repeats >= MAX_REPEATS_IN_A_ROW:
            self._exhausted = True
            self.s.progress.message(
                f"the last {MAX_REPEATS_IN_A_ROW} proposals were all repeats: the space is exhausted"
            )

    def _new_record(self, trial: optuna.Trial) -> TrialRecord:
        """Sample the trial's candidate, open its MLflow run and record both in the study."""
        number = trial.number
        seed = trial_seed(self.s.config.seed, number)
        TrialAttrs(seed=seed).write(trial)
        candidate = sample_candidate(trial, self.s.space)
        preset = TrialAttrs.read(trial).preset
        tags = {"automl_cnn.trial": str(number), "automl_cnn.outcome": Outcome.RUNNING}
        if preset:
            tags["automl_cnn.preset"] = str(preset)
        run_id = self.s.tracker.start_run(
            f"trial-{number}" + (f" ({preset})" if preset else ""),
            {**candidate.flat_params(), "seed": seed},
            tags,
            parent=self.s.parent_run,
        )
        self.s.tracker.log_dataset(run_id, self.s.bundle)
        rec = TrialRecord(number=number, seed=seed, run_id=run_id, candidate=candidate, preset=preset)
        self._restore_ladder(rec)
        self.records.append(rec)
        TrialAttrs(mlflow_run_id=run_id, candidate=candidate.to_json(), candidate_key=candidate.key()).write(trial)
        return rec

    # -- results -------------------------------------------------------------------------------
    def _on_result(self, result: JobResult) -> None:
        job = result.job
        if job is None or job not in self._running:
            return  # a late result of a job already stopped
        rec, trial = self._running[job]
        if not rec.where:
            rec.where = self.s.executor.where(job)
            if rec.where:
                self.s.tracker.set_tags(rec.run_id, {f"automl_cnn.worker.{k}": v for k, v in rec.where.items()})
        if result.error is not None:
            if not (result.lost and self._retry(rec)):
                self._finish(rec, trial, Ending(Outcome.FAILED, result.error))
            return
        assert result.epoch is not None
        if result.outputs is not None:  # the last epoch: keep what ensembles and the final fit need
            self._keep_outputs(rec, result)
        verdict = self._record_epoch(rec, trial, result)
        ending = self._decide(rec, trial, result, verdict)
        if ending is not None:
            self._finish(rec, trial, ending)
        else:
            self.s.executor.advance(job, want_checkpoint=True, fraction=rec.fraction(len(rec.history) + 1))
            epoch = result.epoch
            self.s.progress.trial_running(job, f"epoch {epoch.epoch}/{rec.epochs}  val {epoch.val_acc:.4f}")

    def _record_epoch(self, rec: TrialRecord, trial: optuna.Trial, result: JobResult) -> Verdict | None:
        """Keep, checkpoint and log an epoch; report it to the study, or with several objectives
        record it at its rung (the verdict, if the epoch is a rung)."""
        epoch = result.epoch
        assert epoch is not None
        rec.history.append(epoch)
        if result.checkpoint is not None:
            self._checkpoints[rec.job] = result.checkpoint
            self.s.state.save_checkpoint(rec.number, result.checkpoint, rec.history)
        if rec.profile is not None:
            self.cost.observe(rec.profile.flops, epoch.seconds, rec.work(epoch.fraction))
        self.s.tracker.log_epoch(rec.run_id, epoch)
        if epoch.oom_backoffs:  # it ran out of memory and goes on at a smaller batch size
            used = {"automl_cnn.batch_size_used": epoch.batch_size, "automl_cnn.oom_backoffs": epoch.oom_backoffs}
            self.s.tracker.set_tags(rec.run_id, used)
        if not self.s.multi_objective:
            trial.report(epoch.val_acc, epoch.epoch)
            return None
        return self._at_rung(rec, epoch)

    def _rung_vector(self, rec: TrialRecord, epoch: EpochResult) -> tuple[float, ...] | None:
        """A trial's objectives after ``epoch``, all minimised: the validation error, then the
        static objectives (None when they are unknown)."""
        statics = self.s.objectives[1:]
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
        self, rec: TrialRecord, trial: optuna.Trial, result: JobResult, verdict: Verdict | None = None
    ) -> Ending | None:
        """After an epoch: complete, too slow for its share of the budget, pruned, or go on."""
        epoch = rec.history[-1].epoch
        limit = self.s.budget.trial_cap
        if not result.done:
            self._fit_ladder(rec)
        # on the data ladder, judged by the cheapest way left to finish: holding its current share
        held = self._held_plan(rec)
        projected = rec.projected_seconds(held) or 0.0
        # from the first epoch alone only when far over: it is slowed by warm-up and start-up
        over = limit is not None and projected > limit * (2 if len(rec.history) == 1 else 1)
        if result.done:
            return Ending(Outcome.COMPLETED)
        if over and limit is not None:
            rec.too_slow = True
            share = f" even on {rec.fraction(epoch):.0%} of the data" if held is not None else ""
            reason = (
                f"stopped at epoch {epoch}/{rec.epochs}: would take {projected:.0f} s{share}, over the "
                f"{limit:.0f} s a trial may take in this time budget"
            )
            return Ending(Outcome.PRUNED, reason, constraints={"trial_seconds": projected / limit - 1})
        if rec.preset is not None:
            return None
        if verdict is not None and verdict.stop and self.halving is not None and not self._cheap_to_finish(rec):
            reason = f"stopped at epoch {epoch}/{rec.epochs} by {self.halving.name}: {verdict.describe()}"
            return Ending(Outcome.PRUNED, reason)
        if not self.s.multi_objective and trial.should_prune():
            reason = f"stopped early at epoch {epoch}/{rec.epochs} by the {self.s.config.pruner} pruner"
            return Ending(Outcome.PRUNED, reason)
        return None

    def _restore_ladder(self, rec: TrialRecord) -> None:
        """A trial's shares of the data on the ladder (a new trial, or one a resume continues)."""
        if self.s.data_ladder is not None:
            rec.fractions, rec.eval_share = restored_plan(self.s.data_ladder, rec), self.s.eval_share

    def _held_plan(self, rec: TrialRecord) -> list[float] | None:
        """On the data ladder, the cheapest plan left to the trial (None off the ladder)."""
        return held_plan(self.s.data_ladder, rec) if self.s.data_ladder is not None and rec.fractions else None

    def _fit_ladder(self, rec: TrialRecord) -> None:
        """At a stage of the data ladder: lower the trial's share to what its time allows."""
        ladder, limit = self.s.data_ladder, self.s.budget.trial_cap
        fitted = fitted_plan(ladder, rec, limit) if ladder is not None and limit is not None else None
        if fitted is None:
            return
        whole = rec.projected_seconds() or 0.0
        rec.fractions, cap = fitted
        self.s.tracker.set_tags(rec.run_id, {"automl_cnn.data_cap": f"{cap:.4g}"})
        self.s.progress.message(
            f"{rec.job}: trains on {cap:.0%} of the data from epoch {len(rec.history) + 1}: the ladder's larger "
            f"shares would take {whole:.0f} s, over the {limit:.0f} s a trial may take"
        )

    def _cheap_to_finish(self, rec: TrialRecord) -> bool:
        """With several objectives, a trial whose remaining epochs would take less than
        :data:`CHEAP_SHARE` of the time budget is not stopped: stopping it saves next to nothing,
        and cheap trials are where the front's low-cost end comes from (measured on mnist5k:
        one-epoch MLPs stopped at the first rung that would have completed in 2 s)."""
        budget = self.s.budget.seconds
        projected = rec.projected_seconds()
        if budget is None or projected is None:
            return False
        return projected - rec.train_seconds < CHEAP_SHARE * budget

    def _retry(self, rec: TrialRecord) -> bool:
        """Restart a trial whose worker died, from its last checkpoint; False past the limit."""
        if rec.retries >= self.max_retries or rec.candidate is None:
            return False
        rec.retries += 1
        blob = self._checkpoints.get(rec.job)
        done = len(rec.history)
        if blob is None:
            rec.history = []
        self.s.tracker.set_tags(rec.run_id, {"automl_cnn.retries": rec.retries})
        _rec, trial = self._running[rec.job]
        self._submit(rec, trial, blob)
        start = f"epoch {done}" if blob is not None else "the start"
        self.s.progress.message(f"{rec.job}: its worker died; retry {rec.retries}/{self.max_retries} from {start}")
        return True

    def _keep_outputs(self, rec: TrialRecord, result: JobResult) -> None:
        """Store a finished trial's validation probabilities, and its weights while it is among the
        best :data:`KEPT_WEIGHTS` completed trials."""
        assert result.outputs is not None and result.epoch is not None
        self.s.state.save_outputs(rec.number, result.outputs.weights, result.outputs.eval_probs)
        scored = [(r.val_acc or 0.0, r.number) for r in self.records if r.outcome == "completed" and r.history]
        scored.append((result.epoch.val_acc, rec.number))
        self.s.state.keep_trial_weights({n for _acc, n in sorted(scored, reverse=True)[:KEPT_WEIGHTS]})

    def _finish(self, rec: TrialRecord, trial: optuna.Trial, ending: Ending) -> None:
        self._running.pop(rec.job, None)
        self.s.executor.release(rec.job)
        self._checkpoints.pop(rec.job, None)
        self.endings.finish(rec, trial, ending)
