"""Ensembles and the checked final fit.

The selection rule and McNemar's test on hand-made probabilities; the check half of validation
on real splits; ensembles of real trained networks as one model (probabilities, files, ONNX,
TorchScript); the final-fit check on real sessions (a final fit that went wrong is replaced by
the trial's own weights); and a real search that delivers an ensemble, loaded back from its
folder and from MLflow.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sessions import plan_for, session_for
from stores import mlflow_store

from automl_cnn import load_model
from automl_cnn.data import load_images, split_data
from automl_cnn.engine.final.check import AVERAGE, FINAL, TRIAL, choose
from automl_cnn.engine.final.ensemble import blend, select_ensemble
from automl_cnn.engine.final.fits import FinalFit, final_fit, pick_winner
from automl_cnn.engine.final.outcome import ENSEMBLE
from automl_cnn.engine.search.driver import SearchDriver
from automl_cnn.metrics import Yardstick
from automl_cnn.model.architecture import Architecture, Candidate, ConvBlock, Dense, Head, TrainConfig
from automl_cnn.model.export import export_onnx
from automl_cnn.model.trained import ENSEMBLE_FORMAT, FORMAT, META, TrainedModel
from automl_cnn.stats import mcnemar
from automl_cnn.training.trainer import Trainer, fit


def _probs(y: np.ndarray, wrong: slice, k: int = 3) -> np.ndarray:
    """Confident and right, except on ``wrong`` where it prefers the next class."""
    p = np.full((len(y), k), 0.1 / (k - 1))
    p[np.arange(len(y)), y] = 0.9
    idx = np.arange(len(y))[wrong]
    p[idx] = 0.1 / (k - 1)
    p[idx, (y[idx] + 1) % k] = 0.6
    p[idx, y[idx]] = 0.4 - 0.1 / (k - 1) * (k - 2)
    return p


Y = np.arange(30) % 3
A, B, C = _probs(Y, slice(0, 10)), _probs(Y, slice(10, 20)), _probs(Y, slice(20, 30))


def test_selection_combines_models_that_err_on_different_images() -> None:
    accuracy = Yardstick("accuracy", Y)
    assert accuracy(A) == accuracy(B) == accuracy(C) == pytest.approx(2 / 3)
    picked = select_ensemble([A, B, C], Y, first=0, max_members=5)
    assert set(picked.members) == {0, 1, 2} and picked.members[0] == 0
    assert sum(picked.weights) == pytest.approx(1.0)
    assert accuracy(blend([[A, B, C][i] for i in picked.members], picked.weights)) == 1.0


def test_selection_starts_from_the_winner_and_keeps_to_the_most_members() -> None:
    assert select_ensemble([A, B, C], Y, first=2, max_members=1).members == (2,)
    two = select_ensemble([A, B, C], Y, first=1, max_members=2)
    assert two.size == 2 and two.members[0] == 1


def test_a_winner_no_other_model_improves_stays_alone() -> None:
    perfect = _probs(Y, slice(0, 0))
    noise = np.full((30, 3), 1 / 3)
    picked = select_ensemble([perfect, A, noise], Y, first=0, max_members=5)
    assert picked.members == (0,) and picked.weights == (1.0,)


def test_mcnemar_needs_a_clear_lead_on_the_images_where_the_two_disagree() -> None:
    right = np.ones(100, dtype=bool)
    ten_worse = right.copy()
    ten_worse[:10] = False
    assert mcnemar(right, ten_worse).a_better()  # 10 against 0: p = 2**-10
    assert not mcnemar(ten_worse, right).a_better()
    a, b = right.copy(), right.copy()
    a[:3], b[3:8] = False, False  # 5 against 3
    assert not mcnemar(a, b).a_better() and not mcnemar(b, a).a_better()


def test_the_check_half_is_half_of_each_class_of_validation() -> None:
    bundle = split_data(load_images("digits"), seed=0)
    chk, sel = bundle.check_positions(), bundle.select_positions()
    assert np.array_equal(chk, bundle.check_positions())  # stable
    assert not set(chk) & set(sel) and sorted([*chk, *sel]) == list(range(len(bundle.val_idx)))
    y_val = bundle.images.y[bundle.val_idx]
    for c in range(bundle.num_classes):
        assert np.sum(y_val[chk] == c) == np.sum(y_val == c) // 2
    other = split_data(load_images("digits"), seed=1)
    assert not np.array_equal(other.val_idx[other.check_positions()], bundle.val_idx[chk])
    refit = bundle.refit_data()
    assert len(refit.y_train) == len(bundle.train_idx) + len(sel)
    assert np.array_equal(refit.y_eval, y_val[chk])
    fitted = {*bundle.train_idx, *bundle.val_idx[sel]}
    assert fitted.isdisjoint(bundle.val_idx[chk]) and fitted.isdisjoint(bundle.test_idx)
    assert set(bundle.val_idx[chk]).isdisjoint(bundle.test_idx)  # the test split stays untouched


# -- ensembles of real networks as one model --------------------------------------------------
@pytest.fixture(scope="module")
def members():  # type: ignore[no-untyped-def]
    bundle = split_data(load_images("digits"), seed=0)
    data = bundle.search_data()
    out = []
    for filters, seed in ((8, 0), (4, 1)):
        cand = Candidate(
            Architecture((ConvBlock(filters=filters, pooling="max"),), Head("flatten", (Dense(32),))),
            TrainConfig(epochs=2, learning_rate=3e-3),
        )
        trainer, _ = fit(cand, data, seed=seed, device="cpu")
        out.append((cand, trainer.cpu_state_dict()))
    return bundle, out


def _ensemble(members, weights=(0.7, 0.3)) -> TrainedModel:  # type: ignore[no-untyped-def]
    bundle, nets = members
    joined = [(c, w, weight) for (c, w), weight in zip(nets, weights, strict=True)]
    return TrainedModel.from_members(joined, bundle.input_shape, bundle.class_names, bundle.mean, bundle.std)


def test_an_ensemble_averages_its_members_probabilities(members) -> None:  # type: ignore[no-untyped-def]
    bundle, nets = members
    model = _ensemble(members)
    x = bundle.test_split()[0]
    single = [
        TrainedModel.from_weights(c, w, bundle.input_shape, bundle.class_names, bundle.mean, bundle.std)
        for c, w in nets
    ]
    want = 0.7 * single[0].predict_proba(x) + 0.3 * single[1].predict_proba(x)
    np.testing.assert_allclose(model.predict_proba(x), want, atol=1e-5)
    assert model.is_ensemble and model.candidate == nets[0][0] and model.lead_network is model.network.members[0]
    lone = TrainedModel.from_members(
        [(nets[0][0], nets[0][1], 1.0)], bundle.input_shape, bundle.class_names, bundle.mean, bundle.std
    )
    assert not lone.is_ensemble and lone.metadata()["format"] == FORMAT


def test_an_ensemble_saves_loads_and_exports_as_one_model(members, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bundle, _ = members
    model = _ensemble(members)
    x = bundle.test_split()[0]
    model.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / META).read_text())
    assert meta["format"] == ENSEMBLE_FORMAT and [m["weight"] for m in meta["ensemble"]] == [0.7, 0.3]
    back = TrainedModel.load(tmp_path / "m")
    np.testing.assert_allclose(back.predict_proba(x), model.predict_proba(x), atol=1e-6)
    assert back.members == model.members
    assert export_onnx(model, tmp_path / "m.onnx") <= 1e-4  # checked on onnxruntime
    model.save_torchscript(tmp_path / "m.pt")
    scripted = torch.jit.load(str(tmp_path / "m.pt"))
    with torch.no_grad():
        served = scripted(torch.from_numpy(x[:8].astype(np.float32) / 255)).numpy()
    np.testing.assert_allclose(served, model.predict_proba(x[:8]), atol=1e-5)


# -- the final fit is checked --------------------------------------------------------------------
def never(_records: object) -> float:
    return float("inf")


def test_a_final_fit_that_went_wrong_is_replaced_by_the_trials_own_weights(tmp_path: Path) -> None:
    with session_for(plan_for(tmp_path, trials=2, pruner="none")) as s:
        records = SearchDriver(s, never).run()
        winner = pick_winner(records)
        assert winner.candidate is not None
        [good] = final_fit(s, [(winner, 7)])
        fine = choose(s, good)
        assert fine.source in (FINAL, AVERAGE) and "held-out images" in fine.reason
        untrained = Trainer(winner.candidate, s.bundle.refit_data(), seed=3, device="cpu", average=True).outputs()
        broken = FinalFit(winner.number, 7, untrained.weights, [], untrained)
        replaced = choose(s, broken)
        assert replaced.source == TRIAL and "significantly better (McNemar p=" in replaced.reason
        stored = s.state.load_trial_weights(winner.number)
        assert stored is not None and all(torch.equal(replaced.weights[k], stored[k]) for k in stored)
        s.state.keep_trial_weights(set())  # not kept: the final fit stays, and the note says why
        kept = choose(s, broken)
        assert kept.source in (FINAL, AVERAGE) and "were not kept" in kept.reason


# -- a search that delivers an ensemble ----------------------------------------------------------
def test_a_search_delivers_an_ensemble_that_loads_everywhere(ensemble_search, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    r = ensemble_search
    assert r.is_ensemble and r.model.is_ensemble and len(r.delivered) == len(r.model.members) >= 2
    assert r.delivered[0]["trial"] == r.best_trial and sum(d["weight"] for d in r.delivered) == pytest.approx(
        1, abs=1e-3
    )
    assert any(n.startswith("ensemble: yes, trials ") for n in r.notes)
    summary = r.summary()
    assert f"delivered           an ensemble of {len(r.delivered)}" in summary
    assert "held-out half of validation" in summary and "check half" not in summary
    report = (r.out_dir / "report.md").read_text()
    assert f"## Delivered: an ensemble of {len(r.delivered)} trials" in report
    x, y = r.data.test_split()
    assert r.test_accuracy == pytest.approx(float((r.model.predict(x) == y).mean()))
    for source in (r.out_dir, r.model_uri):
        np.testing.assert_allclose(
            load_model(source, r.tracking_uri).predict_proba(x), r.model.predict_proba(x), atol=1e-5
        )
    assert export_onnx(load_model(r.out_dir), tmp_path / "e.onnx") <= 1e-4
    stored = sorted(p.name for p in (r.out_dir / "outputs").glob("trial-*.probs.pt"))
    completed = [t for t in r.trials if t.outcome == "completed" and t.duplicate_of is None]
    assert len(stored) == len(completed)


def test_spare_time_fits_the_winner_with_more_seeds_and_the_check_half_decides(tmp_path: Path) -> None:
    from automl_cnn.engine.final.plan import SEED_ENSEMBLE, plan_final

    with session_for(plan_for(tmp_path, trials=3, pruner="none", ensemble="3")) as s:
        records = SearchDriver(s, never).run()
        winner = pick_winner(records)
        plan = plan_final(s, records, winner, [], time_left=1e6)
        if plan.ensemble:  # selection found members: one fit each, no seed ensemble
            assert plan.seeds == 1
        else:
            assert plan.seeds == min(3, SEED_ENSEMBLE) and [d.topic for d in plan.decisions] == [ENSEMBLE]
            assert plan.epochs and max(plan.epochs.values()) == 2 * winner.epochs  # the rest stretches epochs
        assert plan_final(s, records, winner, [], time_left=0.0).seeds == 1  # no time: one fit
        assert plan_final(s, records, winner, [], time_left=None).seeds == 1  # no budget: nothing spare


def test_a_seed_ensemble_is_delivered_only_where_the_check_half_prefers_it(tmp_path: Path) -> None:
    from automl_cnn import search

    r = search(
        "digits", "tiny", trials=2, final_repeats=2, pruner="none", warm_start="none", executor="inprocess",
        seed=0, progress=False, out=tmp_path / "out", tracking_uri=mlflow_store(tmp_path / "m.db"),
    )  # fmt: skip
    [verdict] = [d for d in r.decisions if d.topic == ENSEMBLE]
    if verdict.answer.startswith("yes, 2 seeds"):
        assert r.is_ensemble and [d["trial"] for d in r.delivered] == [r.best_trial] * 2
        assert len({d["seed"] for d in r.delivered}) == 2 and " seed " in r.summary()
    else:
        assert verdict.answer == "no" and "2 seeds together scored" in verdict.reason and not r.is_ensemble
    x, y = r.data.test_split()
    assert r.test_accuracy == pytest.approx(float((r.model.predict(x) == y).mean()))


def test_members_cut_to_fit_the_time_left_never_drop_the_winner() -> None:
    from automl_cnn.engine.final.plan import cut_to_fit

    members = ((7, 0.5), (0, 0.3), (16, 0.2))  # trial 7 outweighs the winner, trial 0
    kept = cut_to_fit(members, 0, lambda ms: len(ms) <= 2)
    assert [n for n, _ in kept] == [0, 7] and sum(w for _, w in kept) == pytest.approx(1.0)
    assert cut_to_fit(members, 0, lambda ms: len(ms) == 1) == ((0, 1.0),)
    assert cut_to_fit(members, 0, lambda ms: True) == members
