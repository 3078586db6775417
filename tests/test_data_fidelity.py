"""The data-size fidelity (``--data-fidelity``): nested stratified subsets, the ladder of shares
on the pruner's rungs, epochs on a subset in the trainer, the time guard that caps a trial's
share, and final fits cut to the time left. On real (small) data and real sessions; the
thresholds that keep small data off the ladder are lowered where the digits must use it."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sessions import plan_for, session_for

from automl_cnn.data import load_images, split_data
from automl_cnn.engine import fidelity
from automl_cnn.engine.fidelity import DataLadder, held_plan, ladder_for
from automl_cnn.engine.final.plan import plan_final
from automl_cnn.engine.outcome import Outcome
from automl_cnn.engine.records import TrialRecord
from automl_cnn.engine.search.driver import SearchDriver
from automl_cnn.engine.search.launching import fit_ladder, restore_ladder
from automl_cnn.engine.search.running import RunningTrial
from automl_cnn.model.architecture import Architecture, Candidate, ConvBlock, Head, TrainConfig
from automl_cnn.model.measures import EpochResult
from automl_cnn.training.messages import JobResult
from automl_cnn.training.subsets import nested_order, subset_size
from automl_cnn.training.trainer import Trainer

LADDER = DataLadder(((1, 1 / 9), (3, 1 / 3)))


def test_every_prefix_of_the_nested_order_is_stratified_and_smaller_ones_are_inside_larger() -> None:
    rng = np.random.default_rng(1)
    y = rng.choice(4, size=3000, p=[0.4, 0.3, 0.2, 0.1])
    order = nested_order(y)
    assert sorted(order.tolist()) == list(range(len(y)))
    assert np.array_equal(order, nested_order(y))  # the same for every trial of a search
    for fraction in (1 / 9, 1 / 3):
        part = y[order[: subset_size(len(y), fraction)]]
        want = np.bincount(y) * fraction
        assert np.all(np.abs(np.bincount(part, minlength=4) - want) <= 1), (fraction, np.bincount(part), want)
    small, large = set(order[:333].tolist()), set(order[:1000].tolist())
    assert small <= large


def test_the_ladder_follows_the_rungs_and_skips_what_is_too_small() -> None:
    big = ladder_for("auto", "asha", 45_000)
    assert big == LADDER
    assert big.plan(5) == [1 / 9, 1 / 3, 1 / 3, 1.0, 1.0]
    assert big.plan(5, cap=1 / 3) == [1 / 9, 1 / 3, 1 / 3, 1 / 3, 1 / 3]
    assert "epoch 1 on 11%, epochs 2-3 on 33%" in big.describe()
    mid = ladder_for("auto", "hyperband", 12_000)  # 1/9 would be 1,333 images: epochs 1-3 on 1/3
    assert mid is not None and mid.plan(4) == [1 / 3, 1 / 3, 1 / 3, 1.0]
    assert ladder_for("auto", "asha", fidelity.MIN_IMAGES - 1) is None  # small data: all of it
    assert ladder_for("off", "asha", 45_000) is None
    assert ladder_for("auto", "none", 45_000) is None  # nothing is stopped early: nothing to save


def test_an_epoch_on_a_subset_takes_fewer_steps_but_keeps_the_schedule() -> None:
    data = split_data(load_images("digits"), seed=0).search_data()
    cand = Candidate(Architecture((ConvBlock(filters=4),), Head()), TrainConfig(epochs=3, batch_size=32))
    full, part = Trainer(cand, data, 0, "cpu"), Trainer(cand, data, 0, "cpu")
    a, b = full.run_epoch(), part.run_epoch(1 / 3)

    def steps(t: Trainer) -> int:
        return int(next(iter(t.optimizer.state.values()))["step"])

    assert steps(full) == len(data.y_train) // 32
    assert steps(part) == subset_size(len(data.y_train), 1 / 3) // 32
    assert a.fraction == 1.0 and b.fraction == pytest.approx(1 / 3)
    assert b.lr == pytest.approx(a.lr) and part.scheduler.last_epoch == full.scheduler.last_epoch
    again = Trainer(cand, data, 0, "cpu")
    again.restore(part.checkpoint())
    assert again.run_epoch(1 / 3).train_loss == part.run_epoch(1 / 3).train_loss  # a resume is exact


def _record(
    shares: list[float], seconds: list[float], epochs: int = 15, eval_share: float = 0.0, run_id: str = "run"
) -> TrialRecord:
    cand = Candidate(Architecture((ConvBlock(),), Head()), TrainConfig(epochs=epochs))
    nan = math.nan
    pairs = enumerate(zip(shares, seconds, strict=True))
    history = tuple(EpochResult(i + 1, nan, nan, nan, 0.5, s, 0.001, fraction=f) for i, (f, s) in pairs)
    return TrialRecord(0, 0, run_id, cand, fractions=tuple(LADDER.plan(epochs)), eval_share=eval_share, history=history)


def test_projections_scale_subset_epochs_to_all_of_the_data() -> None:
    rec = _record([1 / 9, 1 / 3, 1 / 3], [2.0, 3.0, 3.0])  # 9 s a full-data epoch
    assert rec.full_epoch_seconds() == pytest.approx(9.0)
    assert rec.projected_seconds() == pytest.approx(8.0 + 12 * 9.0)
    assert rec.projected_seconds(LADDER.plan(15, 1 / 3)) == pytest.approx(8.0 + 12 * 3.0)
    assert rec.fit_seconds() == pytest.approx(15 * 9.0)  # its final fit: all epochs on all of the data
    again = TrialRecord.from_json(rec.to_json())  # trials.jsonl keeps the plan and each epoch's share
    assert again.fractions == rec.fractions and [e.fraction for e in again.history] == [1 / 9, 1 / 3, 1 / 3]
    scored = _record([1 / 3], [4.0], eval_share=0.1)  # validation costs the same whatever the share
    assert scored.full_epoch_seconds() == pytest.approx(4.0 / (1 / 3 * 0.9 + 0.1))


def test_a_trial_that_cannot_afford_all_of_the_data_stays_on_its_share(tmp_path: Path) -> None:
    with session_for(plan_for(tmp_path, trials=1, time_budget=300.0)) as s:
        object.__setattr__(s, "data_ladder", LADDER)  # the digits are too few for the ladder: force it
        driver = SearchDriver(s, lambda _records: math.inf)
        limit = s.budget.trial_cap
        assert limit == pytest.approx(100.0)
        run_id = s.tracker.start_run("trial", {}, {}, parent=s.parent_run)

        def running(shares: list[float], seconds: list[float], **changes: Any) -> RunningTrial:
            return RunningTrial(dataclasses.replace(_record(shares, seconds, run_id=run_id), **changes))

        cheap = running([1 / 9, 1 / 3, 1 / 3], [0.5, 1.0, 1.0])  # 3 s a full epoch: 12 more take 36 s
        assert fit_ladder(driver.session, cheap).fractions == tuple(LADDER.plan(15))
        dear = running([1 / 9, 1 / 3, 1 / 3], [2.0, 3.0, 3.0])  # 9 s a full epoch: 12 more take 108 s
        assert fit_ladder(driver.session, dear).fractions == tuple(LADDER.plan(15, 1 / 3)) == dear.record.fractions
        assert (dear.record.projected_seconds() or 0) <= limit
        mid = running([1 / 9, 1 / 3], [2.0, 3.0], preset="held")  # not the start of a stage: nothing changes
        assert fit_ladder(driver.session, mid).fractions == tuple(LADDER.plan(15))
        # all of the data would be over its time, but it may still hold 1/3 at the next stage: not stopped
        rec = mid.record
        assert (rec.projected_seconds() or 0) > limit and (rec.projected_seconds(held_plan(LADDER, rec)) or 0) < limit
        epoch = JobResult("trial-0", epoch=rec.history[-1])  # a preset: no pruner asked, only the time rule decides
        assert driver._decide(mid, None, epoch) is None  # type: ignore[arg-type]
        # judged by its next rung, not the full schedule: 27 s a full epoch, 15 epochs even on 1/3 are
        # over its time (11 + 13 * 9 s), but its next rung, epoch 3, is 9 s away: it goes on
        slow = running([1 / 9, 1 / 3], [2.0, 9.0], preset="slow")
        assert (slow.record.projected_seconds(held_plan(LADDER, slow.record)) or 0) > limit
        assert driver._decide(slow, None, JobResult("trial-0", epoch=slow.record.history[-1])) is None  # type: ignore[arg-type]
        # at rung 3, 45 s a full epoch: rung 9 on 1/3 would take 32 + 6 * 15 s, over its 100 s: stopped
        slower = running([1 / 9, 1 / 3, 1 / 3], [2.0, 15.0, 15.0], preset="slow")
        ending = driver._decide(slower, None, JobResult("trial-0", epoch=slower.record.history[-1]))  # type: ignore[arg-type]
        assert ending is not None and slower.record.too_slow and "even on 33% of the data" in ending.reason
        assert "its next rung, epoch 9, would take 122 s" in ending.reason
        # a resume rebuilds the plan from the shares its epochs trained on (the study keeps no plan)
        held = running([1 / 9, 1 / 3, 1 / 3, 1 / 3], [2.0, 3.0, 3.0, 3.0], fractions=())
        restore_ladder(driver.session, held)
        assert held.record.fractions == tuple(LADDER.plan(15, 1 / 3)) and held.record.eval_share == s.eval_share
        mid.update(fractions=())
        restore_ladder(driver.session, mid)
        assert mid.record.fractions == tuple(LADDER.plan(15))


def test_a_search_on_the_ladder_trains_its_rungs_on_subsets_and_its_final_fit_on_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fidelity, "MIN_IMAGES", 100)
    monkeypatch.setattr(fidelity, "MIN_SUBSET", 50)
    with session_for(plan_for(tmp_path, trials=3, pruner="none")) as s:
        assert s.data_ladder is None  # no pruner, nothing stopped early: all of the data
    with session_for(plan_for(tmp_path / "b", trials=3, pruner="asha")) as s:
        assert s.data_ladder == LADDER
        records = SearchDriver(s, lambda _records: math.inf).run()
        done = [r for r in records if r.outcome == Outcome.COMPLETED]
        assert done, [r.reason for r in records]
        for rec in records:
            assert [e.fraction for e in rec.history] == pytest.approx(LADDER.plan(3)[: len(rec.history)])
        winner = max(done, key=lambda r: r.val_acc or 0)
        plan = plan_final(s, records, winner, [], time_left=0.5 * (winner.fit_seconds() or 0))
        assert plan.epochs[winner.number] == 1 and winner.epochs == 3
