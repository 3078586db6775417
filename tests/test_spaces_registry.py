"""Every space under search_spaces/ samples, builds and runs a forward pass (as timm tests
every registered model)."""

from __future__ import annotations

import optuna
import pytest
import torch

from automl_cnn.errors import InfeasibleArchitecture
from automl_cnn.model.builder import build_model
from automl_cnn.model.profile import profile
from automl_cnn.space.sampling import sample_candidate
from automl_cnn.space.schema import load_space, shipped_spaces


@pytest.mark.parametrize("name", sorted(shipped_spaces()))
@pytest.mark.parametrize("input_shape", [(1, 28, 28), (3, 32, 32)])
def test_space_samples_builds_and_runs_forward(name: str, input_shape: tuple[int, int, int]) -> None:
    space = load_space(name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), direction="maximize")
    built = 0
    for _ in range(12):
        trial = study.ask()
        cand = sample_candidate(trial, space)
        try:
            prof = profile(cand.architecture, input_shape, 10)
        except InfeasibleArchitecture:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        model = build_model(cand.architecture, input_shape, 10).eval()
        with torch.no_grad():
            out = model(torch.rand(2, *input_shape))
        assert out.shape == (2, 10)
        assert torch.isfinite(out).all()
        assert sum(p.numel() for p in model.parameters()) == prof.params
        study.tell(trial, 0.5)
        built += 1
    assert built >= 6, f"{name}: only {built} of 12 samples fit {input_shape}"


def test_parameters_of_absent_parts_are_never_suggested() -> None:
    from automl_cnn.space.schema import parse_space

    space = parse_space(
        {
            "blocks": {"count": {"low": 1, "high": 3}, "pooling": ["max", "none"], "pool_size": [2, 3]},
            "training": {"optimizer": ["adam", "sgd"], "momentum": {"low": 0.5, "high": 0.95}},
        }
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(30):
        trial = study.ask()
        cand = sample_candidate(trial, space)
        n = len(cand.architecture.blocks)
        assert not any(k.startswith(f"block{n + 1}.") for k in trial.params)
        for i, block in enumerate(cand.architecture.blocks, start=1):
            assert (f"block{i}.pool_size" in trial.params) == (block.pooling != "none")
        assert ("train.momentum" in trial.params) == (cand.training.optimizer == "sgd")
        study.tell(trial, 0.0)
