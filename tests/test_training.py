"""The trainer: learns, stops on NaN, continues exactly from a checkpoint, and on ``wsd`` extends
from a checkpoint to the same weights as a run trained straight through."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from automl_cnn.data import load_images, split_data
from automl_cnn.errors import TrialError
from automl_cnn.model.architecture import Architecture, Augmentation, Candidate, ConvBlock, Head, TrainConfig
from automl_cnn.training.augment import augment
from automl_cnn.training.messages import JobSpec
from automl_cnn.training.schedules import lr_factor, warmup_steps
from automl_cnn.training.trainer import Trainer, fit
from automl_cnn.training.worker import TrialWorker

ARCH = Architecture((ConvBlock(filters=8, pooling="max"),), Head())


@pytest.fixture(scope="module")
def digits():  # type: ignore[no-untyped-def]
    return split_data(load_images("digits"), seed=0).search_data()


def test_training_learns_digits(digits) -> None:  # type: ignore[no-untyped-def]
    _, history = fit(Candidate(ARCH, TrainConfig(epochs=4, learning_rate=3e-3)), digits, seed=0, device="cpu")
    assert history[0].val_acc < history[-1].val_acc
    assert history[-1].val_acc > 0.9
    assert [e.epoch for e in history] == [1, 2, 3, 4]


def test_divergent_training_fails_with_nan_reason(digits) -> None:  # type: ignore[no-untyped-def]
    cand = Candidate(
        Architecture((ConvBlock(filters=4, batch_norm=False, pooling="none"),)),
        TrainConfig(optimizer="sgd", learning_rate=10.0, momentum=0.9, epochs=2),
    )
    with pytest.raises(TrialError, match="NaN/inf loss"):
        fit(cand, digits, seed=0, device="cpu")


@pytest.mark.parametrize("schedule", ["cosine", "onecycle"])
def test_checkpoint_restore_continues_exactly(digits, schedule: str) -> None:  # type: ignore[no-untyped-def]
    cand = Candidate(ARCH, TrainConfig(epochs=4, lr_schedule=schedule, augmentation=Augmentation(rotation=10)))
    straight = Trainer(cand, digits, seed=5, device="cpu")
    full = [straight.run_epoch() for _ in range(4)]

    first = Trainer(cand, digits, seed=5, device="cpu")
    first.run_epoch()
    first.run_epoch()
    blob = first.checkpoint()
    resumed = Trainer(cand, digits, seed=99, device="cpu")  # a different worker, a different seed
    resumed.restore(blob)
    rest = [resumed.run_epoch() for _ in range(2)]
    assert [r.val_loss for r in rest] == [r.val_loss for r in full[2:]]
    assert resumed.done


def test_augmentation_draws_per_image_and_keeps_range() -> None:
    x = torch.rand(64, 1, 12, 12)
    gen = torch.Generator().manual_seed(0)
    out = augment(x, Augmentation(hflip=True, rotation=15, translate=0.1, color_jitter=0.3), gen)
    assert out.shape == x.shape
    assert out.min() >= 0 and out.max() <= 1
    changed = (out - x).abs().flatten(1).amax(1) > 1e-6
    assert changed.float().mean() > 0.9  # each image got its own transform
    flips_only = augment(x, Augmentation(hflip=True), torch.Generator().manual_seed(1))
    flipped = torch.isclose(flips_only, x.flip(3)).flatten(1).all(1)
    kept = torch.isclose(flips_only, x).flatten(1).all(1)
    assert (flipped | kept).all() and 10 < int(flipped.sum()) < 54
    assert augment(x, Augmentation(), gen) is x  # off unless asked for


def _extended_and_straight(digits, schedule: str):  # type: ignore[no-untyped-def]
    """A trial trained to epoch 2, checkpointed, and extended to epoch 4 from that checkpoint on
    a worker (the path the search takes), and the same trial trained straight to epoch 4."""
    aug = Augmentation(rotation=10)
    short = Candidate(ARCH, TrainConfig(epochs=2, lr_schedule=schedule, learning_rate=3e-3, augmentation=aug))
    long = dataclasses.replace(short, training=dataclasses.replace(short.training, epochs=4))
    worker = TrialWorker(threads=1, device="cpu")
    first = worker.begin(JobSpec("short", short.to_dict(), 7, digits, want_checkpoint=True, outputs=True))
    second = worker.step(want_checkpoint=True)
    assert first.epoch is not None and second.done and second.checkpoint is not None
    extended = [worker.begin(JobSpec("longer", long.to_dict(), 7, digits, second.checkpoint, True, outputs=True))]
    extended.append(worker.step(want_checkpoint=True))
    assert worker.trainer is not None
    extended_raw = worker.trainer.cpu_state_dict()
    straight = [worker.begin(JobSpec("straight", long.to_dict(), 7, digits, want_checkpoint=True, outputs=True))]
    straight += [worker.step(want_checkpoint=True) for _ in range(3)]
    assert worker.trainer is not None
    straight_raw = worker.trainer.cpu_state_dict()
    worker.release()
    return extended, extended_raw, straight[2:], straight_raw


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6, rtol=1e-5) for k in a)


def test_a_wsd_trial_extended_from_its_checkpoint_matches_one_trained_straight_through(digits) -> None:  # type: ignore[no-untyped-def]
    extended, extended_raw, straight, straight_raw = _extended_and_straight(digits, "wsd")
    assert [r.epoch.epoch for r in extended if r.epoch] == [3, 4] and extended[-1].done and straight[-1].done
    assert _same_weights(extended_raw, straight_raw)  # the training path
    ext_out, straight_out = extended[-1].outputs, straight[-1].outputs
    assert ext_out is not None and straight_out is not None
    assert _same_weights(ext_out.weights, straight_out.weights)  # the scored average too
    for ext, ref in zip(extended, straight, strict=True):
        assert ext.epoch is not None and ref.epoch is not None
        assert ext.epoch.val_loss == pytest.approx(ref.epoch.val_loss, rel=1e-5)
        assert ext.epoch.lr == ref.epoch.lr
    assert straight[-1].epoch is not None and straight[-1].epoch.val_acc > 0.85  # it learned


def test_a_cosine_trial_extended_from_its_checkpoint_departs_from_one_trained_straight_through(digits) -> None:  # type: ignore[no-untyped-def]
    # the control: cosine's learning rate depends on the planned end, so the same extension differs
    _, extended_raw, _, straight_raw = _extended_and_straight(digits, "cosine")
    assert not _same_weights(extended_raw, straight_raw)


def test_wsd_warms_up_then_holds_and_is_scored_with_its_average(digits) -> None:  # type: ignore[no-untyped-def]
    cand = Candidate(ARCH, TrainConfig(epochs=3, lr_schedule="wsd", learning_rate=2e-3))
    trainer = Trainer(cand, digits, seed=1, device="cpu")
    factor = lr_factor("wsd", 10, trainer.steps_per_epoch)
    warm = warmup_steps(trainer.steps_per_epoch)
    assert [factor(s) for s in (warm - 1, warm, 10 * warm)] == [1.0, 1.0, 1.0] and factor(0) < 1.0
    assert lr_factor("wsd", 10, 8)(50) == lr_factor("wsd", 10_000, 8)(50)  # the end does not matter
    history = [trainer.run_epoch() for _ in range(3)]
    assert [e.lr for e in history] == [2e-3] * 3  # constant after the warmup
    assert trainer.average is not None and trainer.scored is trainer.average.module
    assert (history[-1].val_loss, history[-1].val_acc) == trainer.evaluate(trainer.eval_batches, trainer.average.module)
    assert trainer.evaluate(trainer.eval_batches) != trainer.evaluate(trainer.eval_batches, trainer.scored)
