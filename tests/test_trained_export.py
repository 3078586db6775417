"""Unit tests of a trained model (automl_cnn.model.trained) and its exports
(automl_cnn.model.export): a small CNN trained here for a second on scikit-learn's digits."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from automl_cnn.data.builtin import load_digits
from automl_cnn.data.bundle import split_data
from automl_cnn.data.pixels import resize_images
from automl_cnn.deliver.loading import load_model
from automl_cnn.errors import UserInputError
from automl_cnn.model.architecture import Architecture, Candidate, ConvBlock, Dense, Head, TrainConfig
from automl_cnn.model.builder import build_model
from automl_cnn.model.export import FORMATS, export_model, export_onnx
from automl_cnn.model.trained import ENSEMBLE_FORMAT, FORMAT, META, WEIGHTS, TrainedModel

ARCH = Architecture(
    (ConvBlock(filters=8, batch_norm=True, pooling="max", dropout=0.1),),
    Head(type="flatten", dense=(Dense(units=32, dropout=0.2),)),
)
CANDIDATE = Candidate(ARCH, TrainConfig(epochs=6, learning_rate=3e-3, batch_size=64))
CLASSES = tuple(f"digit {i}" for i in range(10))


@dataclass
class Fitted:
    model: TrainedModel
    x_test: np.ndarray  # uint8 NCHW
    y_test: np.ndarray


def train_weights(x: np.ndarray, y: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> dict:  # type: ignore[type-arg]
    """A few epochs of plain Adam: enough for a model that clearly beats chance."""
    torch.manual_seed(0)
    net = build_model(ARCH, (1, 8, 8), len(CLASSES), mean, std)
    opt = torch.optim.Adam(net.parameters(), lr=CANDIDATE.training.learning_rate)
    xt = torch.from_numpy(x).float() / 255.0
    yt = torch.from_numpy(y)
    net.train()
    for _ in range(CANDIDATE.training.epochs):
        perm = torch.randperm(len(yt))
        for s in range(0, len(yt), CANDIDATE.training.batch_size):
            idx = perm[s : s + CANDIDATE.training.batch_size]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx]).backward()
            opt.step()
    return net.state_dict()


@pytest.fixture(scope="module")
def fitted() -> Fitted:
    bundle = split_data(load_digits(), seed=0)
    data = bundle.final_data()
    assert isinstance(data.x_train, np.ndarray)
    weights = train_weights(data.x_train, data.y_train, bundle.mean, bundle.std)
    model = TrainedModel.from_weights(
        CANDIDATE,
        weights,
        (1, 8, 8),
        CLASSES,
        bundle.mean,
        bundle.std,
        metrics={"val_accuracy": 0.9},
        info={"data": "digits", "params": 1234},
    )
    x_test, y_test = bundle.test_split()
    return Fitted(model, x_test, y_test)


# -- inference -------------------------------------------------------------------------------------


def test_from_weights_gives_an_eval_model_with_those_weights(fitted: Fitted) -> None:
    model = fitted.model
    assert not model.network.training
    assert model.input_shape == (1, 8, 8) and model.class_names == CLASSES
    state = model.network.state_dict()  # the training split's statistics travel as buffers
    assert torch.allclose(state["normalize.mean"].flatten(), torch.tensor(model.mean, dtype=torch.float32))
    assert torch.allclose(state["normalize.std"].flatten(), torch.tensor(model.std, dtype=torch.float32))
    # the same weights in a fresh TrainedModel predict the same
    copy = TrainedModel.from_weights(CANDIDATE, model.network.state_dict(), (1, 8, 8), CLASSES, model.mean, model.std)
    np.testing.assert_array_equal(copy.predict_proba(fitted.x_test), model.predict_proba(fitted.x_test))


def test_weights_of_another_architecture_are_refused(fitted: Fitted) -> None:
    wider = build_model(Architecture((ConvBlock(filters=16),), ARCH.head), (1, 8, 8), 10)
    with pytest.raises(RuntimeError, match="size mismatch"):
        TrainedModel.from_weights(CANDIDATE, wider.state_dict(), (1, 8, 8), CLASSES, (0.5,), (0.2,))


def test_predictions_on_uint8_and_float_input_agree_and_are_accurate(fitted: Fitted) -> None:
    model, x, y = fitted.model, fitted.x_test, fitted.y_test
    proba = model.predict_proba(x)
    assert proba.shape == (len(x), 10) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert (proba >= 0).all()
    as_float = model.predict_proba(x.astype(np.float32) / 255.0)
    np.testing.assert_allclose(as_float, proba, atol=1e-6)
    np.testing.assert_allclose(model.predict_proba(torch.from_numpy(x)), proba, atol=1e-6)
    np.testing.assert_array_equal(model.predict(x), proba.argmax(axis=1))
    # trained for a second on 8x8 digits: far above chance (0.1) on the unseen test split
    assert model.accuracy(x, y) > 0.8
    # uint8 pixels read as if they were 0-1 floats would be a different (saturated) input
    assert model.accuracy(x.astype(np.float32), y) < model.accuracy(x, y)


def test_batching_does_not_change_predictions(fitted: Fitted) -> None:
    whole = fitted.model.predict_proba(fitted.x_test)
    np.testing.assert_allclose(fitted.model.predict_proba(fitted.x_test, batch_size=7), whole, atol=1e-6)
    single = fitted.model.predict_proba(fitted.x_test[5:6])
    np.testing.assert_allclose(single[0], whole[5], atol=1e-6)


def test_empty_input_gives_an_empty_answer(fitted: Fitted) -> None:
    empty = np.zeros((0, 1, 8, 8), np.uint8)
    assert fitted.model.predict_proba(empty).shape == (0, 10)
    assert fitted.model.predict(empty).shape == (0,)
    assert fitted.model.read_images([]).shape == (0, 1, 8, 8)


def test_inference_module_returns_probabilities(fitted: Fitted) -> None:
    module = fitted.model.inference_module()
    assert not module.training
    x = torch.from_numpy(fitted.x_test[:20]).float() / 255.0
    with torch.no_grad():
        out = module(x)
        logits = fitted.model.network(x)
    assert out.shape == (20, 10)
    torch.testing.assert_close(out.sum(dim=1), torch.ones(20))
    torch.testing.assert_close(out, torch.softmax(logits, dim=1))
    assert not torch.allclose(out, logits)  # not the raw logits
    np.testing.assert_allclose(out.numpy(), fitted.model.predict_proba(fitted.x_test[:20]), atol=1e-6)


def test_image_files_are_read_like_the_training_images(fitted: Fitted, tmp_path: Path) -> None:
    """RGB files twice the size become 1x8x8, as the model was trained on, with the resize that
    arrays get."""
    paths, big = [], []
    for i, img in enumerate(fitted.x_test[:6, 0]):
        p = tmp_path / f"{i}.png"
        pil = Image.fromarray(img).resize((16, 16), Image.Resampling.NEAREST)
        pil.convert("RGB").save(p)
        paths.append(p)
        big.append(np.asarray(pil)[None])
    read = fitted.model.read_images(paths)
    assert read.shape == (6, 1, 8, 8) and read.dtype == np.uint8
    np.testing.assert_array_equal(read, resize_images(np.stack(big), (8, 8)))
    assert np.corrcoef(read.ravel(), fitted.x_test[:6].ravel())[0, 1] > 0.9  # still the same digits
    proba = fitted.model.predict_files([str(p) for p in paths])
    np.testing.assert_allclose(proba, fitted.model.predict_proba(read), atol=1e-6)


# -- the folder format -----------------------------------------------------------------------------


def test_save_and_load_round_trip(fitted: Fitted, tmp_path: Path) -> None:
    folder = tmp_path / "nested" / "model"
    fitted.model.save(folder)
    assert sorted(p.name for p in folder.iterdir()) == sorted([META, WEIGHTS])
    meta = json.loads((folder / META).read_text())
    assert meta["format"] == FORMAT
    assert meta["class_names"] == list(CLASSES) and meta["input_shape"] == [1, 8, 8]
    assert meta["architecture_summary"] == ARCH.describe()
    assert meta["preprocessing"]["mode"] == "L" and meta["preprocessing"]["height"] == 8
    loaded = TrainedModel.load(folder)
    assert loaded.candidate == CANDIDATE
    assert loaded.class_names == CLASSES and loaded.input_shape == (1, 8, 8)
    assert loaded.mean == pytest.approx(fitted.model.mean) and loaded.std == pytest.approx(fitted.model.std)
    assert loaded.metrics == {"val_accuracy": 0.9} and loaded.info == {"data": "digits", "params": 1234}
    np.testing.assert_allclose(loaded.predict_proba(fitted.x_test), fitted.model.predict_proba(fitted.x_test))
    via_load_model = load_model(str(folder))
    np.testing.assert_array_equal(via_load_model.predict(fitted.x_test), fitted.model.predict(fitted.x_test))


def test_the_weights_file_holds_tensors_only(fitted: Fitted, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    fitted.model.save(tmp_path)
    tensors = load_file(str(tmp_path / WEIGHTS))
    state = fitted.model.network.state_dict()
    assert set(tensors) == set(state)
    assert all(torch.equal(tensors[k], state[k]) for k in state)


def test_loading_a_folder_that_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(UserInputError) as exc:
        TrainedModel.load(tmp_path)
    line = str(exc.value)
    assert "\n" not in line
    assert f"{tmp_path}: not a model folder (needs {META} and {WEIGHTS}); give a search's output folder" == line
    with pytest.raises(UserInputError, match="not a model folder"):
        load_model(tmp_path / "nowhere")


def test_loading_an_unknown_format(fitted: Fitted, tmp_path: Path) -> None:
    fitted.model.save(tmp_path)
    meta = json.loads((tmp_path / META).read_text())
    meta["format"] = "automl-cnn/99"
    (tmp_path / META).write_text(json.dumps(meta))
    with pytest.raises(UserInputError) as exc:
        TrainedModel.load(tmp_path)
    expected = f"unknown model format 'automl-cnn/99'; expected {FORMAT} or {ENSEMBLE_FORMAT}"
    assert str(exc.value) == f"{tmp_path / META}: {expected}"


# -- exports ---------------------------------------------------------------------------------------


def test_onnx_export_agrees_with_pytorch_on_onnxruntime(fitted: Fitted, tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    path = tmp_path / "out" / "model.onnx"
    message = export_model(fitted.model, "onnx", path)
    assert message.startswith(f"wrote {path} (ONNX; outputs match PyTorch within ")
    onnx.checker.check_model(onnx.load(str(path)))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    assert [o.name for o in session.get_outputs()] == ["probabilities"]
    for n in (1, 7, 40):  # a dynamic batch size
        x = fitted.x_test[:n].astype(np.float32) / 255.0
        (got,) = session.run(None, {"images": x})
        assert got.shape == (n, 10)
        np.testing.assert_allclose(got, fitted.model.predict_proba(x), atol=1e-4)
    assert export_onnx(fitted.model, tmp_path / "again.onnx", check=False) == 0.0
    assert (tmp_path / "again.onnx").stat().st_size > 1000


def test_torchscript_export_loads_and_agrees(fitted: Fitted, tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    assert export_model(fitted.model, "torchscript", path) == f"wrote {path} (TorchScript)"
    scripted = torch.jit.load(str(path))
    x = fitted.x_test[:13].astype(np.float32) / 255.0  # not the batch size it was traced with
    with torch.no_grad():
        got = scripted(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, fitted.model.predict_proba(x), atol=1e-5)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)


def test_unknown_export_format(fitted: Fitted, tmp_path: Path) -> None:
    with pytest.raises(UserInputError) as exc:
        export_model(fitted.model, "tflite", tmp_path / "m.tflite")
    assert str(exc.value) == f"unknown export format 'tflite'; use one of: {', '.join(FORMATS)}"
    assert not (tmp_path / "m.tflite").exists()
