"""More time extends the best trials (``automl-cnn resume RUN --more 10m``, issue 25 item 4).

A search that learns its training length (:mod:`automl_cnn.engine.search.pausing`) usually ends
with its best trials paused at the learned ceiling, below their cap: the budget ran out, not
their curves. When the search phase ends:

* :func:`keep_for_more` keeps the checkpoints of the :data:`KEEP` best of those trials (by their
  last validation score) as ``checkpoints/extend-<trial>.pt``, listed in ``run.json``
  (``extra["training_length"]["extendable"]``); the previous round's are replaced.

When ``--more`` reopens the run (:func:`grow_for_more`, from :func:`automl_cnn.engine.more.give_more_time`):

* the ceiling grows one step (by the rungs' factor, up to the cap), recorded as
  ``extra["training_length"]["more"]`` and said by the summary's training-length line;
* each kept trial gets a **continuation**: a new Optuna trial with the same parameters, enqueued
  ahead of any new proposal (:func:`enqueue_continuations`), with ``continues`` naming the trial.
  The driver starts it from that trial's checkpoint and history, with that trial's seed, so on
  ``wsd`` it trains the weights a run straight to the new ceiling would have; it is never taken
  for a repeat of its trial. Its epochs so far are reported to the study and logged to its
  MLflow run (named ``trial-N (continues trial M)``) before it trains on.

The original trial keeps its record and score; the continuation is a trial of its own, so the
final phase may pick either (the longer one, where training longer paid). The rest of the extra
time searches on as before.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import TrialState

from automl_cnn.engine.outcome import Ending, Outcome, TrialAttrs
from automl_cnn.engine.records import TrialRecord
from automl_cnn.engine.runstate import CHECKPOINTS, RunState
from automl_cnn.engine.search.launching import restore_ladder
from automl_cnn.engine.search.moasha import ETA
from automl_cnn.engine.search.pausing import STATE_KEY
from automl_cnn.engine.search.running import RunningTrial
from automl_cnn.engine.session import SearchSession
from automl_cnn.model.measures import EpochResult

KEEP = 3  # the best paused trials whose checkpoints a finished search keeps for --more
PREFIX = "extend-"  # their checkpoint keys
PENDING = "continue"  # extra["training_length"][PENDING]: trials to continue, not yet enqueued


def checkpoint_key(number: int) -> str:
    return f"{PREFIX}{number}"


def keep_for_more(state: RunState, paused: list[tuple[TrialRecord, bytes | None]]) -> None:
    """At the end of a learned search: keep the checkpoints of the best :data:`KEEP` trials
    ``paused`` at the ceiling (each with its last checkpoint), ranked with those already kept
    this round, and list them. With none paused nothing changes: a driver resumed after the
    search phase (killed during the final phase) ends its loop with nothing paused."""
    saved = dict(state.extra.get(STATE_KEY) or {})
    fresh = [(r, b) for r, b in paused if b is not None]
    if saved.get("mode") != "learned" or not fresh:
        return
    entries = {int(e["trial"]): e for e in saved.get("extendable", [])}
    for rec, blob in fresh:
        assert blob is not None
        state.save_checkpoint(checkpoint_key(rec.number), blob, rec.history)
        entries[rec.number] = {"trial": rec.number, "epochs": len(rec.history), "val": rec.val_acc or 0.0}
    best = sorted(entries.values(), key=lambda e: (-float(e.get("val", 0.0)), int(e["trial"])))[:KEEP]
    kept = {int(e["trial"]) for e in best}
    for path in (state.folder / CHECKPOINTS).glob(f"{PREFIX}*"):
        number = path.name.removeprefix(PREFIX).split(".")[0]
        if number.isdigit() and int(number) not in kept:
            state.drop_checkpoint(checkpoint_key(int(number)))
    saved["extendable"] = best
    state.extra = {**state.extra, STATE_KEY: saved}


def checkpoint_to_resume(state: RunState, rec: TrialRecord) -> tuple[bytes, list[EpochResult]] | Ending | None:
    """The checkpoint a resumed trial continues from: its own; for a continuation that had none
    yet, its trial's kept one (an Ending where neither is left: it is never retrained from
    scratch under another trial's seed)."""
    saved = state.load_checkpoint(rec.number)
    if saved is not None or rec.continues is None:
        return saved
    kept = state.load_checkpoint(checkpoint_key(rec.continues))
    return kept or Ending(Outcome.FAILED, f"not trained: trial {rec.continues}'s checkpoint was not kept")


def grow_for_more(state: RunState) -> dict[str, Any] | None:
    """``--more`` on a run whose search learned its length and kept trials to extend: the
    ceiling one step higher and those trials to continue (None: nothing to extend; the extra
    time searches on as before). Changes ``state.extra`` only."""
    saved = dict(state.extra.get(STATE_KEY) or {})
    kept = [int(k["trial"]) for k in saved.get("extendable", [])]
    if saved.get("mode") != "learned" or not kept or int(saved["ceiling"]) >= int(saved["cap"]):
        return None
    before = int(saved["ceiling"])
    after = min(int(saved["cap"]), before * ETA)
    grown = {"from": before, "to": after, "trials": kept}
    saved.update(ceiling=after, extendable=[], more=[*saved.get("more", []), grown], **{PENDING: kept})
    state.extra = {**state.extra, STATE_KEY: saved}
    return grown


def enqueue_continuations(session: SearchSession) -> list[int]:
    """Enqueue the continuations ``--more`` asked for, ahead of any new proposal, each with its
    trial's seed; once: the list is cleared and the run folder saved, and a trial already
    continued in the study is not enqueued again (a driver killed in between). Returns the
    trials continued."""
    saved = dict(session.state.extra.get(STATE_KEY) or {})
    pending = [int(n) for n in saved.pop(PENDING, [])]
    if not pending:
        return []
    trials = {t.number: t for t in session.study.get_trials(deepcopy=False)}
    continued = {TrialAttrs.read(t).continues for t in trials.values()}
    enqueued = []
    for number in pending:
        original = trials.get(number)
        if original is None or original.state != TrialState.COMPLETE or number in continued:
            continue
        seed = TrialAttrs.read(original).seed
        session.study.enqueue_trial(dict(original.params), user_attrs={"continues": number, "seed": seed})
        enqueued.append(number)
    session.state.extra = {**session.state.extra, STATE_KEY: saved}
    session.state.save()
    if enqueued:
        names = ", ".join(str(n) for n in enqueued)
        session.progress.message(f"--more: trials {names} continue from their checkpoints to the grown ceiling")
    return enqueued


def continuation(session: SearchSession, run: RunningTrial, trial: optuna.Trial) -> bytes | Ending:
    """A continuation's start: its trial's kept checkpoint and history, the history reported to
    the study and logged to its MLflow run; the checkpoint to train on from (or why it cannot)."""
    original = run.record.continues
    assert original is not None
    saved = session.state.load_checkpoint(checkpoint_key(original))
    if saved is None:
        return Ending(Outcome.FAILED, f"not trained: trial {original}'s checkpoint was not kept")
    run.update(history=tuple(saved[1]))
    restore_ladder(session, run)
    for epoch in run.record.history:
        session.tracker.log_epoch(run.record.run_id, epoch)
        if not session.multi_objective:
            trial.report(epoch.val_acc, epoch.epoch)
    epochs = len(run.record.history)
    session.progress.message(f"{run.record.job}: continues trial {original} from epoch {epochs} (--more)")
    return saved[0]
