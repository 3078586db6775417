"""``--metric``: accuracy or balanced accuracy, with ``auto`` choosing by the classes' imbalance,
drives the epochs' scores, the paired tests and promotion (automl_cnn/metrics.py)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from stores import mlflow_store

from automl_cnn.metrics import AUTO_IMBALANCE, image_weights, resolve, score
from automl_cnn.services.registry import Incumbent, Score, decide
from automl_cnn.stats import mcnemar


@pytest.mark.parametrize(
    ("counts", "chosen"),
    [([100, 100, 100], "accuracy"), ([150, 100], "accuracy"), ([151, 100], "balanced_accuracy"),
     ([900, 100], "balanced_accuracy")],
)  # fmt: skip
def test_auto_picks_balanced_accuracy_above_the_imbalance_threshold(counts: list[int], chosen: str) -> None:
    metric, why = resolve("auto", counts)
    assert metric == chosen and why.startswith("auto:")
    assert (max(counts) / min(counts) > AUTO_IMBALANCE) == (metric == "balanced_accuracy")
    assert resolve("accuracy", [900, 100]) == ("accuracy", "as asked (--metric)")


def test_balanced_accuracy_is_the_mean_recall_and_never_rewards_ignoring_the_rare_class() -> None:
    labels = np.array([0] * 90 + [1] * 10)
    never_rare = np.zeros(100, dtype=np.int64)
    assert score("accuracy", never_rare, labels) == pytest.approx(0.9)
    assert score("balanced_accuracy", never_rare, labels) == pytest.approx(0.5)
    weights = image_weights("balanced_accuracy", labels)
    assert weights is not None and weights.sum() == pytest.approx(1.0)
    assert weights[labels == 1].sum() == pytest.approx(0.5)  # each class carries the same mass
    assert image_weights("accuracy", labels) is None


def test_the_weighted_paired_test_is_mcnemars_with_equal_weights_and_sees_the_rare_class() -> None:
    rng = np.random.default_rng(3)
    for n in (12, 300):
        a, b = rng.random(n) < 0.8, rng.random(n) < 0.7
        plain, weighted = mcnemar(a, b), mcnemar(a, b, np.full(n, 1.0 / n))
        assert weighted.p_value == pytest.approx(plain.p_value, rel=0.05, abs=1e-3)
    # a gets 9 rare images right that b misses; b gets 12 common images right that a misses
    labels = np.array([0] * 900 + [1] * 30)
    a, b = np.ones(930, bool), np.ones(930, bool)
    a[:12] = False
    b[900:909] = False
    assert not mcnemar(a, b).a_better()  # by plain accuracy b is ahead
    balanced = mcnemar(a, b, image_weights("balanced_accuracy", labels))
    assert balanced.lead > 0 and balanced.a_better()


def test_promotion_compares_the_champion_under_this_searchs_weights() -> None:
    labels = np.array([0] * 900 + [1] * 30)
    new, old = np.ones(930, bool), np.ones(930, bool)
    new[:12] = False  # 12 common images worse
    old[900:909] = False  # 9 rare images worse: the champion scores higher plain accuracy
    weights = tuple(float(w) for w in image_weights("balanced_accuracy", labels))  # type: ignore[union-attr]
    champion = Incumbent("3", Score("fp", "split", float(old.mean()), tuple(old)))
    plain = decide("if-better", Score("fp", "split", float(new.mean()), tuple(new)), champion)
    assert not plain.promoted
    balanced = decide("if-better", Score("fp", "split", float(new.mean()), tuple(new), "balanced_accuracy", weights),
                      champion)  # fmt: skip
    assert balanced.promoted and "test balanced accuracy" in balanced.reason, balanced.reason


def _imbalanced_digits():  # type: ignore[no-untyped-def]
    from automl_cnn.data import load_images
    from automl_cnn.data.images import ImageSet

    digits = load_images("digits")
    keep = np.flatnonzero(digits.y < 4)
    rare = keep[digits.y[keep] == 3][:30]  # class 3 at ~1:6 of the others
    keep = np.sort(np.concatenate([keep[digits.y[keep] < 3], rare]))
    return ImageSet(digits.x[keep], digits.y[keep], digits.class_names[:4], "digits-imbalanced")


def test_a_real_search_under_auto_optimises_and_reports_balanced_accuracy(tmp_path: Path) -> None:
    from automl_cnn import search
    from automl_cnn.engine.runstate import RunState

    r = search(
        _imbalanced_digits(), "tiny", trials=2, pruner="none", warm_start="none", executor="inprocess",
        time_budget="3m", seed=0, progress=False, out=tmp_path / "out", tracking_uri=mlflow_store(tmp_path / "m.db"),
    )  # fmt: skip
    assert r.metric == "balanced_accuracy" and "the largest class has" in r.metric_reason
    # the trials' validation scores are balanced accuracy: recomputed from their stored predictions
    state = RunState.load(r.out_dir)
    assert r.data is not None
    y_val = r.data.images.y[r.data.val_idx]
    completed = [t for t in r.trials if t.val_acc is not None and state.load_val_probs(t.number) is not None]
    assert completed
    for t in completed:
        predicted = state.load_val_probs(t.number).argmax(1)
        assert t.val_acc == pytest.approx(score("balanced_accuracy", predicted, y_val), abs=1e-6)
    from automl_cnn.space.params import Choice
    from automl_cnn.space.schema import load_space

    searched = load_space(r.out_dir / "space.yaml")  # the space the run searched, as resume reads it
    assert searched.training.class_weighted == Choice((False, True))  # a weighted loss was tried too
    text = r.summary()
    assert "metric              balanced accuracy (auto: the largest class has" in text
    assert "test balanced acc.  " in text and "validation score" in text
    assert "how it was chosen (every score is balanced accuracy):" in text
    assert "## How the delivered model was chosen (scores: balanced_accuracy)" in (r.out_dir / "report.md").read_text()
    said = " ".join(f"{d.rule} {d.reason}" for d in r.decisions)
    assert "balanced accuracy" in said and re.search(r"(?<!balanced )\baccuracy\b", said) is None, said


def test_decisions_name_the_searchs_metric_where_they_said_accuracy() -> None:
    from automl_cnn.engine.final.outcome import Decision, in_metric

    said = Decision("winner", "which?", rule="the highest validation accuracy", reason="higher accuracy: 0.9 vs 0.8")
    assert in_metric((said,), "accuracy") == (said,)
    (named,) = in_metric((said,), "balanced accuracy")
    assert named.rule == "the highest validation balanced accuracy"
    assert named.reason == "higher balanced accuracy: 0.9 vs 0.8"
    assert in_metric((named,), "balanced accuracy") == (named,)  # never "balanced balanced"


def test_balanced_accuracy_makes_the_search_try_a_class_weighted_loss() -> None:
    from automl_cnn.engine.imbalance import searches_weighting, with_loss_weighting
    from automl_cnn.space.params import Choice, Fixed
    from automl_cnn.space.schema import load_space

    space = load_space("default")
    assert not searches_weighting(space)
    assert with_loss_weighting(space, "accuracy") is space
    weighted = with_loss_weighting(space, "balanced_accuracy")
    assert weighted.training.class_weighted == Choice((False, True)) and searches_weighting(weighted)
    import dataclasses

    forced = dataclasses.replace(space, training=dataclasses.replace(space.training, class_weighted=Fixed(True)))
    assert with_loss_weighting(forced, "balanced_accuracy") is forced  # the space's own choice stands


def test_a_class_weighted_candidate_trains_with_inverse_frequency_weights() -> None:
    from automl_cnn.data import split_data
    from automl_cnn.model.architecture import Architecture, Candidate, ConvBlock, Head, TrainConfig
    from automl_cnn.training.trainer import Trainer

    data = split_data(_imbalanced_digits(), seed=0).search_data()
    arch = Architecture((ConvBlock(filters=4),), Head())
    plain = Candidate(arch, TrainConfig(epochs=1))
    weighted = Candidate(arch, TrainConfig(epochs=1, class_weighted=True))
    assert '"class_weighted"' not in plain.to_json() and '"class_weighted": true' in weighted.to_json()
    assert Trainer(plain, data, seed=0, device="cpu").class_weights is None
    weights = Trainer(weighted, data, seed=0, device="cpu").class_weights
    counts = np.bincount(data.y_train, minlength=4)
    assert weights is not None and weights.tolist() == pytest.approx((len(data.y_train) / (4 * counts)).tolist())
    assert int(weights.argmax()) == 3  # the rare class weighs most


def test_macro_f1_is_refused_in_one_line_pointing_at_balanced_accuracy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from automl_cnn.cli import main
    from automl_cnn.engine.config import SearchConfig
    from automl_cnn.errors import UserInputError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(["search", "--data", "digits", "--metric", "macro_f1"])
    assert info.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: argument --metric: macro F1 is reported per class in the summary but not ")
    assert "use --metric balanced_accuracy, the closest selectable metric" in line
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(UserInputError, match="--metric 'macro_f1': macro F1 is reported per class"):
        SearchConfig.from_settings(metric="macro_f1")
    with pytest.raises(UserInputError, match="unknown metric 'f2'; use one of: auto, accuracy, balanced_accuracy"):
        SearchConfig.from_settings(metric="f2")


@pytest.mark.parametrize(("metric", "weighted"), [("auto", True), ("accuracy", False)])
def test_under_balanced_accuracy_the_presets_weight_their_loss_by_class(
    tmp_path: Path, metric: str, weighted: bool
) -> None:
    """On a short budget the warm-start presets may be the only trials that complete: under
    balanced accuracy they train with the class-weighted loss the search tries."""
    from optuna.trial import TrialState
    from sessions import base_settings, session_for

    from automl_cnn.app import make_plan
    from automl_cnn.engine.config import SearchConfig

    cfg = SearchConfig.from_settings(**{**base_settings(tmp_path), "warm_start": "classics", "metric": metric})
    with session_for(make_plan(_imbalanced_digits(), "default", cfg, None)) as s:
        presets = [t for t in s.study.get_trials(deepcopy=False) if t.state == TrialState.WAITING]
    fixed = [t.system_attrs["fixed_params"] for t in presets]  # what each enqueued trial will run
    assert len(fixed) >= 2 and all("blocks" in params for params in fixed)
    assert all(params.get("train.class_weighted", False) is weighted for params in fixed)
