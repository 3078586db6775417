"""The registered model: ``champion`` moves only by promotion, on a shared yardstick."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from datafiles import digits_subset
from mlflow.tracking import MlflowClient
from sessions import FAILURES, plan_for, session_for
from stores import mlflow_store

import automl_cnn
from automl_cnn.cli import build_parser
from automl_cnn.deliver.deliver import deliver
from automl_cnn.deliver.result import SearchResult
from automl_cnn.engine.config import SearchConfig
from automl_cnn.engine.final.fits import final_fit, pick_winner
from automl_cnn.engine.records import TrialRecord
from automl_cnn.engine.search.driver import SearchDriver
from automl_cnn.engine.session import split_id
from automl_cnn.errors import UserInputError
from automl_cnn.services.registry import (
    CHALLENGER,
    CHAMPION,
    Decision,
    Incumbent,
    ModelEntry,
    ModelRegistry,
    Score,
    decide,
    decode_correct,
    decode_predicted,
    encode_correct,
)
from automl_cnn.services.tracking import MlflowTracker

SPLIT = "seed 0, fractions 0.7/0.15/0.15, test 270"
NEW = Score("aaaa1111bbbb2222", SPLIT, 0.95)
GOOD = {"blocks": 1, "block1.pooling": "max", "train.learning_rate": 0.05}  # ~0.9 on digits in 2 epochs
WEAK = {"blocks": 3, **{f"block{i}.pooling": "max" for i in range(1, 4)}, "train.learning_rate": 0.05}  # 1x1 maps


def _champion(accuracy: float, fingerprint: str = NEW.fingerprint, split: str = SPLIT) -> Incumbent:
    return Incumbent("2", Score(fingerprint, split, accuracy))


def _scored(right: int, wrong_first: int = 0, n: int = 270) -> Score:
    """A score on the 270 test images of SPLIT: ``right`` of them right, after the first
    ``wrong_first`` images, which it gets wrong."""
    assert wrong_first + right <= n
    correct = tuple(wrong_first <= i < wrong_first + right for i in range(n))
    return Score(NEW.fingerprint, SPLIT, right / n, correct)


def _decide(policy: str, champion: Incumbent | None) -> Decision:
    """The decision for a new version scoring NEW."""
    return decide(policy, NEW, champion)


# -- the decision ------------------------------------------------------------------------------
def test_a_one_image_gain_on_the_same_test_images_is_noise() -> None:
    champion = Incumbent("2", _scored(250, wrong_first=1))  # wrong on image 0, and on 251..269
    new = _scored(251)  # right on image 0 too: one image more
    assert new.test_accuracy > champion.score.test_accuracy  # type: ignore[union-attr]
    assert decide("if-better", new, champion) == Decision(
        CHALLENGER,
        "2",
        "not promoted: test 92.96% vs champion version 2's 92.59% on the same 270 test images is not "
        "significantly better (McNemar p=0.5; of the images only one model gets right, 1 are this model's "
        "and 0 the champion's)",
    )


def test_a_gain_well_beyond_noise_on_the_same_test_images_is_promoted() -> None:
    champion = Incumbent("2", _scored(240, wrong_first=10))
    d = decide("if-better", _scored(250), champion)  # right on 0..249: 10 images more, none fewer
    assert (d.alias, d.compared_with) == (CHAMPION, "2")
    assert d.reason == (
        "promoted: test 92.59% vs champion version 2's 88.89% on the same 270 test images, significantly "
        "better (McNemar p=0.00098; of the images only one model gets right, 10 are this model's and 0 the "
        "champion's)"
    )
    # the same net gain of 10 images among more disagreements: 20 against 10 is p=0.049, below 5%;
    # 30 against 20 is p=0.10, noise
    assert decide("if-better", _scored(250), Incumbent("2", _scored(240, wrong_first=20))).promoted
    assert not decide("if-better", _scored(250), Incumbent("2", _scored(240, wrong_first=30))).promoted


def test_a_worse_or_equal_score_on_the_same_test_images_is_a_challenger() -> None:
    worse = decide("if-better", _scored(240), Incumbent("2", _scored(250)))
    assert (worse.alias, worse.compared_with) == (CHALLENGER, "2")
    assert worse.reason.startswith("not promoted: test 88.89% vs champion version 2's 92.59% on the same 270 ")
    assert "test images is not better (McNemar p=1; " in worse.reason
    tie = decide("if-better", _scored(250, wrong_first=5), Incumbent("2", _scored(250)))  # 5 each way
    assert tie.alias == CHALLENGER and "is not better (McNemar p=0.62; " in tie.reason


def test_a_champion_without_per_image_results_is_compared_by_accuracy_alone() -> None:
    """A champion registered before versions kept their per-image test results: the rule before
    (strictly higher test accuracy promotes), and the reason says so."""
    assert _decide("if-better", _champion(0.90)) == Decision(
        CHAMPION,
        "2",
        "promoted: test 95.00% vs champion version 2's 90.00% by accuracy alone (champion version 2 kept "
        "no per-image test results to pair)",
    )
    paired = _scored(251)
    assert decide("if-better", paired, _champion(0.92)).promoted  # one image more: by accuracy alone, promoted
    worse = _decide("if-better", _champion(0.961))
    assert worse.alias == CHALLENGER and worse.reason.startswith(
        "not promoted: test 95.00% vs champion version 2's 96.10%"
    )
    d = _decide("if-better", _champion(0.95))
    assert (d.alias, d.compared_with) == (CHALLENGER, "2") and not d.promoted
    assert d.reason.endswith("to pair); a tie keeps the champion")


def test_per_image_results_round_trip_through_a_tag_value() -> None:
    rng = np.random.default_rng(0)
    for n in (0, 1, 7, 8, 270, 10_000):
        correct = tuple(bool(c) for c in rng.random(n) < 0.97)
        text = encode_correct(correct)
        assert text is not None and text.startswith(f"{n}:") and decode_correct(text) == correct
    assert len(encode_correct(tuple(rng.random(10_000) < 0.97)) or "") < 2_000  # a compact tag
    assert encode_correct(None) is None
    assert decode_correct(None) is None and decode_correct("12:not base64!") is None and decode_correct("x") is None


def test_a_champion_on_other_data_is_not_comparable() -> None:
    d = _decide("if-better", _champion(0.10, fingerprint="ffff0000ffff0000"))  # far worse, but other data
    assert (d.alias, d.compared_with) == (CHALLENGER, "2")
    assert d.reason == (
        "not promoted, not comparable: champion version 2 was tested on other data "
        "(fingerprint ffff0000ffff0000, this aaaa1111bbbb2222)"
    )


def test_a_champion_on_another_split_is_not_comparable() -> None:
    other = "seed 1, fractions 0.7/0.15/0.15, test 270"
    d = _decide("if-better", _champion(0.10, split=other))
    assert d.alias == CHALLENGER
    assert (
        d.reason
        == f"not promoted, not comparable: champion version 2 was tested on another split ({other}; this {SPLIT})"
    )


def test_a_champion_without_a_recorded_score_is_not_comparable() -> None:
    d = _decide("if-better", Incumbent("7", None))
    assert d == Decision(
        CHALLENGER, "7", "not promoted, not comparable: champion version 7 records no test score to compare with"
    )


def test_the_first_version_becomes_champion_unless_never() -> None:
    assert _decide("if-better", None) == Decision(CHAMPION, None, "promoted: there was no champion yet")
    assert _decide("always", None) == Decision(CHAMPION, None, "promoted: there was no champion yet")
    assert _decide("never", None) == Decision(
        CHALLENGER, None, "not promoted (--promote never); there is no champion yet"
    )


@pytest.mark.parametrize("champion", [_champion(0.99), _champion(0.10, fingerprint="other"), Incumbent("2", None)])
def test_always_promotes_and_never_does_not(champion: Incumbent) -> None:
    always, never = _decide("always", champion), _decide("never", champion)
    assert (
        always.alias == CHAMPION
        and always.compared_with == "2"
        and always.reason.startswith("promoted (--promote always), ")
    )
    assert never.alias == CHALLENGER and never.compared_with == "2"
    assert never.reason.startswith("not promoted (--promote never), ")


def test_an_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown promotion policy 'sometimes'"):
        _decide("sometimes", None)


# -- the setting and the name ------------------------------------------------------------------
def test_promote_is_a_setting_with_if_better_by_default() -> None:
    assert SearchConfig().tracking.promote == "if-better"
    ns = build_parser().parse_args(["search", "--data", "x", "--promote", "never"])
    assert SearchConfig.from_cli(ns).tracking.promote == "never"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["search", "--data", "x", "--promote", "sometimes"])
    with pytest.raises(UserInputError) as err:
        SearchConfig.from_settings(promote="sometimes")
    assert str(err.value) == "unknown promotion policy 'sometimes'; use one of: if-better, always, never"
    assert SearchConfig.from_settings(promote="always").to_params()["promote"] == "always"


def test_the_default_model_name_holds_data_name_shape_and_fingerprint() -> None:
    cfg = SearchConfig()
    assert cfg.registered_name("digits", (1, 8, 8), "e370861c01234567") == "automl-cnn-digits-1x8x8-e370861c"
    assert cfg.registered_name("my photos", (3, 32, 48), "0123456789abcdef") == "automl-cnn-my-photos-3x32x48-01234567"
    assert SearchConfig.from_settings(model_name="mine").registered_name("digits", (1, 8, 8), "e370861c") == "mine"


# -- registration, resumed ---------------------------------------------------------------------
def test_a_resumed_registration_reuses_its_version_and_its_alias(tmp_path: Path) -> None:
    tracker = MlflowTracker(mlflow_store(tmp_path / "mlflow.db"), "reg")
    registry = ModelRegistry(tracker)
    module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10), torch.nn.Softmax(dim=1))
    entry = ModelEntry(module.eval(), np.zeros((2, 1, 8, 8), np.float32), "a test model")
    first, second = (tracker.start_run(name, {}, {}) for name in ("first", "second"))
    a = registry.register(first, "m", entry, NEW, "if-better")
    b = registry.register(second, "m", entry, Score(NEW.fingerprint, SPLIT, 0.5), "if-better")
    again_a = registry.register(first, "m", entry, NEW, "if-better")  # both searches resumed after a crash
    again_b = registry.register(second, "m", entry, Score(NEW.fingerprint, SPLIT, 0.5), "if-better")
    client = MlflowClient(tracker.uri)
    assert (a.version, a.uri, again_a) == ("1", "models:/m@champion", a)
    assert (b.version, b.uri, again_b) == ("2", "models:/m@challenger", b)
    assert len(client.search_model_versions("name = 'm'")) == 2
    assert client.get_registered_model("m").aliases == {"champion": 1, "challenger": 2}
    description = client.get_model_version("m", "2").description
    assert description.startswith("a test model\n") and description.count("registered as **challenger**") == 1


def test_in_the_store_a_one_image_gain_stays_challenger_and_a_large_gain_takes_champion(tmp_path: Path) -> None:
    tracker = MlflowTracker(mlflow_store(tmp_path / "mlflow.db"), "reg")
    registry, client = ModelRegistry(tracker), MlflowClient(tracker.uri)
    module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10), torch.nn.Softmax(dim=1))
    entry = ModelEntry(module.eval(), np.zeros((2, 1, 8, 8), np.float32), "a test model")
    runs = [tracker.start_run(name, {}, {}) for name in ("first", "one more image", "far better", "old")]
    first = registry.register(runs[0], "m", entry, _scored(240, wrong_first=1), "if-better")
    assert first.decision.promoted
    assert decode_correct(client.get_model_version("m", "1").tags["automl_cnn.test_correct"]) == _scored(240, 1).correct
    one_more = registry.register(runs[1], "m", entry, _scored(241), "if-better")  # read back from the tags
    assert (one_more.version, one_more.uri) == ("2", "models:/m@challenger")
    assert "is not significantly better (McNemar p=0.5; " in one_more.decision.reason
    assert client.get_registered_model("m").aliases == {"champion": 1, "challenger": 2}
    far_better = registry.register(runs[2], "m", entry, _scored(262), "if-better")  # 22 images more, none fewer
    assert (far_better.version, far_better.uri) == ("3", "models:/m@champion")
    assert ", significantly better (McNemar p=2.4e-07; " in far_better.decision.reason
    assert client.get_registered_model("m").aliases == {"champion": 3, "challenger": 2}
    # a champion registered before versions kept per-image results: by accuracy alone, and said so
    client.delete_model_version_tag("m", "3", "automl_cnn.test_correct")
    old = registry.register(runs[3], "m", entry, _scored(263), "if-better")
    assert old.decision.promoted and "by accuracy alone (champion version 3 kept no per-image" in old.decision.reason


# -- through the engine ------------------------------------------------------------------------
def never_stop(_records: list[TrialRecord]) -> float:
    return math.inf


def _search(folder: Path, store: str, candidate: dict[str, object], **settings: object) -> SearchResult:
    plan = plan_for(folder, FAILURES, trials=1, pruner="none", enqueue=(candidate,), tracking_uri=store, **settings)
    with session_for(plan) as s:
        records = SearchDriver(s, never_stop).run()
        winner = pick_winner(records)
        return deliver(s, records, winner, final_fit(s, [(winner, 7)]))


@pytest.fixture(scope="module")
def weak_strong_weak(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[SearchResult]]:
    """Three searches on digits into a fresh store: weak (1 epoch, 1x1 feature maps), strong, weak."""
    tmp = tmp_path_factory.mktemp("registry")
    store = mlflow_store(tmp / "mlflow.db")
    results = [
        # far from solved, so --promote if-better would not make it the first champion (see below)
        _search(tmp / "a", store, WEAK, max_epochs=1, promote="always"),
        _search(tmp / "b", store, GOOD),
        _search(tmp / "c", store, WEAK, max_epochs=1),
    ]
    return store, results


def _name(result: SearchResult) -> str:
    return result.model_uri.removeprefix("models:/").split("@")[0]


def test_a_better_model_takes_the_champion_alias(weak_strong_weak: tuple[str, list[SearchResult]]) -> None:
    store, (weak, strong, _) = weak_strong_weak
    assert strong.data is not None
    assert weak.test_accuracy < 0.5 < strong.test_accuracy  # actually weaker, actually stronger
    name = _name(weak)
    assert name == _name(strong) and name.startswith("automl-cnn-digits-1x8x8-")
    assert (weak.model_version, weak.promotion, weak.model_uri) == ("1", "champion", f"models:/{name}@champion")
    assert weak.promotion_reason == "promoted: there was no champion yet"
    assert (strong.model_version, strong.promotion, strong.model_uri) == ("2", "champion", f"models:/{name}@champion")
    n = strong.test_images
    scores = f"test {strong.test_accuracy:.2%} vs champion version 1's {weak.test_accuracy:.2%}"
    expected = f"promoted: {scores} on the same {n} test images, significantly better (McNemar p="
    assert strong.promotion_reason.startswith(expected)
    expected = strong.promotion_reason
    assert f"registered model    models:/{name}@champion (version 2): {expected}" in strong.summary().splitlines()
    version = MlflowClient(store).get_model_version(name, "2")
    assert version.tags == {
        "automl_cnn.fingerprint": strong.data.fingerprint(),
        "automl_cnn.split": split_id(strong.data),
        "automl_cnn.test_accuracy": repr(strong.test_accuracy),
        "automl_cnn.metric": "accuracy",  # digits is balanced: --metric auto keeps accuracy
        "automl_cnn.test_correct": version.tags["automl_cnn.test_correct"],
        "automl_cnn.test_predicted": version.tags["automl_cnn.test_predicted"],
        "automl_cnn.promotion": "champion",
        "automl_cnn.compared_with": "1",
        "automl_cnn.promotion_reason": expected,
    }
    assert version.description.endswith(f"\n- registered as **champion**: {expected}")
    correct = decode_correct(version.tags["automl_cnn.test_correct"])  # which test images it gets right
    assert correct is not None and len(correct) == n and sum(correct) == round(strong.test_accuracy * n)
    predicted = decode_predicted(version.tags["automl_cnn.test_predicted"])  # what it predicts (macro F1 pairs these)
    labels = strong.data.images.y[strong.data.test_idx]
    assert predicted is not None and tuple(np.asarray(predicted) == labels) == correct


def test_a_worse_model_is_a_challenger_and_the_champion_stays(weak_strong_weak: tuple[str, list[SearchResult]]) -> None:
    store, (_, strong, weak) = weak_strong_weak
    name = _name(strong)
    assert weak.test_accuracy < strong.test_accuracy
    assert (weak.model_version, weak.promotion, weak.model_uri) == ("3", "challenger", f"models:/{name}@challenger")
    expected = (
        f"not promoted: test {weak.test_accuracy:.2%} vs champion version 2's {strong.test_accuracy:.2%} "
        f"on the same {weak.test_images} test images is not better (McNemar p="
    )
    assert weak.promotion_reason.startswith(expected)
    expected = weak.promotion_reason
    assert f"registered model    models:/{name}@challenger (version 3): {expected}" in weak.summary().splitlines()
    client = MlflowClient(store)
    assert client.get_registered_model(name).aliases == {"champion": 2, "challenger": 3}  # moved once, 1 -> 2
    tags = client.get_model_version(name, "3").tags
    assert (tags["automl_cnn.promotion"], tags["automl_cnn.compared_with"]) == ("challenger", "2")
    parent = client.get_run(weak.parent_run_id).data.tags
    assert (parent["automl_cnn.model_uri"], parent["automl_cnn.promotion"]) == (weak.model_uri, "challenger")


def test_never_promotes_not_even_the_first_version(tmp_path: Path) -> None:
    result = _search(tmp_path, mlflow_store(tmp_path / "mlflow.db"), GOOD, promote="never")
    assert (result.promotion, result.model_uri.endswith("@challenger")) == ("challenger", True)
    aliases = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_registered_model(_name(result)).aliases
    assert aliases == {"challenger": 1}


def test_same_file_name_different_data_are_two_registered_models(tmp_path: Path) -> None:
    store = mlflow_store(tmp_path / "mlflow.db")
    results = []
    for folder, per_class in (("one", 30), ("two", 40)):
        x, y = digits_subset(per_class)
        (tmp_path / folder).mkdir()
        np.savez(tmp_path / folder / "data.npz", x=x, y=y)
        settings = {"trials": 1, "pruner": "none", "enqueue": (GOOD,), "max_epochs": 1, "warm_start": "none"}
        settings["promote"] = "always"  # one epoch on so few images is far from solved: no first champion else
        results.append(
            automl_cnn.search(
                tmp_path / folder / "data.npz",
                FAILURES,
                executor="inprocess",
                tracking_uri=store,
                out=tmp_path / folder / "out",
                progress=False,
                **settings,
            )
        )
    one, two = results
    assert one.data is not None and two.data is not None and one.data.name == two.data.name == "data"
    assert _name(one) == f"automl-cnn-data-1x8x8-{one.data.fingerprint()[:8]}" != _name(two)
    assert (one.promotion, two.promotion) == ("champion", "champion")  # each the first of its own model
    names = {m.name for m in MlflowClient(store).search_registered_models()}
    assert names == {_name(one), _name(two)}


def test_a_task_far_from_solved_gets_no_first_champion_and_says_so(tmp_path: Path) -> None:
    store = mlflow_store(tmp_path / "mlflow.db")
    weak = _search(tmp_path / "a", store, WEAK, max_epochs=1)
    assert weak.val_accuracy < 0.55  # below halfway from chance (10 classes) to perfect
    assert weak.promotion == "challenger" and weak.model_uri.endswith("@challenger")
    assert weak.promotion_reason.startswith("not promoted: the task is far from solved")
    assert any(w.startswith("far from solved: the delivered model scores") for w in weak.warnings)
    assert "warning             far from solved" in weak.summary()
    assert MlflowClient(store).get_registered_model(_name(weak)).aliases == {"challenger": 1}
    strong = _search(tmp_path / "b", store, GOOD)  # a solved task takes the empty champion place
    assert (strong.promotion, strong.warnings) == ("champion", [])
