"""SearchConfig: settings in groups, each declared once (default, command-line form), text parsed
one way for the command line and Python, one JSON form that still reads the flat one of old."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from automl_cnn import DataOptions
from automl_cnn.cli import _add_settings, build_parser
from automl_cnn.data.options import DataSettings
from automl_cnn.engine.config import GROUP_OF, SearchConfig, flat_settings
from automl_cnn.engine.settings import BudgetSettings, ClusterSettings
from automl_cnn.errors import UserInputError
from automl_cnn.options import cli_option
from automl_cnn.services.study import PRUNERS, SAMPLERS, make_pruner, make_sampler
from automl_cnn.services.tracking import default_tracking_uri
from automl_cnn.space.presets import GROUPS, PRESETS

# `automl-cnn search`'s settings as the hand-written parser had them: flag -> help text.
HAND_WRITTEN = {
    "--test-data": "your own test set (folder, .csv or .npz), kept out of the search",
    "--image-size": "resize every image, e.g. 32 or 32x48 (HxW)",
    "--strict": "a corrupt or unreadable image is an error, not skipped",
    "--data-root": "where torchvision datasets are",
    "--download": "let torchvision download a dataset missing from --data-root",
    "--class-weights": "weight the loss by inverse class frequency",
    "--memory-budget": "decoded bytes kept in memory (e.g. 2GB); more streams from disk",
    "--stream": "always stream images from disk",
    "--in-memory": "always load images into memory",
    "--trials": "the most trials to run",
    "--time-budget": "wall-clock budget for the whole run, e.g. 90s, 10m, 1h (default 10m without --trials)",
    "--max-epochs": "cap every trial's epochs",
    "--workers": "trials at once (default: one per CPU core, or per GPU)",
    "--cpus-per-trial": "CPU cores each trial takes",
    "--gpus-per-trial": "GPUs per trial; a fraction packs trials on one GPU",
    "--sampler": "Optuna sampler (default tpe)",
    "--pruner": "early stopping of weak trials (default asha)",
    "--seed": "seeds the split, the sampler and every trial",
    "--split": "train,val,test fractions",
    "--warm-start": "presets enqueued first where they fit the space: classics (default), mlp, keras_mnist, lenet5, "
    "vgg_small, resnet_small (comma-separated), or none",
    "--objective": "accuracy, or accuracy plus any of params, flops, latency (e.g. accuracy,params) for a Pareto front",
    "--pick": "which Pareto member to deliver: accuracy, or OBJECTIVE@TOLERANCE, e.g. params@0.005 (the default: "
    "fewest of the second objective within 0.5 points of the best accuracy)",
    "--final-repeats": "retrain the winner with N seeds",
    "--final-top-k": "also retrain and test the next best trials",
    "--max-params": "never train candidates with more parameters",
    "--max-flops": "never train candidates with more FLOPs per image",
    "--max-latency-ms": "never train candidates slower per image (1 CPU thread)",
    "--tracking-uri": "MLflow tracking URI (default sqlite:///./mlflow.db)",
    "--experiment": "MLflow experiment name",
    "--model-name": "registered model name (default automl-cnn-<data>-<CxHxW>-<data fingerprint>)",
    "--out": "output folder (default runs/<data>-<time>)",
    "--ray-address": "join an existing Ray cluster (e.g. auto or 10.0.0.5:6379)",
    "--storage": "Optuna storage: a PostgreSQL/MySQL/SQLite URL or redis:// "
    "(default: a journal file in the run folder)",
    "--device": "force the device inside workers",
    "--no-progress": "plain log lines instead of the live panel",
}
ADDED = {
    "--executor",
    "--promote",
    "--wait-for-resources",
    "--ensemble",
    "--data-fidelity",
    "--metric",
    "--backbone-weights",
    "--epochs",
    "--final-start",
}  # settings that came later


def _search_parser() -> argparse.ArgumentParser:
    p = build_parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    parser: argparse.ArgumentParser = sub.choices["search"]
    return parser


def _cli(*args: str) -> SearchConfig:
    return SearchConfig.from_cli(build_parser().parse_args(["search", "--data", "x", *args]))


def _setting_fields() -> list[dataclasses.Field[Any]]:
    return [f for group in SearchConfig.groups().values() for f in dataclasses.fields(group)]


def test_every_setting_has_a_flag_or_says_it_has_none() -> None:
    flags: list[str] = []
    not_on_the_cli = []
    for f in _setting_fields():
        opt = cli_option(f)  # raises for a field that declares neither
        if opt is None:
            not_on_the_cli.append(f.name)
        else:
            assert opt.flags, f.name
            flags += opt.flags
    assert not_on_the_cli == ["enqueue"]
    assert len(flags) == len(set(flags))
    assert set(flags) == set(HAND_WRITTEN) | ADDED


def test_a_setting_without_a_command_line_form_is_refused() -> None:
    @dataclass(frozen=True)
    class Settings:
        plain: int = 3

    with pytest.raises(TypeError, match="setting 'plain' declares no command-line form"):
        _add_settings(argparse.ArgumentParser(), Settings)


def test_the_flags_and_help_texts_are_the_hand_written_ones_with_their_defaults() -> None:
    actions = {a.option_strings[0]: a for a in _search_parser()._actions if a.option_strings}
    generated = ("--sampler", "--pruner", "--warm-start")  # from the registries
    for flag, text in HAND_WRITTEN.items():
        if flag not in generated:
            assert actions[flag].help.startswith(text), flag
    for flag, action in actions.items():
        if flag not in ("-h", "--data"):
            assert "default" in action.help, flag
    assert actions["--cpus-per-trial"].help == "CPU cores each trial takes (default: 1)"
    assert actions["--memory-budget"].help.endswith("(default: 2GB)")
    assert actions["--experiment"].help == "MLflow experiment name (default: automl-cnn)"
    assert actions["--sampler"].choices == ("tpe", "random", "cmaes", "gp", "qmc")
    assert actions["--pruner"].choices == ("asha", "hyperband", "median", "none")
    assert actions["--data-fidelity"].choices == ("auto", "off") and actions["--data-fidelity"].default == "auto"
    assert actions["--epochs"].choices == ("auto", "fixed") and actions["--epochs"].default == "auto"
    assert "learns" in actions["--epochs"].help and "(default)" in actions["--epochs"].help
    assert actions["--device"].choices == ("cpu", "cuda")
    assert actions["--final-start"].choices == ("restart", "continue") and actions["--final-start"].default == "restart"
    assert actions["--objective"].metavar == "OBJECTIVE" and actions["--objective"].dest == "objectives"
    assert actions["--no-progress"].dest == "progress" and actions["--no-progress"].const is False


def test_command_line_defaults_are_the_dataclass_defaults() -> None:
    ns = build_parser().parse_args(["search", "--data", "x"])
    for f in _setting_fields():
        if cli_option(f) is not None:
            assert getattr(ns, f.name) == f.default, f.name
    assert SearchConfig.from_cli(ns) == SearchConfig()


def test_a_full_command_line_gives_the_expected_config(tmp_path: Path) -> None:
    cfg = _cli(
        *("--test-data", "t.csv", "--image-size", "32x48", "--strict", "--data-root", str(tmp_path), "--download"),
        *("--class-weights", "--memory-budget", "512MB", "--in-memory", "--trials", "5", "--time-budget", "10m"),
        *("--max-epochs", "3", "--workers", "2", "--cpus-per-trial", "2", "--gpus-per-trial", "0.5"),
        *("--sampler", "random", "--pruner", "median", "--seed", "7", "--split", "0.6,0.2,0.2"),
        *("--warm-start", "lenet5,keras_mnist", "--objective", "accuracy,params", "--pick", "params@0.01"),
        *("--final-repeats", "3", "--final-top-k", "2", "--max-params", "100000", "--max-flops", "5000000"),
        *("--max-latency-ms", "2.5", "--tracking-uri", "sqlite:///x.db", "--experiment", "e", "--model-name", "m"),
        *("--out", "o", "--ray-address", "auto", "--storage", "postgresql://u:pw@h/db", "--device", "cpu"),
        *("--executor", "inprocess", "--no-progress", "--ensemble", "3"),
    )
    assert cfg == SearchConfig.from_settings(
        test_data="t.csv",
        image_size=(32, 48),
        strict=True,
        data_root=tmp_path,
        download=True,
        class_weights=True,
        memory_budget=512 * 1024**2,
        stream=False,
        trials=5,
        time_budget=600.0,
        max_epochs=3,
        workers=2,
        cpus_per_trial=2.0,
        gpus_per_trial=0.5,
        sampler="random",
        pruner="median",
        seed=7,
        split=(0.6, 0.2, 0.2),
        warm_start=("lenet5", "keras_mnist"),
        objectives=("accuracy", "params"),
        pick="params@0.01",
        final_repeats=3,
        final_top_k=2,
        ensemble="3",
        max_params=100_000,
        max_flops=5_000_000,
        max_latency_ms=2.5,
        tracking_uri="sqlite:///x.db",
        experiment="e",
        model_name="m",
        out=Path("o"),
        ray_address="auto",
        storage="postgresql://u:pw@h/db",
        device="cpu",
        executor="inprocess",
        progress=False,
    )


@pytest.mark.parametrize(
    ("args", "field", "value"),
    [
        (["--image-size", "28"], "image_size", (28, 28)),
        (["--stream"], "stream", True),
        (["--warm-start", "none"], "warm_start", ()),
        (["--split", "0.8/0.1/0.1"], "split", (0.8, 0.1, 0.1)),
        (["--time-budget", "90"], "time_budget", 90.0),
        (["--time-budget", "1.5h"], "time_budget", 5400.0),
        (["--memory-budget", "2GB"], "memory_budget", 2 * 1024**3),
        (["--objective", "accuracy,latency"], "objectives", ("accuracy", "latency")),
        (["--final-start", "continue"], "final_start", "continue"),
    ],
)
def test_one_flag_sets_its_setting(args: list[str], field: str, value: Any) -> None:
    cfg = _cli(*args)
    assert getattr(getattr(cfg, GROUP_OF[field]), field) == value == cfg.settings()[field]


def _rich_config(tmp_path: Path) -> SearchConfig:
    earlier = tmp_path / "earlier-search"
    earlier.mkdir()
    return SearchConfig.from_settings(
        trials=4,
        time_budget=90.0,
        image_size=(32, 48),
        data_root=tmp_path / "tv",
        stream=False,
        split=(0.6, 0.25, 0.15),
        enqueue=({"n_blocks": 2, "lr": 0.01, "opt": "adam"}, {"n_blocks": 1, "flag": True, "none": None}),
        objectives=("accuracy", "params"),
        warm_start=("lenet5", str(earlier)),
        out=tmp_path / "out",
        storage="postgresql://user:secret@db/optuna",
        progress=False,
        max_latency_ms=3.0,
        executor="inprocess",
    )


def test_to_dict_is_json_and_from_dict_reads_it_back_equal(tmp_path: Path) -> None:
    cfg = _rich_config(tmp_path)
    d = cfg.to_dict()
    assert list(d) == ["budget", "search", "data", "final", "limits", "cluster", "tracking"]
    assert d["budget"] == {"time_budget": 90.0, "trials": 4, "max_epochs": None}
    text = json.dumps(d)  # JSON as it is: no default= needed
    back = SearchConfig.from_dict(json.loads(text))
    assert back == cfg
    assert isinstance(back.data.split, tuple) and isinstance(back.data.image_size, tuple)
    assert back.data.image_size == (32, 48)
    assert isinstance(back.search.enqueue, tuple) and back.search.enqueue[0] == {
        "n_blocks": 2,
        "lr": 0.01,
        "opt": "adam",
    }
    assert back.search.objectives == ("accuracy", "params") and back.search.warm_start == cfg.search.warm_start
    assert isinstance(back.tracking.out, Path) and isinstance(back.data.data_root, Path)
    assert SearchConfig.from_dict(SearchConfig().to_dict()) == SearchConfig()


def test_an_old_run_json_config_loads() -> None:
    # what run.json held before to_dict: dataclasses.asdict(cfg) minus progress, via json
    old = {
        **{"trials": 5, "time_budget": None, "max_epochs": 2, "workers": 1, "cpus_per_trial": 1.0},
        **{"gpus_per_trial": None, "sampler": "tpe", "pruner": "asha", "seed": 3, "split": [0.7, 0.15, 0.15]},
        **{"test_data": None, "image_size": [28, 28], "strict": False, "data_root": "~/.cache/tv"},
        **{"download": False, "memory_budget": 2147483648, "stream": None, "class_weights": True},
        **{"tracking_uri": "sqlite:///m.db", "experiment": "automl-cnn", "model_name": None, "out": "/tmp/run"},
        **{"ray_address": None, "storage": None, "device": None, "enqueue": [{"n_blocks": 2}]},
        **{"warm_start": ["classics"], "objectives": ["accuracy"], "pick": None, "max_params": None},
        **{"max_flops": None, "max_latency_ms": None, "final_repeats": 1, "final_top_k": 1},
        "a_setting_since_removed": 1,
    }
    cfg = SearchConfig.from_dict(old)
    assert cfg == SearchConfig.from_settings(
        trials=5,
        max_epochs=2,
        workers=1,
        seed=3,
        image_size=(28, 28),
        data_root=Path("~/.cache/tv"),
        class_weights=True,
        tracking_uri="sqlite:///m.db",
        out=Path("/tmp/run"),
        enqueue=({"n_blocks": 2},),
    )
    assert cfg.tracking.progress is None and cfg.cluster.executor == "ray"
    assert SearchConfig.from_dict(cfg.to_dict()) == cfg  # and its new form reads back the same


def test_a_run_json_by_group_or_flat_gives_the_same_settings(tmp_path: Path) -> None:
    record = _rich_config(tmp_path).to_record()  # what run.json keeps: by group, passwords masked
    flat = flat_settings(record)
    assert flat["storage"] == "postgresql://user:***@db/optuna" and flat["trials"] == 4  # what resume reads
    assert flat_settings(flat) == flat  # an older, flat run.json reads as it is
    assert SearchConfig.from_dict(flat) == SearchConfig.from_dict(record)
    assert set(flat) == set(GROUP_OF)


def test_to_params_is_flat_text_with_the_password_masked(tmp_path: Path) -> None:
    cfg = _rich_config(tmp_path)
    params = cfg.to_params()
    assert set(params) == set(GROUP_OF) - {"progress", "enqueue"}  # the settings' own names, as before groups
    assert all(v is None or isinstance(v, str | int | float | bool) for v in params.values())
    assert params["storage"] == "postgresql://user:***@db/optuna"
    assert params["split"] == "0.6/0.25/0.15" and params["image_size"] == "32x48"
    assert params["objectives"] == "accuracy,params"
    assert params["warm_start"] == f"lenet5,{tmp_path / 'earlier-search'}"
    assert params["out"] == str(tmp_path / "out") and params["trials"] == 4 and params["time_budget"] == 90.0
    plain = SearchConfig.from_settings(warm_start="none").to_params()
    assert plain["warm_start"] == "none" and plain["image_size"] is None and plain["storage"] is None


def test_the_data_settings_are_declared_once_on_data_options() -> None:
    data_fields = [f.name for f in dataclasses.fields(DataOptions)]
    assert data_fields == ["image_size", "strict", "data_root", "download", "memory_budget", "stream"]
    own = inspect.get_annotations(DataSettings)
    assert not set(data_fields) & set(own)  # inherited, not re-declared
    assert set(own) == {"test_data", "split", "class_weights"}
    cfg = SearchConfig.from_settings(image_size=(12, 10), strict=True, data_root="~/tv", memory_budget=100, stream=True)
    assert isinstance(cfg.data, DataOptions)
    assert cfg.data_options() == DataOptions(
        image_size=(12, 10), strict=True, data_root=Path("~/tv"), memory_budget=100, stream=True
    )
    assert type(cfg.data_options()) is DataOptions
    assert SearchConfig().data_options() == DataOptions()


def test_the_default_tracking_store_is_mlflow_db_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert default_tracking_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert SearchConfig().resolved_tracking_uri() == default_tracking_uri()
    assert SearchConfig.from_settings(tracking_uri="http://h:5000").resolved_tracking_uri() == "http://h:5000"


def test_settings_given_as_text_or_lists_are_normalised() -> None:
    cfg = SearchConfig.from_settings(out="o", split=[0.5, 0.25, 0.25], image_size=[8, 8], warm_start="lenet5, classics")
    assert cfg.tracking.out == Path("o") and cfg.data.split == (0.5, 0.25, 0.25) and cfg.data.image_size == (8, 8)
    assert cfg.search.warm_start == ("lenet5", "classics")
    with pytest.raises(UserInputError, match="unknown executor 'dask'; use one of: ray, inprocess"):
        SearchConfig.from_settings(executor="dask")


@pytest.mark.parametrize("value", ["0", "two", "-1", "1.5"])
def test_a_bad_ensemble_policy_is_one_line(value: str) -> None:
    with pytest.raises(UserInputError, match=rf"^--ensemble '{re.escape(value)}': use off, auto, or a number"):
        SearchConfig.from_settings(ensemble=value)


def test_epochs_from_python_is_parsed_as_on_the_command_line() -> None:
    assert SearchConfig.from_settings().search.epochs == "auto"
    assert (
        SearchConfig.from_settings(epochs="fixed").search.epochs == "fixed" == _cli("--epochs", "fixed").search.epochs
    )
    with pytest.raises(UserInputError, match=r"^--epochs 'long': use auto or fixed$"):
        SearchConfig.from_settings(epochs="long")


def test_a_bad_data_fidelity_from_python_is_one_line() -> None:
    with pytest.raises(UserInputError, match=r"^--data-fidelity 'bogus': use auto or off$"):
        SearchConfig.from_settings(data_fidelity="bogus")
    assert SearchConfig.from_settings(data_fidelity="off").search.data_fidelity == "off"


def test_the_ensemble_policy_sets_the_most_members() -> None:
    assert [SearchConfig.from_settings(ensemble=v).ensemble_size() for v in ("off", "auto", "1", "3")] == [1, 5, 1, 3]
    two = SearchConfig.from_settings(ensemble="3", objectives=("accuracy", "params"))
    assert two.ensemble_size() == 1  # the pick rule decides


# -- groups ----------------------------------------------------------------------------------------
def test_every_setting_belongs_to_one_group_under_a_unique_name() -> None:
    names = [f.name for f in _setting_fields()]
    assert len(names) == len(set(names)) == len(GROUP_OF)
    assert [f.name for f in dataclasses.fields(SearchConfig)] == list(SearchConfig.groups())
    assert GROUP_OF["time_budget"] == "budget" and GROUP_OF["wait_for_resources"] == "cluster"
    assert GROUP_OF["memory_budget"] == "data" and GROUP_OF["storage"] == "tracking"
    cfg = SearchConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.budget.trials = 3  # type: ignore[misc]


def test_a_group_may_be_given_whole_or_as_a_dict_and_flat_settings_refine_it() -> None:
    whole = SearchConfig.from_settings(budget=BudgetSettings(trials=3), time_budget="1m")
    assert whole.budget == BudgetSettings(time_budget=60.0, trials=3)
    assert SearchConfig(budget={"trials": 3}) == SearchConfig(budget=BudgetSettings(trials=3))  # type: ignore[arg-type]
    assert SearchConfig.from_settings(cluster={"workers": 2}).cluster == ClusterSettings(workers=2)


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ({"time_budgett": "10m"}, "unknown setting 'time_budgett'; the settings are: time_budget, trials"),
        ({"budget": {"workers": 2}}, "unknown budget setting 'workers'; the budget settings are:"),
        ({"budget": 5}, "settings group 'budget' must be a dict of settings or its settings class"),
    ],
)
def test_an_unknown_setting_from_python_is_one_line(given: dict[str, Any], words: str) -> None:
    with pytest.raises(UserInputError, match=re.escape(words)):
        SearchConfig.from_settings(**given)


# -- text parsed in one place ----------------------------------------------------------------------
# every setting whose flag parses text, with a text for it
TEXTS = {
    "--time-budget": "1.5h",
    "--wait-for-resources": "15m",
    "--memory-budget": "512MB",
    "--trials": "5",
    "--max-epochs": "3",
    "--workers": "2",
    "--cpus-per-trial": "2",
    "--gpus-per-trial": "0.5",
    "--seed": "7",
    "--split": "0.6/0.2/0.2",
    "--image-size": "32x48",
    "--data-root": "~/tv",
    "--final-repeats": "3",
    "--final-top-k": "2",
    "--max-params": "100000",
    "--max-flops": "5000000",
    "--max-latency-ms": "2.5",
    "--out": "o",
    "--metric": "balanced_accuracy",  # a name checked by its parser (macro_f1 is refused there)
}
NAMES = {"--metric"}  # parsed text that stays text


def test_every_text_setting_from_python_is_parsed_as_on_the_command_line() -> None:
    parsed = {f.name: cli_option(f) for f in _setting_fields() if (opt := cli_option(f)) and opt.parse}
    flags = {opt.flag: name for name, opt in parsed.items() if opt is not None}
    assert set(flags) == set(TEXTS)  # a new parsed setting needs a sample text here
    for flag, text in TEXTS.items():
        from_python = SearchConfig.from_settings(**{flags[flag]: text})
        assert from_python == _cli(flag, text), flag
        assert isinstance(from_python.settings()[flags[flag]], str) == (flag in NAMES), flag


def test_durations_and_sizes_from_python_are_numbers() -> None:
    cfg = SearchConfig.from_settings(time_budget="10m", wait_for_resources="15m", memory_budget="4GB")
    assert cfg.budget.time_budget == 600.0 and cfg.cluster.wait_for_resources == 900.0
    assert cfg.data.memory_budget == 4 * 1024**3
    assert SearchConfig.from_settings(time_budget=90).budget.time_budget == 90.0
    assert ClusterSettings(wait_for_resources="90s").wait_for_resources == 90.0  # type: ignore[arg-type]
    assert DataOptions(memory_budget="1KB").memory_budget == 1024  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ({"time_budget": "ten minutes"}, "--time-budget 'ten minutes': expected a duration like 90s, 10m or 1h"),
        ({"wait_for_resources": "soon"}, "--wait-for-resources 'soon': expected a duration like 90s, 10m or 1h"),
        ({"time_budget": -5}, "--time-budget -5 must be a positive duration"),
        ({"memory_budget": "lots"}, "--memory-budget 'lots': expected a size like 512MB or 4GB"),
        ({"trials": "0"}, "--trials '0': expected a positive integer, got '0'"),
        ({"split": "1,2"}, "--split '1,2': expected three fractions like 0.7,0.15,0.15"),
        ({"final_start": "resume"}, "--final-start 'resume': use restart or continue"),
    ],
)
def test_bad_text_from_python_is_one_line_naming_the_flag(given: dict[str, Any], words: str) -> None:
    with pytest.raises(UserInputError, match=re.escape(words)):
        SearchConfig.from_settings(**given)


def test_the_python_api_parses_text_settings_before_anything_runs(tmp_path: Path) -> None:
    from automl_cnn.app import search

    with pytest.raises(UserInputError, match=r"^--wait-for-resources 'soon': expected a duration"):
        search("digits", "tiny", wait_for_resources="soon", out=tmp_path / "run")
    with pytest.raises(UserInputError, match=r"^unknown setting 'time_limit'"):
        search("digits", "tiny", time_limit="10m", out=tmp_path / "run")
    assert list(tmp_path.iterdir()) == []


# -- registries ------------------------------------------------------------------------------------
def test_choices_and_help_come_from_the_registries() -> None:
    actions = {a.option_strings[0]: a for a in _search_parser()._actions if a.option_strings}
    for flag, registry in (("--sampler", SAMPLERS), ("--pruner", PRUNERS)):
        assert actions[flag].choices == tuple(registry)
        assert all(f"{name}: {entry.about}" in actions[flag].help for name, entry in registry.items())
    assert all(
        f"{name}: {entry.about}" in actions["--warm-start"].help for name, entry in {**GROUPS, **PRESETS}.items()
    )
    assert type(make_sampler("qmc", 0)).__name__ == "QMCSampler"
    assert type(make_pruner("hyperband", 9)).__name__ == "HyperbandPruner"
    with pytest.raises(UserInputError, match="unknown sampler 'bayes'; use one of: tpe, random, cmaes, gp, qmc"):
        SearchConfig.from_settings(sampler="bayes")
