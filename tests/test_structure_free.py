"""Candidates without convolutions: an MLP on the flattened image, for data without spatial
structure. The shipped default space can express them, the gate refuses the one meaningless
form (no block and a global-average head), and the MLP preset is the first warm start where
the space allows it."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState
from sessions import plan_for, session_for

from automl_cnn.data import load_images, split_data
from automl_cnn.engine.records import TrialRecord
from automl_cnn.engine.search.cost import CostModel
from automl_cnn.engine.search.gate import static_check
from automl_cnn.engine.search.running import RunningTrial
from automl_cnn.errors import InfeasibleArchitecture, SpaceError
from automl_cnn.model.architecture import Architecture, Candidate, ConvBlock, Dense, Head, TrainConfig
from automl_cnn.model.builder import build_model
from automl_cnn.model.profile import profile
from automl_cnn.space.inputs import check_input_fits, smallest_network
from automl_cnn.space.presets import GROUPS, PRESETS, project, warm_start_params
from automl_cnn.space.sampling import sample_candidate
from automl_cnn.space.schema import load_space, parse_space, shipped_spaces

HERE = Path(__file__).resolve().parent
MLP = Architecture((), Head("flatten", (Dense(64, 0.5), Dense(32))))
MLP_GAP = Architecture((), Head("global_avg", (Dense(16),)))


def test_a_zero_block_network_is_an_mlp_with_exact_parameters_and_flops() -> None:
    prof = profile(MLP, (1, 8, 8), 10)
    assert prof.feature_shapes == ((1, 8, 8),)
    assert prof.params == (64 * 64 + 64) + (64 * 32 + 32) + (32 * 10 + 10)
    assert prof.flops == 2 * (64 * 64 + 64 * 32 + 32 * 10)
    model = build_model(MLP, (1, 8, 8), 10).eval()
    assert not any(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    with torch.no_grad():
        out = model(torch.rand(3, 1, 8, 8))
    assert out.shape == (3, 10) and torch.isfinite(out).all()
    assert sum(p.numel() for p in model.parameters()) == prof.params


def test_no_block_with_a_global_average_head_is_refused_with_the_reason() -> None:
    with pytest.raises(InfeasibleArchitecture, match="without convolutional blocks needs a flatten head"):
        profile(MLP_GAP, (1, 28, 28), 10)
    with pytest.raises(InfeasibleArchitecture, match="use head type flatten"):
        build_model(MLP_GAP, (3, 32, 32), 10)
    profile(Architecture((ConvBlock(filters=4),), Head("global_avg")), (1, 8, 8), 10)  # with a block it is fine


def test_describe_and_convolutional_tell_an_mlp_from_a_cnn() -> None:
    assert MLP.describe() == "mlp-fc64-d0.50-fc32"
    assert Architecture(()).describe() == "mlp-linear"
    assert MLP_GAP.describe() == "mlp-gap-fc16"
    cnn = Architecture((ConvBlock(filters=8, pooling="none"),), Head("flatten", (Dense(32),)))
    assert cnn.describe() == "conv8k3 | flat-fc32"
    assert MLP.convolutional is False and Architecture(()).convolutional is False
    assert cnn.convolutional is True


def test_canonical_keys_of_mlps() -> None:
    a = Candidate(Architecture((), Head("flatten", (Dense(64, 0),), activation="relu")), TrainConfig())
    b = Candidate(Architecture((), Head("flatten", (Dense(64, 0.0),))), TrainConfig(momentum=0.5))
    c = Candidate(Architecture((), Head("flatten", (Dense(128),))), TrainConfig())
    assert a.key() == b.key() != c.key()
    assert Candidate.from_json(a.to_json()) == a
    assert a.flat_params()["n_blocks"] == 0


def test_block_count_may_be_zero_but_not_negative(tmp_path: Path) -> None:
    assert parse_space({"blocks": {"count": {"low": 0, "high": 2}}}).blocks.count.values() == (0, 2)
    bad = tmp_path / "bad.yaml"
    bad.write_text("blocks:\n  count: {low: -1, high: 2}\n")
    with pytest.raises(SpaceError, match=r"blocks.count: -1 is below the minimum 0; 0 blocks is an MLP"):
        load_space(bad)


def test_the_default_space_samples_mlps_that_build_profile_and_train() -> None:
    space = load_space("default")
    assert space.blocks.count.values() == (0, 4)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    mlps: list[Candidate] = []
    heads: set[str] = set()
    for _ in range(60):
        trial = study.ask()
        cand = sample_candidate(trial, space)
        study.tell(trial, 0.0)
        if cand.architecture.blocks:
            heads.add(trial.params["head.type"])
            continue
        assert trial.params["blocks"] == 0 and not any(k.startswith("block1.") for k in trial.params)
        # no conv block: the head flattens, and its type is no suggestion (a GAP head would be refused)
        assert "head.type" not in trial.params and cand.architecture.head.type == "flatten"
        profile(cand.architecture, (1, 8, 8), 10)  # every one builds
        mlps.append(cand)
    assert len(mlps) >= 5, f"{len(mlps)} MLPs in 60 samples"
    assert heads == {"flatten", "global_avg"}  # CNNs still draw either head
    assert all(c.architecture.describe().startswith("mlp") for c in mlps)
    from automl_cnn.training.trainer import fit

    data = split_data(load_images("digits"), seed=0).search_data()
    short = Candidate(mlps[0].architecture, TrainConfig(optimizer="adamw", learning_rate=3e-3, epochs=2))
    trainer, history = fit(short, data, seed=0, device="cpu")
    assert [e.epoch for e in history] == [1, 2]
    assert history[-1].val_acc > 0.5  # well above chance (0.1) after two epochs on digits
    with torch.no_grad():
        assert trainer.model.eval()(torch.rand(4, 1, 8, 8)).shape == (4, 10)


def test_an_mlp_space_fits_any_input_size() -> None:
    space = parse_space({"blocks": {"count": {"low": 0, "high": 3}, "pooling": "max"}})
    assert smallest_network(space).blocks == ()
    check_input_fits(space, (1, 2, 2), "tiny images")  # the MLP takes them: no error


def test_the_mlp_preset_is_a_strong_structure_free_baseline() -> None:
    preset = PRESETS["mlp"].value
    assert preset.architecture.convolutional is False and preset.architecture.head.type == "flatten"
    assert preset.training.augmentation.enabled is False  # it would destroy data without spatial order
    assert preset.training.label_smoothing > 0
    assert GROUPS["classics"].value[0] == "mlp"


def test_the_mlp_preset_projects_onto_default_and_runs_first() -> None:
    fitted = project(PRESETS["mlp"].value, load_space("default"))
    assert fitted is not None
    cand, params = fitted
    assert cand.architecture.blocks == () and cand.architecture.head.type == "flatten"
    assert cand.architecture.head.dense == (Dense(1024, 0.5),)  # 2048 units snapped to the widest choice
    assert cand.training.label_smoothing == 0.1 and cand.training.optimizer == "adamw"
    assert not cand.training.augmentation.enabled
    assert params["blocks"] == 0
    assert warm_start_params(["classics"], load_space("default"))[0] == ("mlp", params)


@pytest.mark.parametrize(
    "space",
    [*(HERE / "spaces").glob("*.yaml"), *(p for n, p in shipped_spaces().items() if n in ("tiny", "residual"))],
    ids=lambda p: p.stem,
)
def test_the_mlp_preset_does_not_fit_spaces_without_zero_blocks(space: Path) -> None:
    loaded = load_space(space)
    assert min(int(v) for v in loaded.blocks.count.values()) >= 1  # every such space needs a block
    assert project(PRESETS["mlp"].value, loaded) is None
    assert "mlp" not in [name for name, _ in warm_start_params(["classics"], loaded)]


def test_the_mlp_preset_does_not_fit_a_space_whose_head_cannot_flatten() -> None:
    space = parse_space({"blocks": {"count": {"low": 0, "high": 2}}, "head": {"type": "global_avg"}})
    assert project(PRESETS["mlp"].value, space) is None


def test_the_gate_refuses_an_mlp_with_a_global_average_head_before_training(tmp_path: Path) -> None:
    with session_for(plan_for(tmp_path, trials=1)) as s:
        cost = CostModel(len(s.bundle.train_idx), len(s.bundle.val_idx))
        run_id = s.tracker.start_run("t0", {}, {}, parent=s.parent_run)
        bad = RunningTrial(TrialRecord(0, seed=0, run_id=run_id, candidate=Candidate(MLP_GAP, TrainConfig(epochs=2))))
        ending = static_check(s, bad, cost)
        assert ending is not None and ending.study_state == TrialState.FAIL
        assert "not trained" in ending.reason and "flatten head" in ending.reason
        run_id = s.tracker.start_run("t1", {}, {}, parent=s.parent_run)
        good = RunningTrial(TrialRecord(1, seed=1, run_id=run_id, candidate=Candidate(MLP, TrainConfig(epochs=2))))
        assert static_check(s, good, cost) is None
        measured = good.record.profile
        assert measured is not None and measured.params == profile(MLP, (1, 8, 8), 10).params


def test_the_summary_points_out_a_model_carried_by_networks_without_convolutions() -> None:
    from types import SimpleNamespace

    from automl_cnn.engine.final.delivered import _warnings
    from automl_cnn.engine.final.plan import FinalPlan
    from automl_cnn.model.measures import EpochResult

    def rec(number: int, blocks: tuple[ConvBlock, ...], val: float) -> TrialRecord:
        history = (EpochResult(1, 0.0, 0.0, 0.0, val, 1.0, 0.001),)
        return TrialRecord(number, 0, "run", candidate=Candidate(Architecture(blocks, Head())), history=history)

    by_number = {0: rec(0, (ConvBlock(),), 0.95), 1: rec(1, (), 0.90)}  # trial 1: an MLP
    session = SimpleNamespace(bundle=SimpleNamespace(num_classes=10))

    def said(members: tuple[tuple[int, float], ...]) -> list[str]:
        return _warnings(session, by_number, FinalPlan(members, {}, (), {}))  # type: ignore[arg-type]

    assert said(((1, 1.0),)) and "is delivered:" in said(((1, 1.0),))[0]
    assert "as most of the ensemble" in said(((1, 0.6), (0, 0.4)))[0]
    assert said(((0, 0.78), (1, 0.22))) == []  # a CNN carries it: the data has spatial structure
    assert said(((0, 1.0),)) == []
