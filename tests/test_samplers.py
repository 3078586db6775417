"""Every --sampler drives a real Optuna study over every shipped space (no training: the
objective here is a stand-in score, which is all a sampler sees of a trial)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from automl_cnn.engine.config import SAMPLERS
from automl_cnn.errors import InfeasibleArchitecture
from automl_cnn.model.profile import profile
from automl_cnn.services.study import make_sampler
from automl_cnn.space.sampling import sample_candidate
from automl_cnn.space.schema import load_space

SPACES = Path(__file__).resolve().parent.parent / "search_spaces"


def _score(cand) -> float:  # type: ignore[no-untyped-def]
    """A stand-in validation score that rewards wider first blocks (an MLP has none) and a mid
    learning rate."""
    blocks = cand.architecture.blocks
    width = blocks[0].filters / 128 if blocks else 0.0
    return width - abs(cand.training.learning_rate - 2e-3) * 50


@pytest.mark.parametrize("space_name", ["default", "residual"])
@pytest.mark.parametrize("name", SAMPLERS)
def test_sampler_proposes_varied_valid_candidates(name: str, space_name: str) -> None:
    assert set(SAMPLERS) >= {"tpe", "random", "cmaes", "gp", "qmc"}
    space = load_space(SPACES / f"{space_name}.yaml")
    study = optuna.create_study(direction="maximize", sampler=make_sampler(name, seed=0))
    keys = set()
    for _ in range(14):
        trial = study.ask()
        cand = sample_candidate(trial, space)
        keys.add(cand.key())
        try:
            profile(cand.architecture, (1, 28, 28), 10)
        except InfeasibleArchitecture:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        assert cand.training.epochs >= 1
        assert cand.architecture.convolutional or cand.architecture.head.type == "flatten"  # or refused
        study.tell(trial, _score(cand))
    assert len(keys) >= 8, f"{name} kept proposing the same few candidates"
    assert study.best_value is not None
    assert _first_keys(name, space, 3) == _first_keys(name, space, 3)  # --seed fixes the proposals


def _first_keys(name: str, space, n: int) -> list[str]:  # type: ignore[no-untyped-def]
    study = optuna.create_study(direction="maximize", sampler=make_sampler(name, seed=0))
    return [sample_candidate(study.ask(), space).key() for _ in range(n)]
