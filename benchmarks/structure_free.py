"""Data without spatial structure: mnist5k with its pixels permuted (one fixed permutation,
from ``numpy.random.default_rng(0)``, applied to every image), so neighbouring pixels are no
longer neighbours and convolutions lose their advantage.

    python benchmarks/structure_free.py --budget 300
    python benchmarks/structure_free.py --budget 600 --seed 1

In the same run and on the very same split (``split_data(images, seed)``), it searches the
shipped ``default`` space with automl-cnn (whose warm starts begin with an MLP on the flattened
image) and fits two scikit-learn baselines on train+val: an RBF ``SVC()`` and an
``MLPClassifier((512, 100))``; every system is scored once on the test split. It prints a
Markdown table (system, test accuracy, seconds), whether the delivered model is convolutional,
and whether it matches the best baseline.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from baselines import quiet

from automl_cnn.data import DataBundle, ImageSet, load_images, split_data

Row = tuple[str, float, float]  # system, test accuracy, seconds


def permuted(images: ImageSet, seed: int = 0) -> ImageSet:
    """``images`` with one fixed permutation of the pixel positions applied to every image."""
    assert isinstance(images.x, np.ndarray)
    n = len(images.x)
    flat = images.x.reshape(n, -1)
    order = np.random.default_rng(seed).permutation(flat.shape[1])
    x = np.ascontiguousarray(flat[:, order].reshape(images.x.shape))
    return ImageSet(x, images.y, images.class_names, f"{images.name}-permuted")


def sklearn_baselines(bundle: DataBundle, seed: int) -> list[Row]:
    """SVC (RBF) and an MLPClassifier, fitted on train+val and scored on test."""
    from sklearn.neural_network import MLPClassifier
    from sklearn.svm import SVC

    x = np.asarray(bundle.images.x, dtype=np.float32).reshape(len(bundle.images.y), -1) / 255.0
    y = bundle.images.y
    fit_idx = np.concatenate([bundle.train_idx, bundle.val_idx])
    makers: dict[str, Callable[[], object]] = {
        "sklearn SVC() (RBF)": SVC,
        "sklearn MLPClassifier((512, 100))": lambda: MLPClassifier((512, 100), random_state=seed),
    }
    rows = []
    for name, make in makers.items():
        t0 = time.monotonic()
        model = make()
        model.fit(x[fit_idx], y[fit_idx])  # type: ignore[attr-defined]
        accuracy = float(model.score(x[bundle.test_idx], y[bundle.test_idx]))  # type: ignore[attr-defined]
        rows.append((name, accuracy, time.monotonic() - t0))
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", type=float, default=300.0, help="seconds for the automl-cnn search (default 300)")
    p.add_argument("--seed", type=int, default=0, help="the split, the search and the baselines (default 0)")
    p.add_argument("--space", default="default", help="a shipped space's name or a YAML path (default: default)")
    args = p.parse_args(argv)
    quiet()
    import automl_cnn

    images = permuted(load_images("mnist5k"))
    bundle = split_data(images, seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.monotonic()
        result = automl_cnn.search(
            images,
            args.space,
            time_budget=args.budget,
            seed=args.seed,
            progress=False,
            out=Path(tmp) / "out",
            tracking_uri=f"sqlite:///{tmp}/mlflow.db",
        )
        seconds = time.monotonic() - t0
    assert result.data is None or np.array_equal(result.data.test_idx, bundle.test_idx), "the splits differ"
    arch = result.candidate.architecture
    ours: Row = (f"automl-cnn ({args.space}, {args.budget:.0f} s budget)", result.test_accuracy, seconds)
    baselines = sklearn_baselines(bundle, args.seed)
    report(ours, baselines, len(bundle.test_idx), arch.describe(), arch.convolutional)
    print(f"\ntrials: {', '.join(f'{v} {k}' for k, v in result.counts.items())}")
    print("\n".join(line.strip() for line in result.delivered_lines()))


def report(ours: Row, baselines: list[Row], n: int, architecture: str, convolutional: bool) -> None:
    print(f"\n## mnist5k, pixels permuted: test accuracy on the same {n} test images\n")
    print("| system | test accuracy | seconds |")
    print("|---|---|---|")
    for name, accuracy, seconds in [ours, *baselines]:
        print(f"| {name} | {accuracy:.4f} | {seconds:.0f} |")
    print(f"\ndelivered model: {architecture} (convolutional: {'yes' if convolutional else 'no'})")
    best = max(baselines, key=lambda r: r[1])
    verdict = "yes" if ours[1] >= best[1] else "no"
    print(f"delivered >= best baseline: {verdict} ({ours[1]:.4f} vs {best[1]:.4f}, {best[0]})")


if __name__ == "__main__":
    main()
