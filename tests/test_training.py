"""The trainer: learns, stops on NaN, and continues exactly from a checkpoint."""

from __future__ import annotations

import pytest
import torch

from automl_cnn.data import load_images, split_data
from automl_cnn.errors import TrialError
from automl_cnn.model.architecture import Architecture, Augmentation, Candidate, ConvBlock, Head, TrainConfig
from automl_cnn.training.augment import augment
from automl_cnn.training.trainer import Trainer, fit

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
