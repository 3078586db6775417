"""Selection that knows its noise: trials within noise of the winner get a second seed, on a real
in-process session (digits, real training), and the winner is the best over two seeds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from sessions import plan_for, session_for

from automl_cnn.engine.final.fits import pick_winner
from automl_cnn.engine.final.outcome import SECOND_SEEDS, WINNER
from automl_cnn.engine.final.tiebreak import MAX_CONTENDERS, break_ties, contenders
from automl_cnn.engine.search.driver import SearchDriver


def never(_records: object) -> float:
    return float("inf")


def test_trials_within_noise_get_a_second_seed_and_the_best_mean_wins(tmp_path: Path) -> None:
    plan = plan_for(tmp_path, trials=6, pruner="none", seed=1)
    with session_for(plan) as s:
        records = SearchDriver(s, never).run()
        winner = pick_winner(records)
        group = contenders(s, records, winner)
        assert group and group[0] is winner and 2 <= len(group) <= MAX_CONTENDERS
        y = s.bundle.images.y[s.bundle.val_idx]
        best, stick = s.state.load_val_probs(winner.number), s.yardstick(y)
        for rec in group[1:]:  # none of them is significantly worse than the winner
            assert not stick.better(best, s.state.load_val_probs(rec.number))

        short = break_ties(s, records, winner, time_left=0.0, reserve=0.0).decisions
        assert [d.topic for d in short] == [WINNER, SECOND_SEEDS] and short[1].answer == "none"
        assert short[1].reason.endswith("no time is left for second seeds")
        assert break_ties(s, records, winner, time_left=None, reserve=0.0).winner is winner  # no budget to spend
        tie = break_ties(s, records, winner, time_left=1e6, reserve=0.0)
        assert set(tie.means) == {r.number for r in group} and tie.winner in group
        top = max(tie.means.values())
        assert tie.means[tie.winner.number] >= top - 1 / len(y)
        within = [r for r in group if tie.means[r.number] >= top - 1 / len(y)]
        flops = [r.profile.flops for r in within if r.profile]
        assert tie.winner.profile is not None and tie.winner.profile.flops == min(flops)  # ties go to the simplest
        seeds = tie.decisions[1]
        assert seeds.topic == SECOND_SEEDS and seeds.answer == f"trial {tie.winner.number}" and seeds.images == len(y)
        assert "over two seeds" in seeds.reason or "a tie goes to the simpler model" in seeds.reason
        runs = MlflowClient(plan.config.resolved_tracking_uri()).search_runs(
            [s.tracker.experiment_id],
            f"tags.`automl_cnn.second_seed` = 'true' and tags.`mlflow.parentRunId` = '{s.parent_run}'",
        )
        assert sorted(int(r.data.tags["automl_cnn.trial_of_second_seed"]) for r in runs) == sorted(tie.means)
        assert all(r.info.status == "FINISHED" for r in runs)
        client, by_number = MlflowClient(plan.config.resolved_tracking_uri()), {r.number: r for r in group}
        for run in runs:  # each mean is of the search's score and the second seed's last one
            number = int(run.data.tags["automl_cnn.trial_of_second_seed"])
            second = client.get_metric_history(run.info.run_id, "val_acc")[-1].value
            assert tie.means[number] == pytest.approx(((by_number[number].val_acc or 0) + second) / 2, abs=1e-6)
        assert np.isfinite(list(tie.means.values())).all()


def test_a_clear_winner_has_no_contenders(tmp_path: Path) -> None:
    plan = plan_for(
        tmp_path,
        trials=2,
        pruner="none",
        enqueue=(
            {
                "blocks": 1,
                "block1.filters": 8,
                "block1.pooling": "max",
                "block1.batch_norm": True,
                "head.type": "flatten",
                "train.learning_rate": 0.005,
            },
            {
                "blocks": 1,
                "block1.filters": 4,
                "block1.pooling": "none",
                "block1.batch_norm": False,
                "head.type": "global_avg",
                "train.learning_rate": 0.001,
            },
        ),
    )
    with session_for(plan) as s:
        records = SearchDriver(s, never).run()
        winner = pick_winner(records)
        assert (winner.val_acc or 0) > 0.8 > min(r.val_acc or 0 for r in records)  # far apart
        assert contenders(s, records, winner) == []
        assert break_ties(s, records, winner, time_left=1e6, reserve=0.0).winner is winner
