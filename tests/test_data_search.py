"""A tiny real search on each data source; the model predicts files read back from disk exactly
as it scored the test split during evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from datafiles import digits_subset, write_folder, write_manifest

from automl_cnn import search

pytestmark = pytest.mark.slow
TINY = Path(__file__).resolve().parent.parent / "search_spaces" / "tiny.yaml"


def _search(data: Path, tmp_path: Path, store: str, **kw):  # type: ignore[no-untyped-def]
    return search(
        data,
        TINY,
        trials=3,
        workers=2,
        out=tmp_path / "out",
        tracking_uri=store,
        progress=False,
        warm_start="none",
        **kw,
    )


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_folder_source(ray_session: None, tmp_path: Path, store: str, fmt: str) -> None:
    root = write_folder(tmp_path / "digits", per_class=25, fmt=fmt)
    result = _search(root, tmp_path, store)
    bundle = result.data
    x_test, y_test = bundle.test_split()
    test_paths = [bundle.images.paths[i] for i in bundle.test_idx]
    assert all(Path(p).is_file() for p in test_paths)
    from_disk = result.model.predict_files(test_paths)
    np.testing.assert_allclose(from_disk, result.model.predict_proba(x_test), atol=1e-6)
    assert result.test_accuracy == pytest.approx(float((from_disk.argmax(1) == y_test).mean()))
    assert result.test_accuracy > 0.5


def test_csv_manifest_source(ray_session: None, tmp_path: Path, store: str) -> None:
    csv_path = write_manifest(tmp_path / "m", per_class=25)
    result = _search(csv_path, tmp_path, store)
    assert result.model.class_names == tuple(f"d{i}" for i in range(10))
    bundle = result.data
    test_paths = [bundle.images.paths[i] for i in bundle.test_idx]
    np.testing.assert_allclose(
        result.model.predict_files(test_paths), result.model.predict_proba(bundle.test_split()[0]), atol=1e-6
    )


def test_npz_source_with_user_test_set(ray_session: None, tmp_path: Path, store: str) -> None:
    x, y = digits_subset(per_class=40)
    np.savez(tmp_path / "train.npz", x=x[:, :, :, None], y=y)  # NHWC
    xt, yt = digits_subset(per_class=48)
    np.savez(tmp_path / "test.npz", x=xt[:, None], y=yt)  # NCHW
    result = _search(tmp_path / "train.npz", tmp_path, store, test_data=str(tmp_path / "test.npz"))
    bundle = result.data
    assert len(bundle.test_idx) == len(yt)
    with np.load(tmp_path / "test.npz") as f:
        back = f["x"]
    np.testing.assert_allclose(result.model.predict_proba(back), result.model.predict_proba(bundle.test_split()[0]))


def test_streamed_folder_source(ray_session: None, tmp_path: Path, store: str) -> None:
    root = write_folder(tmp_path / "digits", per_class=20)
    result = _search(root, tmp_path, store, stream=True)
    assert result.data.images.streamed
    assert result.counts["completed"] + result.counts["pruned"] >= 1
    assert 0.0 <= result.test_accuracy <= 1.0
