"""Backbone candidates: real torchvision networks, weights from files the tests write (nothing is
ever downloaded), the fine-tuning recipe, and one-line refusals before any training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from safetensors.torch import save_file

from automl_cnn.data.bundle import TrainData
from automl_cnn.errors import InfeasibleArchitecture, SpaceError, UserInputError
from automl_cnn.model.architecture import Architecture, Backbone, Candidate, Head, TrainConfig
from automl_cnn.model.backbone import hub_cache_file, load_pretrained
from automl_cnn.model.builder import build_model
from automl_cnn.model.profile import profile
from automl_cnn.space.backbone import prepare_backbones, with_backbone_weights
from automl_cnn.space.sampling import sample_candidate
from automl_cnn.space.schema import load_space, parse_space
from automl_cnn.training.trainer import Trainer


def resnet18_state(seed: int = 0) -> dict[str, torch.Tensor]:
    import torchvision

    torch.manual_seed(seed)
    return torchvision.models.resnet18(weights=None).state_dict()


@pytest.fixture
def weights_file(tmp_path: Path) -> Path:
    path = tmp_path / "resnet18.pth"
    torch.save(resnet18_state(), path)
    return path


def tiny_data(shape: tuple[int, int, int] = (3, 32, 32), n: int = 16, classes: int = 2) -> TrainData:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
    y = np.arange(n) % classes
    return TrainData(x, y, x[:8], y[:8], shape, classes, (0.5,) * shape[0], (0.25,) * shape[0])


def candidate(**backbone: object) -> Candidate:
    spec = Backbone(**{"family": "resnet18", **backbone})  # type: ignore[arg-type]
    return Candidate(Architecture((), Head(), spec), TrainConfig(batch_size=8, epochs=2, learning_rate=1e-2))


def test_weights_from_a_file_land_in_the_network(weights_file: Path) -> None:
    trainer = Trainer(candidate(weights=str(weights_file)), tiny_data(), seed=1, device="cpu")
    saved = torch.load(weights_file, weights_only=True)
    got = trainer.model.get_submodule("backbone").state_dict()
    assert torch.equal(got["conv1.weight"], saved["conv1.weight"])
    assert torch.equal(got["layer4.1.bn2.running_var"], saved["layer4.1.bn2.running_var"])
    fresh = build_model(candidate().architecture, (3, 32, 32), 2)  # no weights: random ones
    assert not torch.equal(fresh.get_submodule("backbone").state_dict()["conv1.weight"], saved["conv1.weight"])


def test_nested_and_safetensors_weights_load(tmp_path: Path) -> None:
    state = resnet18_state(seed=3)
    nested, flat = tmp_path / "ckpt.pth", tmp_path / "w.safetensors"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, nested)
    save_file({k: v.contiguous() for k, v in state.items()}, str(flat))
    for path in (nested, flat):
        model = build_model(candidate(weights=str(path)).architecture, (3, 32, 32), 2)
        assert load_pretrained(model)
        assert torch.equal(
            model.get_submodule("backbone").state_dict()["layer1.0.conv1.weight"], state["layer1.0.conv1.weight"]
        )


def test_mismatched_weights_are_refused_in_one_line(weights_file: Path) -> None:
    space = parse_space({"backbone": {"family": "resnet34", "weights": str(weights_file)}})
    with pytest.raises(UserInputError) as info:
        prepare_backbones(space.backbone, (3, 32, 32), "photos", download=False)
    line = str(info.value)
    assert "\n" not in line and "do not fit resnet34" in line
    assert "missing keys (layer1.2.conv1.weight" in line and "0 unexpected" in line
    have = resnet18_state()
    missing = [k for k in torch_keys("resnet34") if k not in have and not k.startswith("fc.")]
    assert f"{len([k for k in missing if not k.endswith('num_batches_tracked')])} missing keys" in line


def torch_keys(family: str) -> list[str]:
    import torchvision

    with torch.device("meta"):
        return list(getattr(torchvision.models, family)(weights=None).state_dict())


def test_weights_of_another_network_name_unexpected_keys(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({**resnet18_state(), "extra.weight": torch.zeros(2)}, path)
    space = parse_space({"backbone": {"family": "resnet18", "weights": str(path)}})
    with pytest.raises(UserInputError, match=r"0 missing keys \(\), 1 unexpected \(extra.weight\)"):
        prepare_backbones(space.backbone, (3, 32, 32), "photos", download=False)


def test_a_family_torchvision_lacks_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.models

    monkeypatch.delattr(torchvision.models, "convnext_tiny")  # as in a torchvision before 0.12
    space = parse_space({"backbone": {"family": ["none", "convnext_tiny"], "weights": "none"}})
    with pytest.raises(UserInputError, match="'convnext_tiny' is not in the installed torchvision") as info:
        prepare_backbones(space.backbone, (3, 32, 32), "photos", download=False)
    assert "resnet18" in str(info.value) and "\n" not in str(info.value)


def test_an_unknown_family_is_a_space_error() -> None:
    with pytest.raises(SpaceError, match=r"backbone\.family: unknown value 'vgg11'; use one of: none, resnet18"):
        parse_space({"backbone": {"family": "vgg11"}})


def test_an_image_too_small_is_refused_with_the_fix() -> None:
    space = parse_space({"backbone": {"family": "resnet18", "weights": "none"}})
    with pytest.raises(UserInputError) as info:
        prepare_backbones(space.backbone, (1, 8, 8), "digits", download=False)
    assert str(info.value) == (
        "digits: images are 8x8, too small for backbone resnet18 (at least 32x32); "
        "set backbone.resize: 32 in the space, or pass --image-size 32"
    )
    with pytest.raises(InfeasibleArchitecture, match="resnet18 needs images of at least 32x32, got 8x8"):
        profile(candidate().architecture, (1, 8, 8), 10)
    resized = prepare_backbones(
        parse_space({"backbone": {"family": "resnet18", "weights": "none", "resize": 32}}).backbone,
        (1, 8, 8),
        "d",
        False,
    )
    assert resized.notes == ("resnet18 trains from scratch (weights: none)",)


def test_torchvision_weights_come_from_the_hub_cache_or_train_from_scratch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))  # an empty cache of our own
    section = parse_space({"backbone": {"family": "resnet18", "weights": "torchvision"}}).backbone
    ready = prepare_backbones(section, (3, 32, 32), "photos", download=False)
    assert ready.weights == (("resnet18", "none"),)
    (note,) = ready.notes
    assert note.startswith("resnet18 trains from scratch: its ImageNet weights (resnet18-f37072fd.pth) are not in")
    assert note.endswith("pass --download to fetch them from https://download.pytorch.org/models/resnet18-f37072fd.pth")
    cached = hub_cache_file("resnet18")
    cached.parent.mkdir(parents=True)
    torch.save(resnet18_state(), cached)
    ready = prepare_backbones(section, (3, 32, 32), "photos", download=False)
    assert ready.weights == (("resnet18", str(cached)),) and ready.notes == ()


def test_relative_weights_are_read_from_the_space_files_folder(tmp_path: Path, weights_file: Path) -> None:
    (tmp_path / "spaces").mkdir()
    space_file = tmp_path / "spaces" / "mine.yaml"
    space_file.write_text("backbone:\n  family: resnet18\n  weights: ../resnet18.pth\n", encoding="utf-8")
    space = load_space(space_file)
    assert space.backbone.weights_for("resnet18") == str(weights_file)
    again = parse_space(__import__("yaml").safe_load(space.to_yaml()))  # the run folder's copy
    assert again.backbone.weights == space.backbone.weights
    override = with_backbone_weights(space.backbone, "none", "resnet18")
    assert override.weights_for("resnet18") == "none"


def test_fine_tuning_recipe_freezes_and_scales_the_backbone(weights_file: Path) -> None:
    data = tiny_data()
    head_only = Trainer(candidate(trainable="head"), data, seed=0, device="cpu")
    before = {k: v.clone() for k, v in head_only.model.state_dict().items()}
    head_only.run_epoch()
    after = head_only.model.state_dict()
    assert torch.equal(after["backbone.layer4.1.conv2.weight"], before["backbone.layer4.1.conv2.weight"])
    assert torch.equal(after["backbone.bn1.running_mean"], before["backbone.bn1.running_mean"])  # BN frozen too
    assert not torch.equal(after["head.0.weight"], before["head.0.weight"])

    assert [g["lr"] for g in head_only.optimizer.param_groups] == [1e-2, 1e-2]  # from scratch: one rate
    recipe = {"trainable": "last_k", "last_k": 1, "warmup_epochs": 1, "lr_mult": 0.5, "weights": str(weights_file)}
    last = Trainer(candidate(**recipe), data, seed=0, device="cpu")
    assert [g["lr"] for g in last.optimizer.param_groups] == [1e-2, 5e-3]
    start = {k: v.clone() for k, v in last.model.state_dict().items()}
    last.run_epoch()  # warm-up: the head alone
    warm = {k: v.clone() for k, v in last.model.state_dict().items()}
    assert torch.equal(warm["backbone.layer4.0.conv1.weight"], start["backbone.layer4.0.conv1.weight"])
    last.run_epoch()
    assert not torch.equal(
        last.model.state_dict()["backbone.layer4.0.conv1.weight"], warm["backbone.layer4.0.conv1.weight"]
    )
    assert torch.equal(
        last.model.state_dict()["backbone.layer1.0.conv1.weight"], start["backbone.layer1.0.conv1.weight"]
    )


def test_a_mixed_space_samples_both_kinds_and_records_round_trip() -> None:
    space = parse_space(
        {
            "backbone": {
                "family": ["none", "resnet18", "mobilenet_v3_small"],
                "trainable": ["all", "last_k", "head"],
                "last_k": [1, 2],
                "lr_mult": [0.1, 0.3],
                "warmup_epochs": [0, 1],
                "weights": "none",
                "resize": 32,
            }
        }
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    kinds = set()
    for _ in range(20):
        trial = study.ask()
        cand = sample_candidate(trial, space)
        spec = cand.architecture.backbone
        kinds.add(spec.family if spec else "blocks")
        if spec is not None:
            assert not cand.architecture.blocks and not any(k.startswith("block") for k in trial.params)
            assert ("backbone.last_k" in trial.params) == (spec.trainable == "last_k")
            assert "backbone.lr_mult" not in trial.params  # no weights: the backbone takes the head's rate
            assert ("backbone.warmup_epochs" in trial.params) == (spec.trainable != "head")
            assert Candidate.from_json(cand.to_json()) == cand
            assert cand.flat_params()["backbone.family"] == spec.family
            assert cand.architecture.describe().startswith(f"{spec.family}(scratch, ")
        study.tell(trial, 0.0)
    assert kinds == {"blocks", "resnet18", "mobilenet_v3_small"}


def test_records_of_networks_from_blocks_read_as_before() -> None:
    cand = sample_candidate(optuna.create_study().ask(), load_space("tiny"))
    assert "backbone" not in cand.to_dict()["architecture"]
    assert "backbone" not in load_space("default").to_dict()


@pytest.mark.parametrize("family", ["mobilenet_v3_small", "efficientnet_b0", "convnext_tiny", "resnet34"])
def test_every_family_builds_profiles_and_runs_on_gray_input(family: str) -> None:
    arch = Architecture((), Head(), Backbone(family, resize=32, head_units=16, head_dropout=0.1))
    prof = profile(arch, (1, 20, 24), 3)
    model = build_model(arch, (1, 20, 24), 3, [0.5], [0.2]).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 1, 20, 24))
    assert out.shape == (2, 3) and prof.flops > 0
    assert prof.params == sum(p.numel() for p in model.parameters())
    assert prof.feature_shapes[-1] == (3, 32, 38)  # shorter side raised to 32, aspect kept


def test_warm_start_presets_never_become_backbones() -> None:
    from automl_cnn.space.presets import warm_start_params

    backbone_first = parse_space(
        {"backbone": {"family": ["resnet18", "none"]}, "blocks": {"count": {"low": 0, "high": 3}}}
    )
    fitted = warm_start_params(["classics"], backbone_first)
    assert fitted and all(params["backbone.family"] == "none" for _, params in fitted)
    assert warm_start_params(["classics"], parse_space({"backbone": {"family": "resnet18"}})) == []


def test_after_a_warm_up_all_of_the_backbone_trains(weights_file: Path) -> None:
    trainer = Trainer(candidate(warmup_epochs=1, weights=str(weights_file)), tiny_data(), seed=0, device="cpu")
    saved = torch.load(weights_file, weights_only=True)
    trainer.run_epoch()  # warm-up: the backbone keeps the file's weights
    assert torch.equal(trainer.model.state_dict()["backbone.conv1.weight"], saved["conv1.weight"])
    trainer.run_epoch()
    assert not torch.equal(trainer.model.state_dict()["backbone.conv1.weight"], saved["conv1.weight"])


def test_an_ensemble_of_backbones_saves_loads_and_predicts_alike(tmp_path: Path) -> None:
    from automl_cnn.model.trained import TrainedModel

    members = []
    for i, family in enumerate(["mobilenet_v3_small", "resnet18"]):
        cand = candidate(family=family, resize=32, head_units=8)
        torch.manual_seed(i)
        members.append((cand, build_model(cand.architecture, (1, 16, 16), 3, [0.5], [0.2]).state_dict(), 0.5))
    model = TrainedModel.from_members(members, (1, 16, 16), ("a", "b", "c"), (0.5,), (0.2,))
    assert model.is_ensemble
    x = np.random.default_rng(0).integers(0, 256, (4, 1, 16, 16), dtype=np.uint8)
    model.save(tmp_path / "ens")
    loaded = TrainedModel.load(tmp_path / "ens")
    np.testing.assert_allclose(loaded.predict_proba(x), model.predict_proba(x), atol=1e-6)
    assert [c.architecture.backbone.family for c, _ in loaded.members] == ["mobilenet_v3_small", "resnet18"]  # type: ignore[union-attr]


def test_the_codec_writes_a_backbone_and_omits_an_absent_one() -> None:
    from automl_cnn.codec import from_jsonable, to_jsonable

    arch = candidate(trainable="last_k", last_k=2).architecture
    assert from_jsonable(Architecture, to_jsonable(arch)) == arch
    assert "backbone" not in to_jsonable(Architecture(()))


def _cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from automl_cnn.cli import main

    try:
        code = main(["search", "--data", "digits", "--no-progress", *args])
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--backbone-weights", "resnet18.pth"], "--backbone-weights: space default has no backbone candidates"),
        (
            ["--space", "transfer", "--backbone-weights", "nope.pth"],
            "--backbone-weights: weights file nope.pth not found; give a .pth or .safetensors file",
        ),
        (  # one file for every family: mobilenet_v3_small is refused, naming the keys
            ["--space", "transfer", "--backbone-weights", "resnet18.pth"],
            "resnet18.pth: weights do not fit mobilenet_v3_small: ",
        ),
        (
            ["--space", "transfer", "--backbone-weights", "resnet34=resnet18.pth"],
            "--backbone-weights: 'resnet34' is not a backbone family of space transfer; "
            "its families: resnet18, mobilenet_v3_small",
        ),
    ],
)
def test_backbone_weights_on_the_command_line_refuse_in_one_line_and_write_nothing(
    args: list[str], words: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    torch.save(resnet18_state(), tmp_path / "resnet18.pth")
    code, err = _cli(args, capsys)
    assert code == 2, err
    (line,) = err.strip().splitlines()
    assert line.startswith("error: ") and words in line, line
    assert [p.name for p in tmp_path.iterdir()] == ["resnet18.pth"]  # no runs/, no mlflow.db


def test_backbone_weights_override_the_spaces_for_one_family_or_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, weights_file: Path
) -> None:
    from automl_cnn.app import make_plan
    from automl_cnn.cli import build_parser
    from automl_cnn.engine.config import SearchConfig

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))  # no cached ImageNet weights
    store = ["--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}"]
    args = ["search", "--data", "digits", "--space", "transfer", "--backbone-weights", "resnet18=resnet18.pth", *store]
    plan = make_plan("digits", "transfer", SearchConfig.from_cli(build_parser().parse_args(args)), None)
    assert plan.space.backbone.weights == (("resnet18", str(weights_file)), ("mobilenet_v3_small", "none"))
    assert plan.space.backbone.notes[0].startswith("mobilenet_v3_small trains from scratch: its ImageNet weights")
    # from Python, a Path for a space of resnet18 alone; the space file's own weights are replaced
    space = parse_space({"backbone": {"family": ["none", "resnet18"], "weights": "elsewhere.pth", "resize": 32}})
    cfg = SearchConfig.from_settings(backbone_weights=weights_file, tracking_uri=store[1])
    assert cfg.search.backbone_weights == str(weights_file)
    assert make_plan("digits", space, cfg, None).space.backbone.weights == (("resnet18", str(weights_file)),)
    assert not (tmp_path / "runs").exists()
