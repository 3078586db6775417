"""Bad input: one line naming the problem and the fix, exit status 2, nothing written.

Every case runs the real CLI entry point in a scratch working directory and checks that no
MLflow store, no run folder and no MLflow run was created.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest
from datafiles import write_folder, write_manifest
from PIL import Image

from automl_cnn.cli import main
from automl_cnn.data import DataOptions, load_images

SPACES = Path(__file__).resolve().parent.parent / "search_spaces"
DEEP = Path(__file__).resolve().parent / "spaces" / "deep.yaml"


def cli_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run ``automl-cnn search ARGS`` in a scratch folder; return the one error line."""
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    capsys.readouterr()  # drop what earlier steps of the test printed
    old = Path.cwd()
    os.chdir(work)
    try:
        code = main(["search", "--space", str(SPACES / "tiny.yaml"), "--trials", "1", "--no-progress", *args])
    finally:
        os.chdir(old)
    _out, err = capsys.readouterr()
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert list(work.iterdir()) == [], "something was written"
    return lines[0]


def test_missing_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = cli_error(tmp_path, capsys, "--data", str(tmp_path / "nowhere"))
    assert "not found: give an existing path or one of: digits, mnist5k, mnist, fashion-mnist" in line


def test_empty_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    line = cli_error(tmp_path, capsys, "--data", str(tmp_path / "empty"))
    assert "the folder is empty; put each class's images in a sub-folder of it" in line


def test_class_folder_without_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_folder(tmp_path / "d", per_class=5, classes=2)
    (root / "digit9").mkdir()
    (root / "digit9" / "readme.txt").write_text("no images here")
    line = cli_error(tmp_path, capsys, "--data", str(root))
    assert "digit9: class folder has no images; add images or remove the folder" in line


def test_single_class(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_folder(tmp_path / "d", per_class=5, classes=1)
    line = cli_error(tmp_path, capsys, "--data", str(root))
    assert "found a single class ('digit0'); a classifier needs at least two class folders" in line


def _corrupt(root: Path) -> Path:
    bad = root / "digit0" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    return bad


def test_corrupt_image_is_skipped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = write_folder(tmp_path / "d", per_class=5, classes=2)
    bad = _corrupt(root)
    images = load_images(root)
    assert len(images.y) == 10 and str(bad) not in images.paths
    assert any(f"{bad} (" in note for note in images.notes)
    assert any("skipped 1 unreadable image" in r.message for r in caplog.records)


def test_corrupt_image_with_strict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_folder(tmp_path / "d", per_class=5, classes=2)
    bad = _corrupt(root)
    line = cli_error(tmp_path, capsys, "--data", str(root), "--strict")
    assert f"{bad}: " in line and "fix or remove the file, or drop --strict to skip it" in line


def _truncated_jpeg(root: Path) -> Path:
    """A JPEG whose header is whole but whose data stops short: only decoding it finds that."""
    bad = root / "digit1" / "cut.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(bad, quality=95)
    bad.write_bytes(bad.read_bytes()[:400])
    with Image.open(bad) as img:
        img.verify()  # the header check passes: the case the streaming scan must catch
    return bad


def test_truncated_jpeg_is_skipped_when_streaming(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = write_folder(tmp_path / "d", per_class=5, classes=2, fmt="jpg")
    bad = _truncated_jpeg(root)
    images = load_images(root, DataOptions(stream=True))
    assert images.streamed and str(bad) not in images.paths and len(images.y) == 10
    assert any(f"{bad} (truncated image data)" in note for note in images.notes)
    assert images.x.read().shape == (10, 1, 16, 16)  # type: ignore[union-attr]  # every kept file decodes


def test_truncated_jpeg_with_strict_when_streaming(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_folder(tmp_path / "d", per_class=5, classes=2, fmt="jpg")
    bad = _truncated_jpeg(root)
    line = cli_error(tmp_path, capsys, "--data", str(root), "--strict", "--stream")
    assert f"{bad}: truncated image data; fix or remove the file" in line


def test_non_image_files_are_ignored_with_a_count(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "d", per_class=5, classes=2)
    (root / "digit0" / "notes.txt").write_text("x")
    (root / "digit1" / "labels.json").write_text("{}")
    images = load_images(root)
    assert len(images.y) == 10
    assert any("ignored 2 non-image file(s)" in n for n in images.notes)


def test_zero_byte_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_folder(tmp_path / "d", per_class=5, classes=2)
    (root / "digit1" / "empty.png").write_bytes(b"")
    assert len(load_images(root).y) == 10  # skipped by default
    line = cli_error(tmp_path, capsys, "--data", str(root), "--strict")
    assert "empty.png: empty file (0 bytes)" in line


def test_unreadable_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_folder(tmp_path / "d", per_class=5, classes=2)
    (root / "digit1" / "gone.png").symlink_to(tmp_path / "deleted.png")  # a dangling link
    if os.geteuid() != 0:  # root reads anything; elsewhere, a file without read permission too
        locked = root / "digit0" / "locked.png"
        Image.new("L", (16, 16)).save(locked)
        locked.chmod(0)
    images = load_images(root)
    assert len(images.y) == 10
    line = cli_error(tmp_path, capsys, "--data", str(root), "--strict")
    assert "gone.png: missing (a broken link?)" in line or "locked.png: permission denied" in line


def test_csv_missing_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "m.csv").write_text("file,class\na.png,0\n")
    line = cli_error(tmp_path, capsys, "--data", str(tmp_path / "m.csv"))
    assert "missing column(s) path, label; the first row must be a header with columns path,label" in line


def test_csv_unknown_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv_path = write_manifest(tmp_path / "m", per_class=3, classes=2)
    with csv_path.open("a") as f:
        f.write("images/nope.png,d0\n")
    line = cli_error(tmp_path, capsys, "--data", str(csv_path))
    assert "line 8: no file at 'images/nope.png'; fix the path or remove the row" in line


@pytest.mark.parametrize("escape", ["../outside.png", "/etc/hostname"])
def test_csv_path_escaping_its_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str], escape: str) -> None:
    csv_path = write_manifest(tmp_path / "m", per_class=3, classes=2)
    Image.new("L", (8, 8)).save(tmp_path / "outside.png")
    with csv_path.open("a") as f:
        f.write(f"{escape},d0\n")
    line = cli_error(tmp_path, capsys, "--data", str(csv_path))
    assert f"path {escape!r} points outside the manifest's folder" in line


def test_npz_lengths_differ(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    np.savez(tmp_path / "a.npz", x=np.zeros((10, 8, 8), np.uint8), y=np.arange(9) % 2)
    line = cli_error(tmp_path, capsys, "--data", str(tmp_path / "a.npz"))
    assert "x has 10 images but y has 9 labels; give one label per image" in line


def test_npz_wrong_dimensions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    np.savez(tmp_path / "a.npz", x=np.zeros((10, 64), np.uint8), y=np.arange(10) % 2)
    line = cli_error(tmp_path, capsys, "--data", str(tmp_path / "a.npz"))
    assert "x has 2 dimension(s) (10, 64); expected images as N,H,W or N,H,W,C or N,C,H,W" in line


def test_npz_float_values_that_are_not_pixels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Standardised floats (say -2..3) are refused: a silent rescale would be a training
    transform that predict and the exported model do not know."""
    x = np.random.default_rng(0).normal(size=(20, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "z.npz", x=x, y=np.arange(20) % 2)
    line = cli_error(tmp_path, capsys, "--data", str(tmp_path / "z.npz"))
    assert "x holds float values in" in line and "give uint8 0-255 or floats in 0-1 or 0-255" in line


@pytest.mark.parametrize(
    ("labels", "words"),
    [
        (np.array([0.5, 1.0] * 5), "y holds non-integer labels; give integer class indices 0, 1, 2, ..."),
        (np.array([-1, 0] * 5), "y holds negative labels (e.g. -1); give class indices 0, 1, 2, ..."),
        (np.array(["a", "b"] * 5), "y has dtype <U1; give integer class indices 0, 1, 2, ..."),
    ],
)
def test_npz_bad_labels(tmp_path: Path, capsys: pytest.CaptureFixture[str], labels: np.ndarray, words: str) -> None:
    np.savez(tmp_path / "a.npz", x=np.zeros((10, 8, 8), np.uint8), y=labels)
    assert words in cli_error(tmp_path, capsys, "--data", str(tmp_path / "a.npz"))


def test_too_few_images_per_class(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_folder(tmp_path / "d", per_class=5, classes=2)
    for p in list((root / "digit1").iterdir())[2:]:
        p.unlink()
    line = cli_error(tmp_path, capsys, "--data", str(root))
    assert "class 'digit1' has 2 image(s); a train/val/test split needs at least 3 per class" in line


def test_images_smaller_than_any_network(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = cli_error(tmp_path, capsys, "--data", "digits", "--space", str(DEEP))
    assert "digits: images are 8x8, smaller than any network of space 'deep' can take" in line
    assert "pass --image-size 16 (or larger)" in line


def test_unknown_torchvision_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = cli_error(tmp_path, capsys, "--data", "cifar11")
    assert "dataset 'cifar11' not found: give an existing path or one of:" in line
    assert "cifar10, cifar100, svhn" in line


def test_torchvision_missing_without_download(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = cli_error(tmp_path, capsys, "--data", "kmnist", "--data-root", str(tmp_path / "tv"))
    assert "torchvision dataset 'kmnist' not found under" in line and "pass --download to fetch it" in line


def test_download_without_network_names_what_it_tried(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import urllib.request

    dead = "http://127.0.0.1:9"  # nothing listens there: no network, even where there is one
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(var, dead)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    # urlopen keeps the opener (and proxies) of its first call in this process: replace it
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": dead, "https": dead}))
    monkeypatch.setattr(urllib.request, "_opener", opener)
    line = cli_error(tmp_path, capsys, "--data", "cifar10", "--download", "--data-root", str(tmp_path / "tv"))
    assert "could not download 'cifar10' from https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in line
    assert "check the network" in line
    assert not (tmp_path / "tv" / "cifar-10-python.tar.gz").exists()


def test_decompression_bomb(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = write_folder(tmp_path / "d", per_class=5, classes=2)
    Image.new("1", (20000, 20000)).save(root / "digit0" / "bomb.png")  # 400 Mpixel, a few KB
    line = cli_error(tmp_path, capsys, "--data", str(root))
    assert "bomb.png: refused as a decompression bomb by Pillow's guard" in line


def _idx(path: Path, array: np.ndarray) -> None:
    magic = 0x0800 + array.ndim
    path.write_bytes(struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes())


def test_torchvision_dataset_read_offline_from_data_root(tmp_path: Path) -> None:
    """MNIST files in torchvision's layout under --data-root are read by torchvision itself,
    and the dataset's own test split becomes the test split."""
    from automl_cnn.data import prepare_data

    raw = tmp_path / "tv" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 60), ("t10k", 20)):
        _idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 255, (n, 28, 28), dtype=np.uint8))
        _idx(raw / f"{prefix}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8))
    bundle = prepare_data("mnist", DataOptions(data_root=tmp_path / "tv"))
    assert bundle.input_shape == (1, 28, 28)
    assert len(bundle.test_idx) == 20 and len(bundle.train_idx) + len(bundle.val_idx) == 60
    assert bundle.class_names[0].startswith("0")
