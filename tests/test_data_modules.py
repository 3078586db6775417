"""Unit tests of the data sub-modules, each imported directly: arrays (.npz), bundle (splits and
statistics), folder and manifest (file sources), images (ImageSet / ImageFiles / resizing) and
tv (torchvision by name, offline paths only: nothing is ever downloaded)."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from datafiles import digits_subset, write_folder, write_manifest
from PIL import Image

from automl_cnn.data.arrays import load_npz
from automl_cnn.data.bundle import DataBundle, channel_stats, class_weights_for, split_data
from automl_cnn.data.folder import folder_entries
from automl_cnn.data.images import ImageFiles, ImageSet, to_float
from automl_cnn.data.manifest import manifest_entries
from automl_cnn.data.pixels import resize_images
from automl_cnn.data.tv import TORCHVISION, _arrays, _urls, load_torchvision
from automl_cnn.errors import DataError, UserInputError


def one_line(exc: pytest.ExceptionInfo[DataError]) -> str:
    """The error's message, checked to be one line (the project's rule for bad input)."""
    text = str(exc.value)
    assert "\n" not in text and text.strip() == text and text, repr(text)
    assert isinstance(exc.value, UserInputError)
    return text


def px(images: ImageSet) -> np.ndarray:
    """The pixels of an in-memory ImageSet."""
    assert isinstance(images.x, np.ndarray)
    return images.x


def digits_set(per_class: int = 12, classes: int = 3) -> ImageSet:
    x, y = digits_subset(per_class, classes)
    return ImageSet(x=x[:, None], y=y.astype(np.int64), class_names=tuple(f"c{i}" for i in range(classes)), name="d")


# -- arrays: .npz files -----------------------------------------------------------------------------


def save_npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


@pytest.mark.parametrize("layout", ["nhw", "nhwc", "nchw"])
def test_npz_layouts_become_nchw_with_the_same_pixels(tmp_path: Path, layout: str) -> None:
    rng = np.random.default_rng(0)
    nchw = rng.integers(0, 256, (6, 3, 5, 7), dtype=np.uint8)
    if layout == "nhw":
        nchw = nchw[:, :1]
        x = nchw[:, 0]
    elif layout == "nhwc":
        x = nchw.transpose(0, 2, 3, 1)
    else:
        x = nchw
    images = load_npz(save_npz(tmp_path / "a.npz", x=x, y=np.array([0, 1, 0, 1, 0, 1])))
    assert px(images).dtype == np.uint8 and px(images).flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(px(images), nchw)
    assert images.name == "a" and images.notes == ()


def test_npz_labels_are_remapped_to_indices_and_named(tmp_path: Path) -> None:
    x = np.zeros((4, 1, 4, 4), np.uint8)
    images = load_npz(save_npz(tmp_path / "a.npz", x=x, y=np.array([[7], [3], [7], [3]])))  # a column vector
    np.testing.assert_array_equal(images.y, [1, 0, 1, 0])
    assert images.class_names == ("3", "7")
    named = load_npz(
        save_npz(tmp_path / "b.npz", x=x, y=np.array([2, 0, 2, 0]), class_names=np.array(["cat", "dog", "emu"]))
    )
    assert named.class_names == ("cat", "emu")  # the names of the classes present, in index order
    np.testing.assert_array_equal(named.y, [1, 0, 1, 0])


def test_npz_float_pixels(tmp_path: Path) -> None:
    unit = np.linspace(0, 1, 4 * 16, dtype=np.float64).reshape(4, 1, 4, 4)
    kept = load_npz(save_npz(tmp_path / "unit.npz", x=unit, y=np.array([0, 1, 0, 1])))
    assert px(kept).dtype == np.float32 and kept.notes == ()
    np.testing.assert_allclose(px(kept), unit, atol=1e-7)
    scaled = load_npz(save_npz(tmp_path / "byte.npz", x=unit * 255.0, y=np.array([0, 1, 0, 1])))
    np.testing.assert_allclose(px(scaled), unit, atol=1e-6)
    assert scaled.notes == ("float pixels in 0-255 scaled to 0-1",)


def test_npz_integer_and_bool_pixels_become_uint8(tmp_path: Path) -> None:
    x16 = np.arange(4 * 9, dtype=np.int16).reshape(4, 3, 3)
    images = load_npz(save_npz(tmp_path / "i.npz", x=x16, y=np.array([0, 1, 0, 1])))
    assert px(images).dtype == np.uint8
    np.testing.assert_array_equal(px(images)[:, 0], x16)
    masks = load_npz(save_npz(tmp_path / "b.npz", x=x16 % 2 == 0, y=np.array([0, 1, 0, 1])))
    assert px(masks).dtype == np.uint8 and set(np.unique(px(masks))) == {0, 1}


def test_npz_rgba_is_composited_on_white(tmp_path: Path) -> None:
    x = np.zeros((2, 2, 2, 4), np.uint8)  # NHWC: black pixels
    x[..., 3] = 0  # fully transparent
    x[1, ..., 3] = 255  # the second image opaque
    images = load_npz(save_npz(tmp_path / "rgba.npz", x=x, y=np.array([0, 1])))
    assert images.input_shape == (3, 2, 2)
    assert (px(images)[0] == 255).all()  # transparent black shows the white background
    assert (px(images)[1] == 0).all()


@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "uint16"])
def test_npz_rgba_in_0_255_that_is_not_uint8(tmp_path: Path, dtype: str) -> None:
    """The pixel range is checked and scaled first, then RGBA composited, whatever the dtype."""
    x = np.full((3, 2, 2, 4), 100, dtype=dtype)
    x[0, ..., 3] = 255  # opaque: the colour is kept
    x[1, ..., 3] = 0  # transparent: the white background shows
    x[2, ..., 3] = 51  # a fifth opaque: a fifth of the colour, the rest white
    images = load_npz(save_npz(tmp_path / "rgba.npz", x=x, y=np.array([0, 1, 0])))
    assert images.input_shape == (3, 2, 2)
    pixels = to_float(px(images))
    np.testing.assert_allclose(pixels[0], 100 / 255, atol=1e-6)
    np.testing.assert_allclose(pixels[1], 1.0, atol=1e-6)
    np.testing.assert_allclose(pixels[2], 0.2 * 100 / 255 + 0.8, atol=1e-6)


def test_npz_rgba_floats_in_0_1(tmp_path: Path) -> None:
    x = np.zeros((2, 4, 2, 2), np.float32)  # NCHW: black
    x[0, 3] = 1.0
    x[1, 3] = 0.25
    images = load_npz(save_npz(tmp_path / "rgba.npz", x=x, y=np.array([0, 1])))
    assert px(images).dtype == np.float32 and images.input_shape == (3, 2, 2) and images.notes == ()
    np.testing.assert_allclose(px(images)[0], 0.0)
    np.testing.assert_allclose(px(images)[1], 0.75)


@pytest.mark.parametrize(
    ("arrays", "words"),
    [
        ({"x": np.zeros((4, 4, 4), np.uint8)}, "needs arrays named x and y, found ['x']"),
        ({"x": np.zeros((4, 4, 4), np.uint8), "y": np.array([0, 1, 0])}, "x has 4 images but y has 3 labels"),
        ({"x": np.zeros((4, 2), np.uint8), "y": np.array([0, 1, 0, 1])}, "x has 2 dimension(s)"),
        ({"x": np.zeros((4, 5, 6, 7), np.uint8), "y": np.array([0, 1, 0, 1])}, "cannot tell the channel axis"),
        ({"x": np.full((4, 3, 3), 300, np.int32), "y": np.array([0, 1, 0, 1])}, "integer pixels must lie in 0-255"),
        ({"x": np.full((4, 3, 3), 2.0e3), "y": np.array([0, 1, 0, 1])}, "float values in 2000..2000, not pixels"),
        ({"x": np.full((4, 3, 3), np.nan), "y": np.array([0, 1, 0, 1])}, "NaN or infinite values; clean the array"),
        ({"x": np.zeros((4, 3, 3), np.complex64), "y": np.array([0, 1, 0, 1])}, "give uint8 (0-255) or float pixels"),
        ({"x": np.zeros((4, 3, 3), np.uint8), "y": np.array([0, 1.5, 0, 1])}, "non-integer labels"),
        ({"x": np.zeros((4, 3, 3), np.uint8), "y": np.eye(4)}, "give one integer label per image (not one-hot)"),
        ({"x": np.zeros((4, 3, 3), np.uint8), "y": np.array([0, -1, 0, 1])}, "negative labels (e.g. -1)"),
        ({"x": np.zeros((4, 3, 3), np.uint8), "y": np.array(["a", "b", "a", "b"])}, "y has dtype <U1"),
        ({"x": np.zeros((4, 3, 3), np.uint8), "y": np.array([2, 2, 2, 2])}, "a single class"),
        (
            {"x": np.zeros((4, 3, 3), np.uint8), "y": np.array([0, 1, 2, 1]), "class_names": np.array(["a", "b"])},
            "class_names has 2 names for 3 classes",
        ),
    ],
)
def test_npz_errors_are_one_line_naming_the_file(tmp_path: Path, arrays: dict[str, np.ndarray], words: str) -> None:
    path = save_npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError) as exc:
        load_npz(path)
    line = one_line(exc)
    assert line.startswith(f"{path}: ") and words in line


def test_npz_that_is_not_an_npz(tmp_path: Path) -> None:
    path = tmp_path / "fake.npz"
    path.write_text("not a zip archive")
    with pytest.raises(DataError) as exc:
        load_npz(path)
    assert "not a readable .npz file" in one_line(exc) and "save it with numpy.savez" in str(exc.value)


def test_npz_with_pickled_objects_is_refused(tmp_path: Path) -> None:
    path = save_npz(tmp_path / "obj.npz", x=np.zeros((2, 3, 3), np.uint8), y=np.array([0, 1], dtype=object))
    with pytest.raises(DataError) as exc:
        load_npz(path)  # allow_pickle=False: objects are never unpickled
    assert "not a readable .npz file (ValueError)" in one_line(exc)


# -- images: ImageSet, ImageFiles, resizing ---------------------------------------------------------


def test_resize_keeps_dtype_and_range() -> None:
    rng = np.random.default_rng(1)
    u8 = rng.integers(0, 256, (3, 2, 8, 8), dtype=np.uint8)
    for size in ((4, 4), (3, 5)):
        small = resize_images(u8, size)
        assert small.shape == (3, 2, *size) and small.dtype == np.uint8
        # antialiased bilinear, as Pillow shrinks: the same pixels within rounding
        pil = np.stack(
            [[np.asarray(Image.fromarray(c).resize(size[::-1], Image.Resampling.BILINEAR)) for c in img] for img in u8]
        )
        assert np.abs(small.astype(np.int16) - pil).max() <= 1
    f32 = to_float(u8)
    assert f32.dtype == np.float32 and f32.max() <= 1.0
    big = resize_images(f32, [16, 12])
    assert big.shape == (3, 2, 16, 12) and big.dtype == np.float32
    flat = np.full((1, 1, 5, 5), 77, np.uint8)
    assert (resize_images(flat, (9, 3)) == 77).all()  # a constant image stays constant


def test_imageset_shape_and_fingerprint() -> None:
    a = digits_set()
    assert a.input_shape == (1, 8, 8) and a.num_classes == 3 and not a.streamed
    same = ImageSet(x=px(a).copy(), y=a.y.copy(), class_names=a.class_names, name="other name")
    assert same.fingerprint() == a.fingerprint() and len(a.fingerprint()) == 16
    pixel = px(a).copy()
    pixel[0, 0, 0, 0] ^= 1
    assert ImageSet(x=pixel, y=a.y, class_names=a.class_names, name="d").fingerprint() != a.fingerprint()
    relabel = a.y.copy()
    relabel[[0, -1]] = relabel[[-1, 0]]
    assert ImageSet(x=a.x, y=relabel, class_names=a.class_names, name="d").fingerprint() != a.fingerprint()
    files = ImageSet(x=a.x, y=a.y, class_names=a.class_names, name="d", source_fingerprint="from-files")
    assert files.fingerprint() == "from-files"


def test_imageset_rejects_inconsistent_arrays() -> None:
    with pytest.raises(AssertionError):
        ImageSet(x=np.zeros((2, 8, 8), np.uint8), y=np.zeros(2, np.int64), class_names=("a", "b"), name="x")
    with pytest.raises(AssertionError):
        ImageSet(x=np.zeros((2, 1, 8, 8), np.float64), y=np.zeros(2, np.int64), class_names=("a", "b"), name="x")
    with pytest.raises(AssertionError):
        ImageSet(x=np.zeros((2, 1, 8, 8), np.uint8), y=np.zeros(3, np.int64), class_names=("a", "b"), name="x")


def test_image_files_read_index_and_slice(tmp_path: Path) -> None:
    x, _ = digits_subset(2, 2)
    paths = []
    for i, img in enumerate(x):
        p = tmp_path / f"{i}.png"
        Image.fromarray(img).convert("RGB").save(p)
        paths.append(str(p))
    grey = ImageFiles(tuple(paths), "L", (8, 8))
    assert grey.shape == (4, 1, 8, 8) and len(grey) == 4 and grey.ndim == 4 and grey.dtype == np.uint8
    np.testing.assert_array_equal(grey.read(), x[:, None])  # grey stored as RGB reads back exactly
    picked = grey[np.array([3, 1])]
    assert isinstance(picked, ImageFiles) and picked.paths == (paths[3], paths[1])
    np.testing.assert_array_equal(picked.read(), x[[3, 1], None])
    np.testing.assert_array_equal(grey.read([2]), x[[2], None])
    assert grey[1:3].paths == tuple(paths[1:3])
    rgb = ImageFiles(tuple(paths), "RGB", (4, 6))
    assert rgb.read().shape == (4, 3, 4, 6)
    streamed = ImageSet(x=grey, y=np.array([0, 0, 1, 1]), class_names=("a", "b"), name="f")
    assert streamed.streamed and streamed.input_shape == (1, 8, 8)


# -- bundle: splits and statistics ------------------------------------------------------------------


def test_split_is_stratified_disjoint_and_deterministic() -> None:
    images = digits_set(per_class=20, classes=3)
    a = split_data(images, (0.6, 0.2, 0.2), seed=5)
    b = split_data(images, (0.6, 0.2, 0.2), seed=5)
    other = split_data(images, (0.6, 0.2, 0.2), seed=6)
    assert isinstance(a, DataBundle)
    for part in ("train_idx", "val_idx", "test_idx"):
        np.testing.assert_array_equal(getattr(a, part), getattr(b, part))
    assert not np.array_equal(a.train_idx, other.train_idx)
    everything = np.concatenate([a.train_idx, a.val_idx, a.test_idx])
    assert sorted(everything.tolist()) == list(range(60))
    assert a.counts() == {"train": [12, 12, 12], "val": [4, 4, 4], "test": [4, 4, 4]}
    assert a.name == "d" and a.class_names == ("c0", "c1", "c2") and a.num_classes == 3
    assert a.input_shape == (1, 8, 8) and a.fingerprint() == images.fingerprint()
    assert a.split_seed == 5 and a.fractions == (0.6, 0.2, 0.2) and a.class_weights is None


def test_search_and_final_data_keep_the_test_split_unseen() -> None:
    images = digits_set(per_class=20, classes=3)
    bundle = split_data(images, seed=1)
    search = bundle.search_data()
    assert len(search.y_train) == len(bundle.train_idx) and len(search.y_eval) == len(bundle.val_idx)
    np.testing.assert_array_equal(search.x_eval, images.x[bundle.val_idx])
    final = bundle.final_data()
    assert len(final.y_train) == len(bundle.train_idx) + len(bundle.val_idx) and len(final.y_eval) == 0
    assert final.mean == bundle.mean and final.num_classes == 3 and final.input_shape == (1, 8, 8)
    x_test, y_test = bundle.test_split()
    np.testing.assert_array_equal(x_test, images.x[bundle.test_idx])
    np.testing.assert_array_equal(y_test, images.y[bundle.test_idx])
    fit_idx = np.concatenate([bundle.train_idx, bundle.val_idx])
    np.testing.assert_array_equal(final.x_train, images.x[fit_idx])
    assert np.intersect1d(fit_idx, bundle.test_idx).size == 0


def test_statistics_come_from_the_training_split_only() -> None:
    x = np.zeros((20, 1, 2, 2), np.uint8)
    y = np.repeat([0, 1], 10)
    images = ImageSet(x=x, y=y, class_names=("a", "b"), name="z")
    bundle = split_data(images, (0.5, 0.25, 0.25), seed=0)
    # make every non-training image white: the statistics must not move
    x[np.concatenate([bundle.val_idx, bundle.test_idx])] = 255
    again = split_data(images, (0.5, 0.25, 0.25), seed=0)
    assert bundle.mean == again.mean == (0.0,) and again.std == (1.0,)  # a constant channel is left unscaled
    x[bundle.train_idx[:5]] = 255  # half of the training images white: now the statistics move
    moved = split_data(images, (0.5, 0.25, 0.25), seed=0)
    share = 5 / len(bundle.train_idx)
    assert moved.mean == pytest.approx((share,)) and moved.std == pytest.approx((np.sqrt(share * (1 - share)),))


def test_channel_stats_match_numpy_for_arrays_and_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (9, 3, 4, 5), dtype=np.uint8)
    mean, std = channel_stats(x)
    f = x.astype(np.float64) / 255.0
    np.testing.assert_allclose(mean, f.mean(axis=(0, 2, 3)), atol=1e-9)
    np.testing.assert_allclose(std, f.std(axis=(0, 2, 3)), atol=1e-9)
    paths = []
    for i, img in enumerate(x):
        p = tmp_path / f"{i}.png"
        Image.fromarray(img.transpose(1, 2, 0)).save(p)
        paths.append(str(p))
    files_mean, files_std = channel_stats(ImageFiles(tuple(paths), "RGB", (4, 5)))
    np.testing.assert_allclose(files_mean, mean, atol=1e-9)
    np.testing.assert_allclose(files_std, std, atol=1e-9)


def test_class_weights_are_inverse_frequency() -> None:
    y = np.array([0] * 6 + [1] * 2 + [2] * 4)
    w = class_weights_for(y, 4)
    assert w[0] < w[2] < w[1]
    counts = np.bincount(y, minlength=4)
    # each present class contributes the same total weight: n / k
    np.testing.assert_allclose([w[c] * counts[c] for c in range(3)], [len(y) / 4] * 3)
    assert w[3] == pytest.approx(len(y) / 4)  # an absent class: no division by zero
    labels = np.array([0] * 30 + [1] * 10)
    images = ImageSet(x=np.zeros((40, 1, 2, 2), np.uint8), y=labels, class_names=("a", "b"), name="i")
    bundle = split_data(images, seed=0, class_weights=True)
    assert bundle.class_weights is not None and bundle.search_data().class_weights == bundle.class_weights
    n_a, n_b = bundle.counts()["train"]
    assert bundle.class_weights == pytest.approx(((n_a + n_b) / (2 * n_a), (n_a + n_b) / (2 * n_b)))


def test_a_given_test_set_is_the_test_split() -> None:
    train = digits_set(per_class=10, classes=2)
    x, y = digits_subset(13, 2)
    test = ImageSet(x=x[-6:, None], y=y[-6:].astype(np.int64), class_names=train.class_names, name="t")
    bundle = split_data(train, (0.7, 0.15, 0.15), seed=0, test=test)
    assert len(bundle.test_idx) == 6 and len(bundle.train_idx) + len(bundle.val_idx) == 20
    x_test, y_test = bundle.test_split()
    np.testing.assert_array_equal(x_test, test.x)
    np.testing.assert_array_equal(y_test, test.y)
    assert bundle.fingerprint() == f"{train.fingerprint()}+{test.fingerprint()}"
    # train:val keeps the 0.7:0.15 ratio of the first two fractions
    assert bundle.counts()["val"] == [2, 2]


SPLIT_FRACTIONS = (
    (0.7, 0.15, 0.15),
    (0.5, 0.25, 0.25),
    (0.1, 0.45, 0.45),
    (0.1, 0.1, 0.8),
    (0.8, 0.2, 0.0),
    (0.2, 0.0, 0.8),
    (0.05, 0.0, 0.95),
)
SPLIT_CASES = [(fractions, n) for fractions in SPLIT_FRACTIONS for n in (2, 3, 4, 7)]


@pytest.mark.parametrize(("fractions", "per_class"), SPLIT_CASES)
def test_split_parts_never_share_an_image(fractions: tuple[float, float, float], per_class: int) -> None:
    x = np.zeros((2 * per_class, 1, 2, 2), np.uint8)
    images = ImageSet(x=x, y=np.repeat([0, 1], per_class), class_names=("a", "b"), name="small")
    need = 1 + (fractions[1] > 0) + (fractions[2] > 0)
    if per_class < need:
        with pytest.raises(DataError):
            split_data(images, fractions)
        return
    bundle = split_data(images, fractions)
    parts = np.concatenate([bundle.train_idx, bundle.val_idx, bundle.test_idx])
    assert sorted(parts.tolist()) == list(range(2 * per_class)), (bundle.train_idx, bundle.val_idx, bundle.test_idx)
    counts = bundle.counts()
    assert all(n >= 1 for n in counts["train"])
    # a part with a share holds at least one image of every class; one without holds none
    for part, share in (("val", fractions[1]), ("test", fractions[2])):
        assert all((n >= 1) if share > 0 else (n == 0) for n in counts[part]), (part, counts)


@pytest.mark.parametrize(
    ("fractions", "words"),
    [((0.5, 0.2, 0.2), "must be non-negative and sum to 1"), ((0.0, 0.5, 0.5), "with some training data")],
)
def test_split_rejects_bad_fractions(fractions: tuple[float, float, float], words: str) -> None:
    with pytest.raises(DataError) as exc:
        split_data(digits_set(), fractions)
    assert words in one_line(exc)


def test_split_rejects_too_few_images_and_one_class() -> None:
    x = np.zeros((5, 1, 4, 4), np.uint8)
    images = ImageSet(x=x, y=np.array([0, 0, 0, 1, 1]), class_names=("many", "few"), name="s")
    with pytest.raises(DataError) as exc:
        split_data(images)
    line = one_line(exc)
    assert "class 'few' has 2 image(s)" in line and "at least 3 per class" in line
    assert "add images or remove the class" in line
    single = ImageSet(x=x, y=np.zeros(5, np.int64), class_names=("only",), name="s")
    with pytest.raises(DataError) as exc:
        split_data(single)
    assert "s: found a single class; a classifier needs at least two classes" in one_line(exc)


# -- folder: one sub-folder per class ---------------------------------------------------------------


def test_folder_entries_label_by_sorted_class_folder(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "d", per_class=3, classes=3)
    (root / "digit1" / "notes.txt").write_text("not an image")
    (root / "digit2" / ".hidden.png").write_bytes(b"")
    nested = root / "digit0" / "more"
    nested.mkdir()
    Image.new("L", (16, 16)).save(nested / "deep.png")
    (root / ".git").mkdir()
    entries, classes, notes = folder_entries(root)
    assert classes == ("digit0", "digit1", "digit2")
    assert len(entries) == 10  # 9 + the nested one; not the text file, not the hidden file
    assert all(classes[e.label] == e.path.relative_to(root).parts[0] for e in entries)
    assert any(e.path.name == "deep.png" and e.label == 0 for e in entries)
    assert notes == ["ignored 1 non-image file(s) (e.g. notes.txt)"]


def _class_image(root: Path, name: str) -> None:
    (root / name).mkdir()
    Image.new("L", (4, 4)).save(root / name / "a.png")


def _empty_class_beside_a_full_one(root: Path) -> None:
    _class_image(root, "dogs")
    (root / "cats").mkdir()


FOLDER_CASES: dict[str, tuple[Callable[[Path], object], str]] = {
    "empty": (lambda root: None, "the folder is empty; put each class's images in a sub-folder of it"),
    "no classes": (lambda root: (root / "loose.png").write_bytes(b"x"), "no class sub-folders found"),
    "class without images": (
        _empty_class_beside_a_full_one,
        "cats: class folder has no images; add images or remove the folder",
    ),
    "one class": (
        lambda root: _class_image(root, "cats"),
        "found a single class ('cats'); a classifier needs at least two class folders",
    ),
}


@pytest.mark.parametrize("case", sorted(FOLDER_CASES))
def test_folder_errors(tmp_path: Path, case: str) -> None:
    make, words = FOLDER_CASES[case]
    root = tmp_path / "data"
    root.mkdir()
    make(root)
    with pytest.raises(DataError) as exc:
        folder_entries(root)
    line = one_line(exc)
    assert line.startswith(str(root)) and words in line


# -- manifest: a CSV of path,label ------------------------------------------------------------------


def test_manifest_entries_resolve_relative_paths_and_sort_labels(tmp_path: Path) -> None:
    path = write_manifest(tmp_path / "m", per_class=2, classes=3)
    entries, classes, notes = manifest_entries(path)
    assert classes == ("d0", "d1", "d2") and notes == []
    assert len(entries) == 6
    assert all(e.path.is_absolute() and e.path.is_file() for e in entries)
    assert [e.path.name for e in entries] == [f"{i}.png" for i in range(6)]
    assert [e.label for e in entries] == [0, 0, 1, 1, 2, 2]


def test_manifest_header_is_case_and_space_insensitive_with_bom(tmp_path: Path) -> None:
    Image.new("L", (4, 4)).save(tmp_path / "a.png")
    path = tmp_path / "m.csv"
    path.write_text("\ufeff Label , PATH ,extra\nb, a.png ,1\na,a.png,2\n", encoding="utf-8")
    entries, classes, _ = manifest_entries(path)
    assert classes == ("a", "b") and [e.label for e in entries] == [1, 0]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("file,class\na.png,x\n", "missing column(s) path, label; the first row must be a header"),
        ("path\na.png\n", "missing column(s) label"),
        ("path,label\n", "the manifest has no rows; add one path,label row per image"),
        ("path,label\na.png,x\na.png,\n", "line 3 has an empty label; give every image a label"),
        ("path,label\na.png,x\nmissing.png,y\n", "line 3: no file at 'missing.png'; fix the path or remove the row"),
        ("path,label\na.png,x\n../a.png,y\n", "line 3: path '../a.png' points outside the manifest's folder"),
        ("path,label\na.png,x\na.png,x\n", "found a single class ('x'); a classifier needs at least two labels"),
        ("path,label\na.png,x\n,y\n", "line 3 has an empty path; give every image's path, relative to the"),
        ("path,label\na.png,x\n.,y\n", "line 3: '.' is a folder, not an image; give one image file per row"),
        ("path,label\na.png,x\n\na.png,y,z\n", "line 4 has 3 fields but the header has 2; quote a path or label"),
    ],
)
def test_manifest_errors(tmp_path: Path, text: str, words: str) -> None:
    folder = tmp_path / "inner"
    folder.mkdir()
    Image.new("L", (4, 4)).save(folder / "a.png")
    Image.new("L", (4, 4)).save(tmp_path / "a.png")  # exists, but outside the manifest's folder
    path = folder / "m.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError) as exc:
        manifest_entries(path)
    line = one_line(exc)
    assert line.startswith(f"{path}: ") and words in line


def test_manifest_row_with_extra_fields(tmp_path: Path) -> None:
    Image.new("L", (4, 4)).save(tmp_path / "a.png")
    path = tmp_path / "m.csv"
    path.write_text("path,label\na.png,x\na.png,y,surplus\n", encoding="utf-8")
    with pytest.raises(DataError) as exc:
        manifest_entries(path)
    assert one_line(exc) == (
        f"{path}: line 3 has 3 fields but the header has 2; quote a path or label that contains a comma, "
        "or remove the extra fields"
    )
    # a comma inside a quoted cell is part of the value, not an extra field
    Image.new("L", (4, 4)).save(tmp_path / "b,c.png")
    path.write_text('path,label\na.png,x\n"b,c.png",y\n', encoding="utf-8")
    entries, classes, _ = manifest_entries(path)
    assert classes == ("x", "y") and [e.path.name for e in entries] == ["a.png", "b,c.png"]


@pytest.mark.parametrize("cell", ["", "  ", '""'])
def test_manifest_row_with_an_empty_path(tmp_path: Path, cell: str) -> None:
    Image.new("L", (4, 4)).save(tmp_path / "a.png")
    path = tmp_path / "m.csv"
    path.write_text(f"path,label\na.png,x\n{cell},y\n", encoding="utf-8")
    with pytest.raises(DataError) as exc:
        manifest_entries(path)
    assert one_line(exc) == (
        f"{path}: line 3 has an empty path; give every image's path, relative to the manifest's folder, "
        "or remove the row"
    )


def test_manifest_absolute_path_outside_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside.png"
    Image.new("L", (4, 4)).save(outside)
    (tmp_path / "m").mkdir()
    path = tmp_path / "m" / "m.csv"
    path.write_text(f"path,label\n{outside},a\n{outside},b\n", encoding="utf-8")
    with pytest.raises(DataError) as exc:
        manifest_entries(path)
    assert "points outside the manifest's folder; keep images inside it and use relative paths" in one_line(exc)


def test_manifest_that_is_not_text(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_bytes(b"path,label\n\xff\xfe\xfa,x\n")
    with pytest.raises(DataError) as exc:
        manifest_entries(path)
    assert "cannot read the CSV (UnicodeDecodeError); check the file" in one_line(exc)


# -- tv: torchvision datasets by name, offline only --------------------------------------------------


@pytest.mark.parametrize("name", sorted(TORCHVISION))
def test_torchvision_missing_without_download_names_the_fix(tmp_path: Path, name: str) -> None:
    root = tmp_path / "tv"
    with pytest.raises(DataError) as exc:
        load_torchvision(name, root, download=False)
    line = one_line(exc)
    assert f"torchvision dataset {name!r} not found under {root.resolve()}" in line
    assert "pass --download to fetch it, or --data-root to the folder that holds it" in line
    assert not root.exists() or not any(root.rglob("*.gz")), "nothing may be downloaded"


def test_unknown_dataset_name_lists_the_known_ones(tmp_path: Path) -> None:
    from automl_cnn.data import load_images

    with pytest.raises(DataError) as exc:
        load_images("cifar11")
    line = one_line(exc)
    assert "dataset 'cifar11' not found: give an existing path or one of:" in line
    assert all(name in line for name in TORCHVISION)


def test_download_urls_are_known_for_every_dataset() -> None:
    import torchvision.datasets as tvd

    for name, cls_name in TORCHVISION.items():
        urls = _urls(getattr(tvd, cls_name))
        assert urls and all(u.startswith(("http://", "https://")) for u in urls), name


def _idx(path: Path, array: np.ndarray) -> None:
    magic = 0x0800 + array.ndim
    path.write_bytes(struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes())


def test_torchvision_reads_files_under_the_data_root(tmp_path: Path) -> None:
    raw = tmp_path / "tv" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    pixels = {}
    for prefix, n in (("train", 30), ("t10k", 10)):
        pixels[prefix] = rng.integers(0, 255, (n, 28, 28), dtype=np.uint8)
        _idx(raw / f"{prefix}-images-idx3-ubyte", pixels[prefix])
        _idx(raw / f"{prefix}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8))
    train, test = load_torchvision("fashion-mnist", tmp_path / "tv", download=False)
    assert train.name == "fashion-mnist" and test.name == "fashion-mnist-test"
    assert train.input_shape == (1, 28, 28) and len(train.y) == 30 and len(test.y) == 10
    np.testing.assert_array_equal(px(train)[:, 0], pixels["train"])
    np.testing.assert_array_equal(px(test)[:, 0], pixels["t10k"])
    assert train.class_names[0] == "T-shirt/top" and train.class_names == test.class_names
    assert "torchvision FashionMNIST" in train.notes[0] and "30 training and 10 test images" in train.notes[0]


def test_torchvision_arrays_channels_last_and_labels_without_classes() -> None:
    rng = np.random.default_rng(3)
    nhwc = rng.integers(0, 256, (4, 5, 6, 3), dtype=np.uint8)
    x, y, classes = _arrays(SimpleNamespace(data=nhwc, labels=[2, 0, 1, 2]))  # SVHN-like: labels, no classes
    np.testing.assert_array_equal(x, nhwc.transpose(0, 3, 1, 2))
    assert x.flags["C_CONTIGUOUS"] and y.dtype == np.int64
    assert classes == ("0", "1", "2")
