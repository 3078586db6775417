"""Architecture records, the builder and the static checks."""

from __future__ import annotations

import json

import pytest
import torch

from automl_cnn.errors import InfeasibleArchitecture
from automl_cnn.model.architecture import Architecture, Augmentation, Candidate, ConvBlock, Dense, Head, TrainConfig
from automl_cnn.model.builder import build_model
from automl_cnn.model.profile import Limits, profile
from automl_cnn.model.shapes import feature_shapes

KERAS_MNIST = Architecture(
    blocks=(
        ConvBlock(filters=32, kernel_size=3, padding="valid", batch_norm=False, pooling="none"),
        ConvBlock(filters=64, kernel_size=3, padding="valid", batch_norm=False, pooling="max", dropout=0.25),
    ),
    head=Head(type="flatten", dense=(Dense(128, 0.5),)),
)


def test_json_round_trip_is_exact() -> None:
    cand = Candidate(KERAS_MNIST, TrainConfig(optimizer="sgd", augmentation=Augmentation(rotation=10.0)))
    again = Candidate.from_json(json.dumps(json.loads(cand.to_json())))
    assert again == cand
    assert again.key() == cand.key()


def test_canonical_form_merges_equivalent_candidates() -> None:
    a = Candidate(
        Architecture((ConvBlock(pooling="none", pool_size=2, dropout=0),)), TrainConfig(optimizer="adam", momentum=0.9)
    )
    b = Candidate(
        Architecture((ConvBlock(pooling="none", pool_size=3, dropout=0.0),)),
        TrainConfig(optimizer="adam", momentum=0.5),
    )
    c = Candidate(Architecture((ConvBlock(pooling="max", pool_size=3),)), TrainConfig())
    assert a != b and a.key() == b.key()
    assert a.key() != c.key()


def test_keras_mnist_cnn_matches_the_published_parameter_count() -> None:
    # The Keras MNIST example (conv32-conv64, max-pool, dense 128) has 1,199,882 parameters.
    prof = profile(KERAS_MNIST, (1, 28, 28), 10)
    assert prof.params == 1_199_882
    assert prof.feature_shapes[-1] == (64, 12, 12)
    # FLOPs from torch's counter: 2 * MACs of the convolutions and linear layers.
    macs = 26 * 26 * 32 * 9 + 24 * 24 * 64 * 32 * 9 + 9216 * 128 + 128 * 10
    assert prof.flops == 2 * macs


def test_builder_output_shape_and_normalisation_buffers() -> None:
    model = build_model(KERAS_MNIST, (1, 28, 28), 10, mean=[0.1], std=[0.3])
    assert model(torch.rand(5, 1, 28, 28)).shape == (5, 10)
    assert torch.allclose(model.normalize.mean.flatten(), torch.tensor([0.1]))
    assert "normalize.std" in model.state_dict()


def test_residual_blocks_build_with_projection_shortcuts() -> None:
    arch = Architecture(
        (
            ConvBlock(type="residual", convs=2, filters=16, stride=1, pooling="none"),
            ConvBlock(type="residual", convs=2, filters=32, stride=2, pooling="none"),
        ),
        Head(type="global_avg"),
    )
    model = build_model(arch, (3, 16, 16), 5)
    assert model(torch.rand(2, 3, 16, 16)).shape == (2, 5)
    assert feature_shapes(arch, (3, 16, 16))[-1] == (32, 8, 8)


@pytest.mark.parametrize(
    ("blocks", "words"),
    [
        ((ConvBlock(pooling="max"),) * 4, "block 4: max pooling by 2 would shrink the 1x1 feature map"),
        ((ConvBlock(kernel_size=7, padding="valid", pooling="none"),) * 2, "block 2 conv 1: a 7x7 kernel"),
        ((ConvBlock(type="residual", kernel_size=4),), "residual block needs an odd kernel size"),
    ],
)
def test_impossible_candidates_are_refused_with_the_reason(blocks: tuple[ConvBlock, ...], words: str) -> None:
    with pytest.raises(InfeasibleArchitecture, match=words):
        profile(Architecture(blocks), (1, 8, 8), 10)


def test_limits_name_the_exceeded_constraint() -> None:
    prof = profile(KERAS_MNIST, (1, 28, 28), 10)
    assert Limits(max_params=10_000).violations(prof) == ["1,199,882 parameters exceed --max-params 10,000"]
    assert Limits(max_params=2_000_000, max_flops=10**9).violations(prof) == []
