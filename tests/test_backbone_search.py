"""A real search of backbone candidates (in-process, digits upsampled to 32x32, a ResNet-18 whose
weights file the test writes), and the one-line refusals of the command line before anything runs."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from servers import served_predictions
from stores import mlflow_store

from automl_cnn import SearchResult, load_model, search
from automl_cnn.cli import main
from automl_cnn.model.export import export_onnx


def resnet18_file(path: Path) -> Path:
    import torchvision

    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


def space_file(folder: Path, weights: str, family: str = "resnet18", resize: int = 32) -> Path:
    path = folder / "backbone.yaml"
    path.write_text(
        f"name: backbone\nbackbone:\n  family: {family}\n  weights: {weights}\n  resize: {resize}\n"
        "  trainable: [all, last_k]\n  last_k: 2\n  warmup_epochs: 1\n  head_dropout: 0.1\n"
        "training:\n  optimizer: adam\n  learning_rate: 1.0e-3\n  batch_size: 64\n  epochs: 2\n",
        encoding="utf-8",
    )
    return path


def cli_refusal(tmp_path: Path, capsys: pytest.CaptureFixture[str], space: Path) -> str:
    """``automl-cnn search`` on digits with ``space``: exit 2, one error line, nothing written."""
    work = tmp_path / "work"
    work.mkdir()
    old = Path.cwd()
    os.chdir(work)
    try:
        code = main(["search", "--data", "digits", "--space", str(space), "--trials", "1", "--no-progress"])
    finally:
        os.chdir(old)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert list(work.iterdir()) == []
    return lines[0]


def test_cli_refuses_an_image_too_small_and_weights_that_do_not_fit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = resnet18_file(tmp_path / "r18.pth")
    line = cli_refusal(tmp_path, capsys, space_file(tmp_path, str(weights), resize=0))
    assert "digits: images are 8x8, too small for backbone resnet18 (at least 32x32)" in line
    (tmp_path / "work").rmdir()
    line = cli_refusal(tmp_path, capsys, space_file(tmp_path, "r18.pth", family="resnet34"))
    assert f"{weights}: weights do not fit resnet34: " in line and "missing keys (layer1.2.conv1.weight" in line


@pytest.fixture(scope="module")
def backbone_search(tmp_path_factory: pytest.TempPathFactory) -> tuple[SearchResult, Path]:
    """One real search of a ResNet-18 from a weights file the test writes; its result and the file."""
    folder = tmp_path_factory.mktemp("backbone_search")
    weights = resnet18_file(folder / "r18.pth")
    result = search(
        "digits",
        space_file(folder, "r18.pth"),  # a path relative to the space file
        trials=1,
        executor="inprocess",
        warm_start="none",
        time_budget="3m",
        seed=0,
        out=folder / "out",
        tracking_uri=mlflow_store(folder / "mlflow.db"),
        experiment="tests",
        progress=False,
    )
    return result, weights


@pytest.mark.slow
def test_a_backbone_search_delivers_a_model_that_loads_predicts_and_exports(
    backbone_search: tuple[SearchResult, Path], tmp_path: Path
) -> None:
    result, weights = backbone_search
    spec = result.model.candidate.architecture.backbone
    assert spec is not None and spec.family == "resnet18" and spec.weights == str(weights)
    assert result.model.candidate.architecture.describe().startswith("resnet18(pretrained, ")
    x_test, y_test = result.data.test_split()
    assert result.model.accuracy(x_test, y_test) > 0.5  # ten classes: chance is 0.1

    loaded = load_model(result.out_dir)
    expected = result.model.predict_proba(x_test)
    np.testing.assert_allclose(loaded.predict_proba(x_test), expected, atol=1e-5)
    mlflow.set_tracking_uri(result.tracking_uri)
    served = mlflow.pytorch.load_model(result.model_uri)  # the pt2 program `mlflow models serve` runs
    x = x_test[:16].astype(np.float32) / 255.0
    with torch.no_grad():
        np.testing.assert_allclose(served(torch.from_numpy(x)).numpy(), expected[:16], atol=1e-5)

    import onnxruntime as ort

    target = tmp_path / "m.onnx"
    assert export_onnx(loaded, target) <= 1e-4
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": x})[0]
    np.testing.assert_allclose(got, expected[:16], atol=1e-4)
    scripted = torch.jit.load(str(result.out_dir / "model.torchscript.pt"))
    with torch.no_grad():
        np.testing.assert_allclose(scripted(torch.from_numpy(x)).numpy(), expected[:16], atol=1e-5)


@pytest.mark.slow
def test_a_served_backbone_model_answers_as_the_delivered_one(
    backbone_search: tuple[SearchResult, Path], tmp_path: Path
) -> None:
    result, _weights = backbone_search
    x_test, _ = result.data.test_split()
    served = served_predictions(result.model_uri, result.tracking_uri, x_test[:16], tmp_path / "serve.log")
    np.testing.assert_allclose(served, result.model.predict_proba(x_test[:16]), atol=1e-5)
