"""The learned epoch ceiling (PASHA's rule): unit tests on curves, then real training on the
in-process executor, trials at the old ceiling extended from their checkpoints."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from automl_cnn.data import load_images, split_data
from automl_cnn.data.bundle import TrainData
from automl_cnn.engine.search.ceiling import (
    Ceiling,
    Swap,
    extended,
    lower_rung,
    noise_epsilon,
    start_ceiling,
    tied,
)
from automl_cnn.model.architecture import Architecture, Candidate, ConvBlock, Head, TrainConfig
from automl_cnn.services.inprocess import InProcessExecutor
from automl_cnn.training.messages import JobResult, JobSpec


def test_noise_shrinks_with_more_validation_images_and_has_a_floor() -> None:
    assert noise_epsilon(0.9, 0.9, 300) > noise_epsilon(0.9, 0.9, 3000) > noise_epsilon(0.9, 0.9, 300_000)
    assert noise_epsilon(1.0, 1.0, 10) == 0.005  # no variance at 100%: the floor
    assert tied(0.90, 0.92, 300) and not tied(0.80, 0.92, 300) and not tied(0.90, 0.92, 100_000)


def test_the_start_is_two_rungs_or_what_a_trial_affords_and_never_above_the_cap() -> None:
    assert start_ceiling(cap=50) == 3  # epochs 1 and 3
    assert start_ceiling(cap=50, factor=2) == 2
    assert start_ceiling(cap=2) == 2
    assert start_ceiling(cap=50, epoch_seconds=40.0, trial_seconds=100.0) == 2  # 2 epochs fit in 100 s
    assert start_ceiling(cap=50, epoch_seconds=400.0, trial_seconds=100.0) == 1  # at least one
    assert start_ceiling(cap=50, epoch_seconds=1.0, trial_seconds=1000.0) == 3  # still low: it grows
    assert [lower_rung(c) for c in (1, 2, 3, 9, 10, 27)] == [None, 1, 1, 3, 9, 9]


def test_a_swap_beyond_noise_grows_the_ceiling_and_a_tie_does_not() -> None:
    ceiling = Ceiling(3, cap=50, n_val=1000)
    assert ceiling.decide({1: [0.5, 0.6, 0.7]}) is None  # one trial: nothing to compare
    # trial 1 leads at epoch 1, trial 2 at epoch 3, both by far more than noise on 1000 images
    swapped = ceiling.decide({1: [0.80, 0.85, 0.86], 2: [0.40, 0.80, 0.95]})
    assert swapped is not None and swapped.grew and swapped.ceiling == ceiling.ceiling == 9
    assert [(s.ahead_before, s.ahead_after) for s in swapped.swaps] == [(1, 2)]
    assert "changed beyond noise (trial 2 overtook 1)" in swapped.describe()
    # within noise at epoch 3: a tie, no swap; the leaders flat: it holds
    flat = Ceiling(3, cap=50, n_val=300).decide({1: [0.90, 0.90, 0.905], 2: [0.88, 0.90, 0.91]})
    assert flat is not None and not flat.grew and flat.swaps == () and flat.rising == ()
    assert "hold" in flat.describe()


def test_leaders_still_rising_grow_the_ceiling_up_to_the_hard_cap() -> None:
    ceiling = Ceiling(3, cap=5, n_val=1000)
    first = ceiling.decide({1: [0.5, 0.6, 0.9], 2: [0.3, 0.4, 0.5]})
    assert first is not None and first.rising == (1,) and first.swaps == () and first.ceiling == 5
    again = ceiling.decide({1: [0.5, 0.6, 0.9, 0.93, 0.97], 2: [0.3, 0.4, 0.5, 0.5, 0.5]})
    assert again is not None and again.at_cap and not again.grew and ceiling.ceiling == 5
    assert "hard cap" in again.describe()
    assert [d.ceiling for d in ceiling.decisions] == [5, 5]


def test_a_field_far_from_solved_grows_the_ceiling_though_its_ranking_holds() -> None:
    """Six classes, every trial near chance and flat: PASHA's rule alone would hold (all tied
    within noise); less than halfway from chance to perfect, the ceiling grows. The same curves
    without the classes known hold, and a solved field with the same shape holds too."""
    near_chance = {1: [0.17, 0.20, 0.21], 2: [0.18, 0.19, 0.20], 3: [0.16, 0.18, 0.19]}
    assert Ceiling(3, cap=81, n_val=450).decide(near_chance).grew is False  # type: ignore[union-attr]
    grown = Ceiling(3, cap=81, n_val=450, classes=6).decide(near_chance)
    assert grown is not None and grown.grew and grown.ceiling == 9 and grown.swaps == () and grown.rising == ()
    assert grown.unlearned == 0.21 and "scored 21.0%, less than halfway from chance to perfect" in grown.describe()
    # halfway from 1/6 to 1 is 58.3%: a leader at 60%, flat, holds
    learned = {1: [0.59, 0.60, 0.60], 2: [0.57, 0.58, 0.59]}
    held = Ceiling(3, cap=81, n_val=450, classes=6).decide(learned)
    assert held is not None and not held.grew and held.unlearned is None


def test_only_a_schedule_that_can_be_continued_is_extended() -> None:
    arch = Architecture((ConvBlock(filters=4),), Head())
    wsd = Candidate(arch, TrainConfig(epochs=3, lr_schedule="wsd"))
    assert extended(wsd, 9).training.epochs == 9 and extended(wsd, 9).training.lr_schedule == "wsd"
    with pytest.raises(ValueError, match="cosine schedule cannot be extended"):
        extended(Candidate(arch, TrainConfig(epochs=3, lr_schedule="cosine")), 9)


@pytest.fixture(scope="module")
def few_digits() -> TrainData:
    """400 training images of digits, scored on 600 others: a linear model learns it at once and
    levels off; a small CNN starts slower and overtakes it."""
    bundle = split_data(load_images("digits"), seed=0)
    scored = np.concatenate([bundle.val_idx, bundle.test_idx, bundle.train_idx[400:]])[:600]
    x, y = bundle.images.x, bundle.images.y
    fit = bundle.train_idx[:400]
    return dataclasses.replace(bundle.search_data(), x_train=x[fit], y_train=y[fit], x_eval=x[scored], y_eval=y[scored])


def _train_to(executor: InProcessExecutor, spec: JobSpec) -> list[JobResult]:
    """Run ``spec``'s job to its last epoch on ``executor``, a checkpoint with every epoch."""
    executor.submit(spec)
    results: list[JobResult] = []
    while not results or not results[-1].done:
        if results:
            executor.advance(spec.job, want_checkpoint=True)
        (result,) = executor.wait(timeout=0.1)
        assert result.error is None, result.error
        results.append(result)
    executor.release(spec.job)
    return results


def test_the_ceiling_grows_while_the_ranking_changes_and_holds_when_it_holds(few_digits: TrainData) -> None:
    wsd = TrainConfig(epochs=1, lr_schedule="wsd", batch_size=32)
    trials = {
        0: Candidate(Architecture((), Head("flatten")), dataclasses.replace(wsd, learning_rate=3e-2)),
        1: Candidate(
            Architecture(
                (ConvBlock(filters=16, pooling="max"), ConvBlock(filters=32, pooling="max")), Head("global_avg")
            ),
            dataclasses.replace(wsd, learning_rate=1e-2),
        ),
    }
    ceiling = Ceiling(start_ceiling(cap=81), cap=81, n_val=len(few_digits.y_eval))
    executor = InProcessExecutor(n_workers=1, threads=1)
    curves: dict[int, list[float]] = {n: [] for n in trials}
    checkpoints: dict[int, bytes] = {}
    epochs_run: dict[int, list[int]] = {n: [] for n in trials}
    while True:
        for number, candidate in trials.items():  # trials at the old ceiling continue from their checkpoints
            job = JobSpec(
                f"trial-{number}-to-{ceiling.ceiling}",
                extended(candidate, ceiling.ceiling).to_dict(),
                seed=number,
                data=few_digits,
                checkpoint=checkpoints.get(number),
                want_checkpoint=True,
            )
            for result in _train_to(executor, job):
                assert result.epoch is not None and result.checkpoint is not None
                curves[number].append(result.epoch.val_acc)
                epochs_run[number].append(result.epoch.epoch)
                checkpoints[number] = result.checkpoint
        decision = ceiling.decide(curves)
        assert decision is not None
        if not decision.grew:
            break
    executor.shutdown()
    grew_by = [("swap" if d.swaps else "rising" if d.rising else "held", d.ceiling) for d in ceiling.decisions]
    # 3 epochs: the linear model leads and still climbs; 9: the CNN overtook it; 27: both level off
    assert grew_by == [("rising", 9), ("swap", 27), ("held", 27)], [d.describe() for d in ceiling.decisions]
    assert ceiling.decisions[1].swaps[0] == Swap(ahead_before=0, ahead_after=1)
    assert ceiling.ceiling == 27 < ceiling.cap  # it stopped because the ranking held, not at the cap
    assert epochs_run == {n: list(range(1, 28)) for n in trials}  # extended, never restarted
