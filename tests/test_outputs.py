"""What the user takes home: pictures, reports, predict, export, load_model, no pickles."""

from __future__ import annotations

import html.parser
import json
import pickle
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from PIL import Image

from automl_cnn import load_model
from automl_cnn.cli import main
from automl_cnn.services.tracking import using_tracking_uri

pytestmark = pytest.mark.slow

PLOTS = {
    "optimization_history",
    "param_importances",
    "parallel_coordinate",
    "learning_curves",
    "confusion_matrix",
    "first_layer_filters",
    "architecture",
}


def test_pictures_are_valid_pngs_in_the_folder_and_in_mlflow(digits_search) -> None:  # type: ignore[no-untyped-def]
    folder = digits_search.out_dir / "plots"
    found = {p.stem for p in folder.glob("*.png")}
    assert found >= PLOTS
    for name in PLOTS:
        with Image.open(folder / f"{name}.png") as img:
            assert img.format == "PNG"
            assert img.width >= 300 and img.height >= 150, (name, img.size)
            assert np.asarray(img.convert("L")).std() > 5  # something is drawn
    client = MlflowClient(digits_search.tracking_uri)
    logged = {a.path for a in client.list_artifacts(digits_search.parent_run_id, "plots")}
    assert {f"plots/{n}.png" for n in PLOTS} <= logged


class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.tables = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(dict(attrs)["src"] or "")
        if tag == "table":
            self.tables += 1


def test_html_report_links_every_picture_and_has_the_tables(digits_search) -> None:  # type: ignore[no-untyped-def]
    out = digits_search.out_dir
    parser = _Links()
    parser.feed((out / "report.html").read_text())
    assert {Path(src).stem for src in parser.images} >= PLOTS
    assert all((out / src).is_file() for src in parser.images)
    assert parser.tables >= 4  # metrics, settings, layers, trials
    assert digits_search.candidate.architecture.describe() in (out / "report.html").read_text()


def test_every_completed_trial_records_latency(digits_search) -> None:  # type: ignore[no-untyped-def]
    """Without a latency limit or objective a trial is timed when it completes, not at launch
    (the driver's cost at scale); a pruned one is not timed at all."""
    client = MlflowClient(digits_search.tracking_uri)
    completed = [r for r in digits_search.trials if r.outcome == "completed" and r.duplicate_of is None]
    assert completed
    for rec in completed:
        assert rec.latency_ms is not None and client.get_run(rec.run_id).data.metrics["latency_ms"] > 0
    for rec in digits_search.trials:
        if rec.outcome == "pruned" and rec.duplicate_of is None:
            assert rec.latency_ms is None and "latency_ms" not in client.get_run(rec.run_id).data.metrics


def _write_pngs(folder: Path, x: np.ndarray) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(x):
        path = folder / f"{i:03d}.png"
        Image.fromarray(img[0]).save(path)
        paths.append(path)
    return paths


@pytest.mark.parametrize("source", ["folder", "registry"])
def test_predict_cli_agrees_with_the_in_memory_model(
    digits_search,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    source: str,  # type: ignore[no-untyped-def]
) -> None:
    x_test, _ = digits_search.data.test_split()
    paths = _write_pngs(tmp_path / "imgs", x_test[:25])
    model_ref = str(digits_search.out_dir) if source == "folder" else digits_search.model_uri
    code = main(["predict", model_ref, *map(str, paths), "--json", "--tracking-uri", digits_search.tracking_uri])
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    expected = digits_search.model.predict_proba(x_test[:25])
    names = digits_search.model.class_names
    assert [line["image"] for line in lines] == [str(p) for p in paths]
    assert [line["label"] for line in lines] == [names[i] for i in expected.argmax(1)]
    np.testing.assert_allclose([line["probability"] for line in lines], expected.max(1), atol=1e-6)


def test_export_onnx_agrees_with_pytorch(digits_search, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    target = tmp_path / "m.onnx"
    assert main(["export", str(digits_search.out_dir), "--format", "onnx", "--out", str(target)]) == 0
    assert "outputs match PyTorch" in capsys.readouterr().out
    x = np.random.default_rng(1).random((9, *digits_search.model.input_shape), dtype=np.float32)
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": x})[0]
    with torch.no_grad():
        want = digits_search.model.inference_module()(torch.from_numpy(x)).numpy()
    assert np.abs(got - want).max() <= 1e-4

    ts = tmp_path / "m.pt"
    assert main(["export", str(digits_search.out_dir), "--format", "torchscript", "--out", str(ts)]) == 0
    with torch.no_grad():
        np.testing.assert_allclose(torch.jit.load(str(ts))(torch.from_numpy(x)).numpy(), want, atol=1e-5)


def test_loading_never_unpickles(digits_search, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model load tried to unpickle")

    class RefusingUnpickler(pickle.Unpickler):
        def load(self) -> None:  # type: ignore[override]
            refuse()

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", RefusingUnpickler)
    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(torch.serialization, "load", refuse)
    x_test, _ = digits_search.data.test_split()
    expected = digits_search.model.predict_proba(x_test)
    for source in (digits_search.out_dir, digits_search.model_uri):
        model = load_model(source, tracking_uri=digits_search.tracking_uri)
        np.testing.assert_allclose(model.predict_proba(x_test), expected, atol=1e-6)
    # what `mlflow models serve` loads: an exported pt2 program, plus safetensors and JSON
    client = MlflowClient(digits_search.tracking_uri)
    version = client.get_model_version_by_alias(digits_search.model_uri.split("/")[1].split("@")[0], "champion")
    with using_tracking_uri(digits_search.tracking_uri):
        local = Path(mlflow.artifacts.download_artifacts(version.source))
    files = sorted(str(p.relative_to(local)) for p in local.rglob("*") if p.is_file())
    assert "data/model.pt2" in files and "extra_files/model.safetensors" in files, files
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".pth", ".bin"))], files


def test_wilson_intervals_match_the_textbook_and_shrink_with_more_images() -> None:
    from automl_cnn.deliver.result import wilson, with_interval

    lo, hi = wilson(0.9, 100)  # Wilson 1927 / Agresti & Coull 1998: 0.8256-0.9448 for 90/100
    assert abs(lo - 0.8256) < 1e-3 and abs(hi - 0.9448) < 1e-3
    assert wilson(1.0, 50)[1] == 1.0 and wilson(1.0, 50)[0] < 0.95  # a perfect score is not certain
    assert wilson(0.993, 6000)[1] - wilson(0.993, 6000)[0] < wilson(0.993, 600)[1] - wilson(0.993, 600)[0]
    assert with_interval(0.9933, 600) == "99.3% (98.3–99.7)"
    assert with_interval(0.9933, 0) == "0.9933"  # size unknown: the bare score
