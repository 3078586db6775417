"""Finding better CNNs sooner: constraints, repeats, several objectives, warm starts, final fits."""

from __future__ import annotations

import itertools
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from automl_cnn import search
from automl_cnn.engine.objectives import OBJECTIVES, dominates
from automl_cnn.engine.search.warmstart import load_study
from automl_cnn.errors import UserInputError
from automl_cnn.space.presets import PRESETS, project
from automl_cnn.space.schema import load_space

pytestmark = pytest.mark.slow
SPACES = Path(__file__).resolve().parent.parent / "search_spaces"
TESTS = Path(__file__).resolve().parent / "spaces"


def _search(tmp_path: Path, store: str, name: str, space: Path = SPACES / "tiny.yaml", **kw):  # type: ignore[no-untyped-def]
    kw.setdefault("warm_start", "none")
    return search("digits", space, workers=2, out=tmp_path / name, tracking_uri=store, progress=False, **kw)


def test_constrained_search_trains_no_infeasible_candidate(ray_session: None, tmp_path: Path, store: str) -> None:
    limit = 2500
    result = _search(tmp_path, store, "c", trials=10, max_params=limit, seed=2)
    rejected = [r for r in result.trials if "exceed --max-params" in r.reason]
    trained = [r for r in result.trials if r.history and r.duplicate_of is None]
    assert rejected and trained
    assert all(r.profile is not None and r.profile.params <= limit for r in trained)
    assert all(not r.history and r.outcome == "failed" for r in rejected)
    study = load_study(tmp_path / "c")
    for r in rejected:  # the sampler learns they are infeasible
        t = study.trials[r.number]
        assert t.state == optuna.trial.TrialState.PRUNED and t.constraints["max_params"] > 0


def test_a_weak_trial_is_stopped_early_and_told_to_the_study_as_pruned(
    ray_session: None, tmp_path: Path, store: str
) -> None:
    """Two trials in a row on one worker: a strong one, then one whose first epoch is far
    behind it (ten times smaller learning rate, no batch norm). ASHA stops the second at its
    first rung, and the study holds it as PRUNED with that epoch's score, never as COMPLETE."""
    same = {"blocks": 1, "block1.pooling": "max", "block1.filters": 4, "head.type": "global_avg"}
    strong = {**same, "block1.batch_norm": True, "train.learning_rate": 1.0e-2}
    weak = {**same, "block1.batch_norm": False, "train.learning_rate": 1.0e-3}
    result = search(
        "digits",
        SPACES / "tiny.yaml",
        trials=2,
        workers=1,
        seed=4,
        pruner="asha",
        warm_start="none",
        enqueue=(strong, weak),
        out=tmp_path / "p",
        tracking_uri=store,
        progress=False,
    )
    first, second = result.trials
    assert first.outcome == "completed" and len(first.history) == 3
    assert second.outcome == "pruned" and "pruner" in second.reason
    assert len(second.history) < 3 and second.history[-1].val_acc < first.history[len(second.history) - 1].val_acc
    trial = load_study(tmp_path / "p").trials[1]
    assert trial.state == optuna.trial.TrialState.PRUNED  # Optuna keeps the last rung's score as its value
    assert trial.intermediate_values == {e.epoch: e.val_acc for e in second.history}
    run = MlflowClient(store).get_run(second.run_id)
    assert run.info.status == "KILLED" and run.data.tags["automl_cnn.outcome"] == "pruned"


def test_a_repeat_is_not_retrained(ray_session: None, tmp_path: Path, store: str) -> None:
    result = _search(tmp_path, store, "d", space=TESTS / "single.yaml", trials=3, pruner="none")
    first, *repeats = result.trials
    assert first.outcome == "completed" and first.where  # trained on a worker
    for r in repeats:
        assert r.duplicate_of == 0
        assert r.where == {}  # never sent to a worker
        assert [e.val_acc for e in r.history] == [e.val_acc for e in first.history]
        assert "a repeat of trial 0" in r.reason
    client = MlflowClient(store)
    assert client.get_run(repeats[0].run_id).data.tags["automl_cnn.duplicate_of"] == "0"
    study = load_study(tmp_path / "d")
    assert [t.value for t in study.trials] == [first.val_acc] * 3


def test_multi_objective_front_is_mutually_non_dominated(ray_session: None, tmp_path: Path, store: str) -> None:
    result = _search(tmp_path, store, "m", trials=10, objectives=("accuracy", "params"), seed=1)
    front = result.pareto
    assert front, "no front"
    directions = [OBJECTIVES[o] for o in ("accuracy", "params")]
    for a, b in itertools.permutations(front, 2):
        assert not dominates([a["accuracy"], a["params"]], [b["accuracy"], b["params"]], directions)
    completed = [r for r in result.trials if r.outcome == "completed" and r.duplicate_of is None]
    for r in completed:  # every completed trial off the front is dominated by a member
        if r.number not in {row["trial"] for row in front}:
            assert any(
                dominates([m["accuracy"], m["params"]], [r.val_acc, r.profile.params], directions) for m in front
            )
    best = max(row["accuracy"] for row in front)
    winner = next(row for row in front if row["trial"] == result.best_trial)
    close = [row for row in front if row["accuracy"] >= best - 0.005]
    assert winner["params"] == min(row["params"] for row in close)
    assert (result.out_dir / "pareto.csv").is_file()
    from PIL import Image

    logged = {
        f.path for f in MlflowClient(store).list_artifacts(result.parent_run_id, "plots")
    }  # the study's views too, drawn for accuracy, the first objective
    page = (result.out_dir / "report.html").read_text()
    for name in ("pareto_front", "optimization_history", "param_importances", "parallel_coordinate"):
        with Image.open(result.out_dir / "plots" / f"{name}.png") as img:
            assert img.format == "PNG" and img.width >= 300
        assert f"plots/{name}.png" in logged and f"plots/{name}.png" in page
    assert "Pareto front" in result.summary()


def test_warm_start_presets_are_the_first_trials(ray_session: None, tmp_path: Path, store: str) -> None:
    space = load_space(SPACES / "tiny.yaml")
    result = _search(tmp_path, store, "w", trials=4, warm_start="classics")
    expected = [n for n in ("lenet5", "vgg_small", "keras_mnist", "resnet_small") if project(PRESETS[n].value, space)]
    assert expected == ["lenet5", "keras_mnist"]
    first = result.trials[: len(expected)]
    assert [r.preset for r in first] == expected
    assert [r.candidate for r in first] == [project(PRESETS[n].value, space)[0] for n in expected]  # type: ignore[index]


def test_warm_start_from_an_earlier_search_reuses_its_results(ray_session: None, tmp_path: Path, store: str) -> None:
    earlier = _search(tmp_path, store, "a", space=TESTS / "single.yaml", trials=1, pruner="none")
    later = _search(tmp_path, store, "b", space=TESTS / "single.yaml", trials=2, warm_start=str(tmp_path / "a"))
    assert all(r.duplicate_of == 0 and str(tmp_path / "a") in r.reason for r in later.trials)
    assert later.val_accuracy == earlier.val_accuracy
    study = load_study(tmp_path / "b")
    assert study.trials[0].user_attrs["warm_start_from"] == str(tmp_path / "a")  # told to the sampler


def test_warm_start_refuses_other_data(ray_session: None, tmp_path: Path, store: str) -> None:
    _search(tmp_path, store, "a", space=TESTS / "single.yaml", trials=1)
    with pytest.raises(UserInputError, match="searched other data or another split"):
        search(
            "digits",
            TESTS / "single.yaml",
            trials=1,
            seed=9,
            warm_start=str(tmp_path / "a"),
            out=tmp_path / "x",
            tracking_uri=store,
            progress=False,
        )
    assert not (tmp_path / "x").exists()
    # the same data and split, scored by another metric: its scores would not compare
    with pytest.raises(
        UserInputError,
        match=r"scored its trials by accuracy and this search scores by balanced accuracy.*\(pass --metric accuracy",
    ):
        search(
            "digits",
            TESTS / "single.yaml",
            trials=1,
            metric="balanced_accuracy",
            warm_start=str(tmp_path / "a"),
            out=tmp_path / "y",
            tracking_uri=store,
            progress=False,
        )
    assert not (tmp_path / "y").exists()


def test_final_repeats_and_top_k(ray_session: None, tmp_path: Path, store: str) -> None:
    settings = {"pruner": "none", "final_repeats": 2, "final_top_k": 2, "ensemble": "off"}
    result = _search(tmp_path, store, "f", trials=5, **settings)
    assert len(result.test_accuracies) == 2 and result.test_accuracy_std is not None
    assert len(result.final_table) == 2
    assert result.final_table[0]["trial"] == result.best_trial
    assert "±" in result.final_table[0]["test_accuracy"]
    client = MlflowClient(store)
    finals = [
        r for r in client.search_runs([result.experiment_id]) if r.data.tags.get("automl_cnn.final_fit") == "true"
    ]
    assert len(finals) == 4  # 2 seeds for each of the top 2
    seeds = {(r.data.params["trial"], r.data.params["seed"]) for r in finals}
    assert len(seeds) == 4 and len({s for _, s in seeds}) == 2  # the same two seeds for each design
    metrics = client.get_run(result.parent_run_id).data.metrics
    assert metrics["test_accuracy"] == result.test_accuracy  # the delivered model (the first seed, checked)
    assert result.delivered[0]["seed"] == min(int(seed) for _, seed in seeds)
    assert metrics["test_accuracy_mean"] == pytest.approx(sum(result.test_accuracies) / 2)
