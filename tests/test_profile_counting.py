"""The gate's parameter and FLOP counts from shapes equal torch's FlopCounterMode trace of the
built network, for hand-picked layouts and for networks sampled from every shipped space."""

from __future__ import annotations

import time

import optuna
import pytest

from automl_cnn.errors import InfeasibleArchitecture
from automl_cnn.model.architecture import Architecture, ConvBlock, Dense, Head
from automl_cnn.model.profile import profile, traced_profile
from automl_cnn.space.sampling import sample_candidate
from automl_cnn.space.schema import load_space, shipped_spaces

HAND_PICKED = [
    Architecture((), Head("flatten", (Dense(64), Dense(32)))),  # an MLP
    Architecture((ConvBlock(filters=16),), Head("flatten")),
    Architecture((ConvBlock(convs=2, filters=8, kernel_size=3, padding="valid", batch_norm=False, pooling="none"),)),
    Architecture(
        (
            ConvBlock(type="residual", convs=2, filters=8, stride=2, pooling="none"),  # a 1x1 shortcut, strided
            ConvBlock(type="residual", convs=3, filters=8, kernel_size=5, batch_norm=False, pooling="avg"),
            ConvBlock(type="residual", convs=1, filters=24, stride=1, pooling="none"),  # a shortcut, not strided
        ),
        Head("global_avg", (Dense(128, 0.2),)),
    ),
    Architecture(
        (
            ConvBlock(convs=2, filters=32, kernel_size=3, stride=2, padding="valid", pooling="max", pool_size=3),
            ConvBlock(filters=64, kernel_size=4, activation="silu", pooling="none", dropout=0.1),
        ),
        Head("flatten", (Dense(256),), activation="gelu"),
    ),
]


def _same(arch: Architecture, input_shape: tuple[int, int, int], classes: int) -> None:
    counted, traced = profile(arch, input_shape, classes), traced_profile(arch, input_shape, classes)
    assert (counted.params, counted.flops) == (traced.params, traced.flops), arch
    assert counted.feature_shapes == traced.feature_shapes
    assert counted.flops > 0 and counted.params > 0


@pytest.mark.parametrize("arch", HAND_PICKED)
@pytest.mark.parametrize("input_shape", [(1, 16, 16), (3, 32, 32), (1, 28, 20)])
def test_counts_from_shapes_equal_the_traced_counts(arch: Architecture, input_shape: tuple[int, int, int]) -> None:
    _same(arch, input_shape, 10)


@pytest.mark.parametrize("name", sorted(shipped_spaces()))
def test_counts_equal_over_sampled_networks_of_every_space(name: str) -> None:
    space = load_space(name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    compared = 0
    for i in range(10):
        arch = sample_candidate(study.ask(), space).architecture
        input_shape = [(1, 8, 8), (3, 32, 32)][i % 2]
        try:
            _same(arch, input_shape, 7)
        except InfeasibleArchitecture:
            continue
        compared += 1
    assert compared >= 4, f"{name}: only {compared} of 10 samples fit"


def test_counting_from_shapes_is_much_cheaper_than_tracing() -> None:
    arch = HAND_PICKED[3]
    profile(arch, (3, 32, 32), 10), traced_profile(arch, (3, 32, 32), 10)  # warm
    start = time.perf_counter()
    for _ in range(5):
        traced_profile(arch, (3, 32, 32), 10)
    traced = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(5):
        profile(arch, (3, 32, 32), 10)
    assert time.perf_counter() - start < traced / 5
