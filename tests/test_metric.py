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
    champion = Incumbent("3", Score("fp", "split", float(old.mean()), tuple(old)))
    plain = decide("if-better", Score("fp", "split", float(new.mean()), tuple(new)), champion)
    assert not plain.promoted
    test_labels = tuple(int(v) for v in labels)
    balanced = decide("if-better", Score("fp", "split", float(new.mean()), tuple(new), "balanced_accuracy",
                      test_labels), champion)  # fmt: skip
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
    assert "decision rule       trained with the plain loss, a network predicts from its logits - log(prior)" in text
    assert "test balanced acc.  " in text and "validation score" in text
    assert "how it was chosen (every score is balanced accuracy):" in text
    assert "## How the delivered model was chosen (scores: balanced_accuracy)" in (r.out_dir / "report.md").read_text()
    said = " ".join(f"{d.rule} {d.reason}" for d in r.decisions)
    assert "balanced accuracy" in said and re.search(r"(?<!balanced )\baccuracy\b", said) is None, said


def test_a_real_search_under_macro_f1_optimises_tests_and_promotes_on_it(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from automl_cnn import search
    from automl_cnn.engine.runstate import RunState
    from automl_cnn.services.registry import decode_predicted

    store = mlflow_store(tmp_path / "m.db")
    r = search(
        _imbalanced_digits(), "tiny", trials=3, pruner="none", warm_start="none", executor="inprocess",
        time_budget="3m", seed=0, progress=False, out=tmp_path / "out", tracking_uri=store, metric="macro_f1",
    )  # fmt: skip
    assert r.metric == "macro_f1" and r.metric_reason == "as asked (--metric)"
    state = RunState.load(r.out_dir)
    assert r.data is not None
    y_val = r.data.images.y[r.data.val_idx]
    completed = [t for t in r.trials if t.val_acc is not None and state.load_val_probs(t.number) is not None]
    assert completed
    for t in completed:  # the trials' validation scores are macro F1 of their stored predictions
        predicted = state.load_val_probs(t.number).argmax(1)
        assert t.val_acc == pytest.approx(score("macro_f1", predicted, y_val), abs=1e-6)
    text = r.summary()
    assert "metric              macro F1 (as asked (--metric)): it chose, pruned and promoted" in text
    assert re.search(r"test macro F1 +\d+\.\d% \(\d+\.\d–\d+\.\d, bootstrap over test images\)", text), text
    assert "how it was chosen (every score is macro F1):" in text
    assert "## How the delivered model was chosen (scores: macro_f1)" in (r.out_dir / "report.md").read_text()
    said = " ".join(f"{d.rule} {d.reason}" for d in r.decisions)
    assert "macro F1" in said and "McNemar" not in said, said
    assert re.search(r"(?<!balanced )\baccuracy\b", said) is None, said
    name = r.model_uri.removeprefix("models:/").split("@")[0]
    version = MlflowClient(store).get_model_version(name, r.model_version)
    assert version.tags["automl_cnn.metric"] == "macro_f1"
    predicted = decode_predicted(version.tags["automl_cnn.test_predicted"])
    assert predicted is not None and len(predicted) == r.test_images


def test_decisions_name_the_searchs_metric_where_they_said_accuracy() -> None:
    from automl_cnn.engine.final.outcome import Decision, in_metric

    said = Decision("winner", "which?", rule="the highest validation accuracy", reason="higher accuracy: 0.9 vs 0.8")
    assert in_metric((said,), "accuracy") == (said,)
    (named,) = in_metric((said,), "balanced accuracy")
    assert named.rule == "the highest validation balanced accuracy"
    assert named.reason == "higher balanced accuracy: 0.9 vs 0.8"
    assert in_metric((named,), "balanced accuracy") == (named,)  # never "balanced balanced"
    tested = Decision("winner", "which?", rule="only if better (McNemar, 5%)", reason="not better (McNemar p=0.3)")
    (f1,) = in_metric((tested,), "macro F1", "paired permutation")
    assert (f1.rule, f1.reason) == ("only if better (paired permutation, 5%)", "not better (paired permutation p=0.3)")


def test_balanced_accuracy_makes_the_search_try_a_class_weighted_loss() -> None:
    import dataclasses

    from automl_cnn.engine.imbalance import preset_loss, searched_losses, with_loss_weighting
    from automl_cnn.space.params import Choice, Fixed
    from automl_cnn.space.schema import load_space

    space = load_space("default")
    assert not searched_losses(space)
    assert with_loss_weighting(space, "accuracy") is space
    weighted = with_loss_weighting(space, "balanced_accuracy")
    assert weighted.training.class_weighted == Choice((False, True)) and searched_losses(weighted) == [
        "a class-weighted loss"
    ]
    assert weighted.training.logit_adjusted == Fixed(False)  # a space's own choice, never added
    # the presets: under macro F1 weighted; under balanced accuracy the post-hoc shift corrects their plain loss
    assert preset_loss(weighted, "macro_f1") == {"train.class_weighted": True}
    assert preset_loss(weighted, "balanced_accuracy") == {} == preset_loss(space, "macro_f1")
    forced = dataclasses.replace(space, training=dataclasses.replace(space.training, class_weighted=Fixed(True)))
    assert with_loss_weighting(forced, "balanced_accuracy") is forced  # the space's own choice stands


def test_under_balanced_accuracy_a_plain_loss_network_is_scored_and_handed_in_adjusted() -> None:
    """Post-hoc logit adjustment (training/posthoc.py): scores and probabilities come from the
    logits less log(prior); the weights handed in carry the shift in the classifier's bias, so
    the network built from them predicts exactly that; checkpoints keep the network that trains,
    and a fit started from handed-in weights trains on from it."""
    import dataclasses

    import torch

    from automl_cnn.data import split_data
    from automl_cnn.model.architecture import Architecture, Candidate, ConvBlock, Head, TrainConfig
    from automl_cnn.model.builder import build_model
    from automl_cnn.training.trainer import Trainer

    data = dataclasses.replace(split_data(_imbalanced_digits(), seed=0).search_data(), metric="balanced_accuracy")
    arch = Architecture((ConvBlock(filters=8),), Head())
    trainer = Trainer(Candidate(arch, TrainConfig(epochs=2)), data, seed=0, device="cpu")
    result = trainer.run_epoch()
    counts = np.bincount(data.y_train, minlength=4)
    assert trainer.shift is not None and trainer.classifier == "head.1"
    assert trainer.shift.tolist() == pytest.approx(np.log(counts / counts.sum()).tolist(), rel=1e-5)
    trainer.model.eval()
    with torch.no_grad():
        raw = trainer.model(torch.as_tensor(data.x_eval, dtype=torch.float32) / 255.0)
    adjusted = (raw - trainer.shift).argmax(1).numpy()
    assert result.val_acc == pytest.approx(score("balanced_accuracy", adjusted, data.y_eval), abs=1e-9)
    assert (raw.argmax(1).numpy() == 3).sum() < (adjusted == 3).sum()  # the rare class gains
    out = trainer.outputs()
    assert (np.asarray(out.eval_probs, np.float32).argmax(1) == adjusted).all()
    handed = build_model(arch, data.input_shape, data.num_classes, data.mean, data.std).eval()
    handed.load_state_dict(out.weights)
    with torch.no_grad():
        delivered = handed(torch.as_tensor(data.x_eval, dtype=torch.float32) / 255.0)
    assert torch.allclose(delivered, raw - trainer.shift, atol=1e-5)  # what is exported and served
    kept = torch.load(__import__("io").BytesIO(trainer.checkpoint()), weights_only=False)["model"]
    assert torch.equal(kept["head.1.bias"], trainer.model.state_dict()["head.1.bias"])  # unshifted
    again = Trainer(Candidate(arch, TrainConfig(epochs=2)), data, seed=0, device="cpu")
    again.start_from(out.weights)
    assert torch.allclose(again.model.state_dict()["head.1.bias"], trainer.model.state_dict()["head.1.bias"])
    # no shift under accuracy, or for a loss that already corrects for the prior
    plain = dataclasses.replace(data, metric="accuracy")
    assert Trainer(Candidate(arch, TrainConfig(epochs=1)), plain, seed=0, device="cpu").shift is None
    for corrected in (TrainConfig(epochs=1, class_weighted=True), TrainConfig(epochs=1, logit_adjusted=True)):
        assert Trainer(Candidate(arch, corrected), data, seed=0, device="cpu").shift is None


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


def test_the_logit_adjusted_loss_makes_the_network_predict_the_rare_class_more_often() -> None:
    """The loss sees logits + log(prior); the network's own logits (what is scored, exported and
    served) then favour the rare class over what the plain loss learns, on the same seed."""
    from automl_cnn.data import split_data
    from automl_cnn.model.architecture import Architecture, Candidate, ConvBlock, Head, TrainConfig
    from automl_cnn.training.trainer import Trainer

    data = split_data(_imbalanced_digits(), seed=0).search_data()
    arch = Architecture((ConvBlock(filters=8),), Head())
    rare_predicted = {}
    for adjusted in (False, True):
        candidate = Candidate(arch, TrainConfig(epochs=3, logit_adjusted=adjusted))
        trainer = Trainer(candidate, data, seed=0, device="cpu")
        for _ in range(3):
            trainer.run_epoch()
        logits, _ = trainer.predict_logits(trainer.eval_batches)
        rare_predicted[adjusted] = int((logits.argmax(1) == 3).sum())
        if adjusted:
            counts = np.bincount(data.y_train, minlength=4)
            assert trainer.logit_offset is not None
            assert trainer.logit_offset.tolist() == pytest.approx(np.log(counts / counts.sum()).tolist(), rel=1e-5)
            assert '"logit_adjusted": true' in candidate.to_json()
        else:
            assert trainer.logit_offset is None and "logit_adjusted" not in candidate.to_json()
    assert rare_predicted[True] > rare_predicted[False], rare_predicted


def test_metric_names_are_checked_in_one_line_and_macro_f1_is_selectable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from automl_cnn.cli import main
    from automl_cnn.engine.config import SearchConfig
    from automl_cnn.errors import UserInputError

    assert SearchConfig.from_settings(metric="macro_f1").search.metric == "macro_f1"
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(["search", "--data", "digits", "--metric", "f2"])
    assert info.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    known = "auto, accuracy, balanced_accuracy, macro_f1"
    assert line.startswith(f"error: argument --metric: unknown metric 'f2'; use one of: {known} (")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(UserInputError, match="unknown metric 'f2'; use one of: auto, accuracy, balanced_accuracy"):
        SearchConfig.from_settings(metric="f2")


def test_macro_f1_matches_scikit_learn_and_charges_false_alarms_of_a_rare_class() -> None:
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    for classes, n in ((2, 50), (5, 400), (10, 1000)):
        labels = rng.integers(0, classes, n)
        predicted = np.where(rng.random(n) < 0.7, labels, rng.integers(0, classes, n))
        assert score("macro_f1", predicted, labels) == pytest.approx(f1_score(labels, predicted, average="macro"))
    labels = np.array([0] * 90 + [1] * 10)
    finds_all = labels.copy()
    alarms = labels.copy()
    alarms[:30] = 1  # every rare image found, and 30 common ones called rare as well
    # balanced accuracy forgives the false alarms far more than macro F1 does
    assert score("balanced_accuracy", alarms, labels) == pytest.approx((60 / 90 + 1) / 2)
    assert score("macro_f1", alarms, labels) == pytest.approx((2 * 60 / 150 + 2 * 10 / 50) / 2)
    assert score("macro_f1", finds_all, labels) == 1.0
    assert score("macro_f1", alarms, labels) < score("balanced_accuracy", alarms, labels) - 0.2


def test_the_macro_f1_permutation_test_is_exact_on_few_differences_and_sees_a_clear_lead() -> None:
    import itertools

    from automl_cnn.metrics import Yardstick, macro_f1

    rng = np.random.default_rng(4)
    labels = rng.integers(0, 3, 40)
    a = np.where(rng.random(40) < 0.85, labels, rng.integers(0, 3, 40))
    b = np.where(rng.random(40) < 0.6, labels, rng.integers(0, 3, 40))
    differ = np.flatnonzero(a != b)
    assert 4 <= len(differ) <= 16
    observed = macro_f1(a, labels) - macro_f1(b, labels)
    at_least = 0
    for swap in itertools.product((False, True), repeat=len(differ)):  # every swap pattern, by hand
        x, y = a.copy(), b.copy()
        x[differ[list(swap)]], y[differ[list(swap)]] = b[differ[list(swap)]], a[differ[list(swap)]]
        at_least += macro_f1(x, labels) - macro_f1(y, labels) >= observed - 1e-12
    test = Yardstick("macro_f1", labels).compare(a, b)
    assert test.name == "paired permutation" and test.lead == pytest.approx(observed)
    assert test.p_value == pytest.approx(at_least / 2 ** len(differ))
    # many images: a model right on 85% of 3,000 images beats one right on 80%, not the reverse
    labels = rng.integers(0, 4, 3000)
    good = np.where(rng.random(3000) < 0.85, labels, (labels + 1) % 4)
    worse = np.where(rng.random(3000) < 0.80, labels, (labels + 1) % 4)
    stick = Yardstick("macro_f1", labels)
    assert stick.better(good, worse) and not stick.better(worse, good)
    assert stick.p_value(worse, good) == 1.0
    assert stick.compare(good, worse).p_value == stick.compare(good, worse).p_value  # the same p every time


def test_promotion_under_macro_f1_pairs_the_recorded_predictions() -> None:
    from automl_cnn.services.registry import decode_predicted, encode_predicted

    labels = np.array([0] * 900 + [1] * 60)
    old = labels.copy()
    old[900:960:2] = 0  # the champion misses half the rare class
    new = labels.copy()
    new[:10] = 1  # the new model finds every rare image, with 10 false alarms
    predicted = tuple(int(v) for v in new)
    assert decode_predicted(encode_predicted(predicted)) == predicted
    assert decode_predicted(encode_predicted(tuple(int(v) for v in old))) == tuple(int(v) for v in old)

    def as_score(pred: np.ndarray, **extra: object) -> Score:
        return Score("fp", "split", float(np.mean(pred == labels)), tuple(pred == labels), **extra)  # type: ignore[arg-type]

    champion = Incumbent("4", as_score(old, predicted=tuple(int(v) for v in old)))
    labelled = {"metric": "macro_f1", "labels": tuple(int(v) for v in labels)}
    decision = decide("if-better", as_score(new, predicted=predicted, **labelled), champion)
    assert decision.promoted, decision.reason
    assert "test macro F1" in decision.reason and "paired permutation p=" in decision.reason
    unpaired = decide("if-better", as_score(new, predicted=predicted, **labelled), Incumbent("4", as_score(old)))
    assert "by accuracy alone (champion version 4 kept no per-image test predictions, which macro F1 needs," in (
        unpaired.reason
    )


@pytest.mark.parametrize(("metric", "weighted"), [("macro_f1", True), ("auto", False), ("accuracy", False)])
def test_under_macro_f1_the_presets_weight_their_loss_by_class(tmp_path: Path, metric: str, weighted: bool) -> None:
    """On a short budget the warm-start presets may be the only trials that complete: under
    macro F1 they train with the class-weighted loss the search tries (under balanced accuracy,
    auto here, the post-hoc shift corrects their plain loss)."""
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
    assert not any(params.get("train.logit_adjusted", False) for params in fixed)
