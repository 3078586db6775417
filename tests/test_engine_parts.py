"""The smaller parts of the engine, each on its own: the gate before training, the search
deadline, what an ending tells, the result tables, and the data reading options."""

from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
from optuna.trial import TrialState
from PIL import Image
from sessions import plan_for, session_for

from automl_cnn.data.files import Entry, choose_size, load_entries
from automl_cnn.data.options import DEFAULT_OPTIONS, DataOptions
from automl_cnn.deliver.tables import pareto_rows, trial_rows, write_rows
from automl_cnn.engine.budget import EXPORT_RESERVE_SECONDS, Budget
from automl_cnn.engine.estimates import SearchDeadline, final_jobs_estimate
from automl_cnn.engine.outcome import Outcome
from automl_cnn.engine.records import TrialRecord
from automl_cnn.engine.search.cost import CostModel
from automl_cnn.engine.search.dedupe import Known
from automl_cnn.engine.search.endings import Endings
from automl_cnn.engine.search.gate import static_check
from automl_cnn.engine.search.running import RunningTrial
from automl_cnn.engine.session import SearchSession
from automl_cnn.model.architecture import Architecture, Candidate, ConvBlock, Head, TrainConfig
from automl_cnn.model.measures import EpochResult, Profile

SMALL = Candidate(Architecture((ConvBlock(filters=4),), Head()), TrainConfig(epochs=4))
TOO_DEEP = Candidate(Architecture(tuple(ConvBlock(filters=4, pooling="max") for _ in range(4)), Head()), TrainConfig())


def _epoch(n: int, acc: float, seconds: float = 1.0) -> EpochResult:
    return EpochResult(n, 1.0, 0.5, 1.0, acc, seconds, 0.01)


def _record(
    number: int, candidate: Candidate = SMALL, *history: EpochResult, outcome: str = "completed"
) -> TrialRecord:
    return TrialRecord(number, seed=number, run_id="", candidate=candidate, outcome=outcome, history=history)


def _run(s: SearchSession, rec: TrialRecord) -> RunningTrial:
    run_id = s.tracker.start_run(f"t{rec.number}", {}, {}, parent=s.parent_run)
    return RunningTrial(dataclasses.replace(rec, run_id=run_id))


def test_gate_refuses_what_cannot_be_built_breaks_a_limit_or_is_too_slow(tmp_path: Path) -> None:
    with session_for(plan_for(tmp_path, trials=1, max_flops=10**9, time_budget=60.0)) as s:
        cost = CostModel(len(s.bundle.train_idx), len(s.bundle.val_idx))
        infeasible = static_check(s, _run(s, _record(0, TOO_DEEP)), cost)
        assert infeasible is not None and infeasible.study_state == TrialState.FAIL
        assert "below 1x1" in infeasible.reason
        fine = _run(s, _record(1))
        assert static_check(s, fine, cost) is None
        profiled = fine.record  # the gate profiled it: a new record
        assert profiled.profile is not None
        assert profiled.latency_ms is None  # no latency limit or objective: timed only if it completes
        for _ in range(3):  # this machine trains a FLOP at most this fast
            cost.observe(profiled.profile.flops, 1000.0)
        slow = static_check(s, _run(s, _record(2)), cost)
        assert slow is not None and slow.outcome == Outcome.FAILED and slow.study_state == TrialState.PRUNED
        assert "a trial may take in this time budget" in slow.reason and slow.constraints["trial_seconds"] > 0
    with session_for(plan_for(tmp_path / "b", trials=1, max_params=5)) as s:
        over = static_check(s, _run(s, _record(3)), CostModel(1, 1))
        assert over is not None and set(over.constraints) == {"max_params"}
    for folder, limits in (("c", {"max_latency_ms": 1e6}), ("d", {"objectives": ("accuracy", "latency")})):
        with session_for(plan_for(tmp_path / folder, trials=1, **limits)) as s:
            timed = _run(s, _record(4))  # a latency limit or objective: timed before training
            assert static_check(s, timed, CostModel(1, 1)) is None
            assert timed.record.latency_ms is not None and timed.record.latency_ms > 0
            assert s.tracker.client.get_run(timed.record.run_id).data.metrics["latency_ms"] > 0


def test_the_gate_refuses_only_a_candidate_whose_first_rung_cannot_fit(tmp_path: Path) -> None:
    """Judged by the first rung (epoch 1 under ASHA), never by the full 15-epoch schedule."""
    long = dataclasses.replace(SMALL, training=TrainConfig(epochs=15))
    with session_for(plan_for(tmp_path, trials=1, time_budget=60.0, pruner="asha")) as s:
        limit = s.budget.trial_cap
        assert limit == pytest.approx(20.0)  # refused over 1.5 x 20 s
        probe = _run(s, _record(0, long))
        assert static_check(s, probe, CostModel(1, 1)) is None  # nothing measured: profiled, admitted
        assert probe.record.profile is not None
        flops = probe.record.profile.flops
        cost = CostModel(len(s.bundle.train_idx), len(s.bundle.val_idx))
        for _ in range(3):  # at best 5 s an epoch: 15 epochs take at least 75 s, over 30 s
            cost.observe(flops, 5.0)
        admitted = _run(s, _record(1, long))
        assert static_check(s, admitted, cost) is None and admitted.record.profile is not None
        dear = CostModel(len(s.bundle.train_idx), len(s.bundle.val_idx))
        for _ in range(3):  # at best 40 s an epoch: even its first rung is over 30 s
            dear.observe(flops, 40.0)
        refused = static_check(s, _run(s, _record(2, long)), dear)
        assert refused is not None and refused.outcome == Outcome.FAILED and refused.study_state == TrialState.PRUNED
        assert refused.reason.startswith("not trained: its first rung, epoch 1, takes at least 40 s")
        assert refused.constraints["trial_seconds"] == pytest.approx(40.0 / 20.0 - 1)
    with session_for(plan_for(tmp_path / "b", trials=1, time_budget=60.0, pruner="none")) as s:
        # without a pruner the first rung is the last epoch: 75 s, refused
        refused = static_check(s, _run(s, _record(3, long)), cost)
        assert refused is not None and "its last epoch, 15, takes at least 75 s" in refused.reason


def test_the_deadline_leaves_room_for_the_final_fit(tmp_path: Path) -> None:
    with session_for(plan_for(tmp_path, trials=1, time_budget=100.0)) as s:
        deadline = SearchDeadline(s)
        assert deadline([]) == pytest.approx(100.0 - EXPORT_RESERVE_SECONDS)  # on the budget's clock
        leader = _record(0, SMALL, _epoch(1, 0.9, 5.0))
        final = final_jobs_estimate(s, [leader], deadline.members)
        assert final > 0.0  # its 4 epochs of 5 s, scaled to the final fit's data and threads
        assert deadline([leader]) == pytest.approx(100.0 - final - EXPORT_RESERVE_SECONDS)
        slow = dataclasses.replace(_record(1, SMALL, _epoch(1, 0.95, 5.0)), too_slow=True)  # never leads
        assert final_jobs_estimate(s, [leader, slow], 1) == final_jobs_estimate(s, [leader], 1)
    with session_for(plan_for(tmp_path / "b", trials=1)) as s:
        assert s.budget == Budget(None, 0.0)
        assert SearchDeadline(s)([leader]) == math.inf  # no time budget


def test_an_ending_without_a_finite_score_is_a_failure(tmp_path: Path) -> None:
    with session_for(plan_for(tmp_path, trials=1)) as s:
        endings = Endings(s, Known())
        assert endings.values(_record(0, SMALL, _epoch(1, 0.8))) == (0.8,)
        assert endings.values(_record(1, SMALL, _epoch(1, float("nan")))) is None
        assert endings.values(_record(2)) is None


def test_tables_list_every_trial_and_the_front(tmp_path: Path) -> None:
    a = dataclasses.replace(_record(0, SMALL, _epoch(1, 0.9)), profile=Profile(100, 1000, ()))
    b = dataclasses.replace(_record(1, SMALL, _epoch(1, 0.8)), profile=Profile(50, 500, ()))
    dominated = dataclasses.replace(_record(2, SMALL, _epoch(1, 0.7)), profile=Profile(200, 2000, ()))
    failed = _record(3, SMALL, outcome="failed")
    rows = trial_rows([a, b, dominated, failed])
    assert [r["outcome"] for r in rows] == ["completed", "completed", "completed", "failed"]
    assert rows[3]["val_accuracy"] == "" and rows[0]["val_accuracy"] == "0.9000"
    front = pareto_rows([a, b, dominated, failed], ("accuracy", "params"))
    assert [r["trial"] for r in front] == [0, 1]  # most accurate first; trial 2 is dominated
    write_rows(tmp_path / "t.csv", rows)
    with (tmp_path / "t.csv").open(encoding="utf-8") as f:
        read = list(csv.DictReader(f))
    assert [r["trial"] for r in read] == ["0", "1", "2", "3"] and read[1]["params"] == "50"


def test_data_options_are_declared_once_and_read_files(tmp_path: Path) -> None:
    assert DataOptions() == DEFAULT_OPTIONS
    assert DataOptions(data_root="~/x").data_root == Path("~/x")  # type: ignore[arg-type]
    assert choose_size([(8, 8), (8, 8), (10, 12)]) == (8, 8)
    entries = []
    for label in (0, 1):
        for i in range(3):
            path = tmp_path / f"{label}-{i}.png"
            Image.fromarray(np.full((10, 12), 40 + 100 * label, np.uint8)).save(path)
            entries.append(Entry(path, label))
    images = load_entries(entries, ("a", "b"), "t", tmp_path, DataOptions(image_size=(6, 6)))
    assert images.x.shape == (6, 1, 6, 6) and list(images.y) == [0, 0, 0, 1, 1, 1]
    streamed = load_entries(entries, ("a", "b"), "t", tmp_path, DataOptions(stream=True))
    assert streamed.streamed and streamed.input_shape == (1, 10, 12)
    assert np.array_equal(streamed.x.read(), load_entries(entries, ("a", "b"), "t", tmp_path, DEFAULT_OPTIONS).x)


def test_requests_that_can_never_be_placed_are_refused_and_too_many_workers_capped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from automl_cnn.engine.config import SearchConfig
    from automl_cnn.engine.resources import plan_resources
    from automl_cnn.errors import UserInputError

    two_cores = {"CPU": 2.0}
    with pytest.raises(UserInputError, match=r"--cpus-per-trial 8 is more than any node .* \(2 CPUs\)"):
        plan_resources(SearchConfig.from_settings(cpus_per_trial=8), two_cores)
    with pytest.raises(UserInputError, match=r"--gpus-per-trial 1 is more than .* \(no GPU\); drop --gpus"):
        plan_resources(SearchConfig.from_settings(gpus_per_trial=1), two_cores)
    cluster = {"CPU": 8.0, "node_CPU": 4.0, "GPU": 2.0, "node_GPU": 1.0}  # two nodes of 4 CPUs, 1 GPU
    with pytest.raises(UserInputError, match="more than any node"):
        plan_resources(SearchConfig.from_settings(cpus_per_trial=6), cluster)
    assert plan_resources(SearchConfig.from_settings(gpus_per_trial=0.5), cluster).workers == 4
    with caplog.at_level("WARNING", logger="automl_cnn"):
        capped = plan_resources(SearchConfig.from_settings(workers=4), two_cores)
    assert capped.workers == 2 and "--workers 4 capped to 2" in caplog.text
    assert plan_resources(SearchConfig(), two_cores) == plan_resources(SearchConfig.from_settings(workers=2), two_cores)
    assert plan_resources(SearchConfig.from_settings(executor="inprocess"), two_cores).workers == 1
