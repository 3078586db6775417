"""Augmentation a space searches: named policies (none, shift, flip, TrivialAugmentWide) and
random erasing, sampled by Optuna, logged, applied per image, and the same on resume."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch

from automl_cnn.data import load_images, split_data
from automl_cnn.model.architecture import Architecture, Augmentation, Candidate, ConvBlock, Head, TrainConfig
from automl_cnn.space.augment_policies import POLICIES
from automl_cnn.space.presets import PRESETS
from automl_cnn.space.sampling import sample_candidate
from automl_cnn.space.schema import load_space
from automl_cnn.training.augment import augment
from automl_cnn.training.trainer import Trainer

SPACE = """
name: photos
blocks: {count: 1, filters: 8, kernel_size: 3, batch_norm: false, pooling: max, dropout: 0.0}
head: {type: global_avg, dense_layers: 0}
training: {epochs: 2, batch_size: 32}
augmentation:
  policy: [none, shift, flip, trivial]
  erasing: [0.0, 0.5]
"""


def test_policies_are_sampled_logged_and_kept_in_the_candidate(tmp_path: Path) -> None:
    path = tmp_path / "photos.yaml"
    path.write_text(SPACE)
    space = load_space(path)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(24):
        trial = study.ask()
        cand = sample_candidate(trial, space)
        aug, params = cand.training.augmentation, cand.flat_params()
        policy = trial.params["augment.policy"]
        assert aug.policy == policy == params["augment.policy"] and aug.erasing == trial.params["augment.erasing"]
        assert aug == Augmentation(policy=policy, erasing=aug.erasing, **POLICIES[policy])
        assert Candidate.from_json(cand.to_json()) == cand  # what a resumed trial trains again
        seen.add(policy)
    assert seen == {"none", "shift", "flip", "trivial"}


def test_a_candidate_without_the_new_settings_keeps_its_key() -> None:
    cand = Candidate(Architecture((ConvBlock(filters=8),), Head()), TrainConfig(augmentation=Augmentation(rotation=5)))
    assert '"policy"' not in cand.to_json() and '"erasing"' not in cand.to_json()  # earlier searches' keys hold
    other = Candidate(cand.architecture, TrainConfig(augmentation=Augmentation(rotation=5, erasing=0.25)))
    assert other.key() != cand.key() and '"erasing": 0.25' in other.to_json()


def test_trivial_augment_and_erasing_change_images_per_image_reproducibly_and_leave_torchs_rng() -> None:
    x = torch.rand(32, 3, 16, 16) * 0.9 + 0.05
    rng = torch.get_rng_state()
    first = augment(x, Augmentation(trivial=True), torch.Generator().manual_seed(1))
    assert torch.equal(torch.get_rng_state(), rng)  # dropout's random stream is untouched
    again = augment(x, Augmentation(trivial=True), torch.Generator().manual_seed(1))
    assert torch.equal(first, again) and not torch.equal(first, x) and first.min() >= 0 and first.max() <= 1
    erased = augment(x, Augmentation(erasing=1.0), torch.Generator().manual_seed(2))
    zeros = (erased == 0).flatten(1).sum(1)
    assert bool((zeros > 0).all()) and len(set(zeros.tolist())) > 1  # every image, each its own box
    assert torch.equal(augment(x, Augmentation(erasing=0.0, policy="none"), torch.Generator()), x)


def test_no_preset_flips_or_turns_images_far() -> None:
    for name, entry in PRESETS.items():
        aug = entry.value.training.augmentation
        assert not aug.hflip and not aug.trivial and aug.rotation <= 15, name  # digits and text keep their class


def test_a_trial_with_a_policy_resumed_from_its_checkpoint_trains_the_same() -> None:
    data = split_data(load_images("digits"), seed=0).search_data()
    aug = Augmentation(policy="trivial", trivial=True, erasing=0.5)
    cand = Candidate(Architecture((ConvBlock(filters=8),), Head()), TrainConfig(epochs=3, augmentation=aug))
    straight = Trainer(cand, data, seed=5, device="cpu")
    full = [straight.run_epoch() for _ in range(3)]
    first = Trainer(cand, data, seed=5, device="cpu")
    first.run_epoch()
    resumed = Trainer(Candidate.from_json(cand.to_json()), data, seed=99, device="cpu")
    resumed.restore(first.checkpoint())
    rest = [resumed.run_epoch() for _ in range(2)]
    assert [r.val_loss for r in rest] == pytest.approx([r.val_loss for r in full[1:]], abs=0, rel=0)
