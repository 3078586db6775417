"""Splits and statistics: what the search and the final fit train and score on."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from automl_cnn.data.images import ImageFiles, ImageSet, Pixels, to_float
from automl_cnn.errors import DataError

DEFAULT_SPLIT = (0.7, 0.15, 0.15)  # train, validation, test
CHECK_STREAM = 7  # the random stream (beside the split seed) that draws the check half of validation


@dataclass(frozen=True, eq=False)
class TrainData:
    """What one worker needs: a training part, a scoring part, and the shape of the task.

    Small enough to travel through Ray's object store once per worker.
    """

    x_train: Pixels
    y_train: np.ndarray
    x_eval: Pixels
    y_eval: np.ndarray
    input_shape: tuple[int, int, int]
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_weights: tuple[float, ...] | None = None
    metric: str = "accuracy"  # how the scoring part is scored (automl_cnn/metrics.py): accuracy, balanced_accuracy


@dataclass(frozen=True, eq=False)
class DataBundle:
    images: ImageSet
    train_idx: np.ndarray
    val_idx: np.ndarray
    test_idx: np.ndarray
    mean: tuple[float, ...]
    std: tuple[float, ...]
    split_seed: int
    fractions: tuple[float, float, float]
    class_weights: tuple[float, ...] | None = None

    @property
    def name(self) -> str:
        return self.images.name

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.images.class_names

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.images.input_shape

    @property
    def num_classes(self) -> int:
        return self.images.num_classes

    def fingerprint(self) -> str:
        return self.images.fingerprint()

    def _part(self, fit_idx: np.ndarray, eval_idx: np.ndarray) -> TrainData:
        x, y = self.images.x, self.images.y
        return TrainData(
            x_train=x[fit_idx],
            y_train=y[fit_idx],
            x_eval=x[eval_idx],
            y_eval=y[eval_idx],
            input_shape=self.input_shape,
            num_classes=self.num_classes,
            mean=self.mean,
            std=self.std,
            class_weights=self.class_weights,
        )

    def search_data(self) -> TrainData:
        """Train on the training split, score on validation: the test split stays unseen."""
        return self._part(self.train_idx, self.val_idx)

    def final_data(self) -> TrainData:
        """Train on train + validation; no scoring set, so the test split is scored only once,
        after training, by the caller."""
        return self._part(np.concatenate([self.train_idx, self.val_idx]), self.test_idx[:0])

    def check_positions(self) -> np.ndarray:
        """Positions in the validation split of its check half: per class, half of its validation
        images (rounded down), drawn with the split seed. The final fit trains on train + the
        other half and is scored on this one, where it is compared with the trials' own weights
        and ensembles are judged (the test split stays untouched)."""
        y = self.images.y[self.val_idx]
        rng = np.random.default_rng([self.split_seed, CHECK_STREAM])
        chosen = [rng.permutation(np.flatnonzero(y == c))[: int(np.sum(y == c)) // 2] for c in range(self.num_classes)]
        return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)

    def select_positions(self) -> np.ndarray:
        """Positions in the validation split of the half that is not the check half."""
        return np.setdiff1d(np.arange(len(self.val_idx)), self.check_positions())

    def refit_data(self) -> TrainData:
        """The final fit's data: train + the selection half of validation, scored on the check half."""
        select, check = self.val_idx[self.select_positions()], self.val_idx[self.check_positions()]
        return self._part(np.concatenate([self.train_idx, select]), check)

    def test_split(self) -> tuple[np.ndarray, np.ndarray]:
        """The test images (read into memory) and labels."""
        x = self.images.x[self.test_idx]
        return (x.read() if isinstance(x, ImageFiles) else x), self.images.y[self.test_idx]

    def counts(self) -> dict[str, list[int]]:
        """Images per class in each split."""
        k = self.num_classes
        return {
            name: np.bincount(self.images.y[idx], minlength=k).tolist()
            for name, idx in (("train", self.train_idx), ("val", self.val_idx), ("test", self.test_idx))
        }


def _class_counts(n: int, f_val: float, f_test: float) -> tuple[int, int]:
    """Training and validation images of a class of ``n`` (the rest is test): at least one
    training image, and at least one validation / test image where that share is above 0.
    Needs ``n`` >= 1 + (f_val > 0) + (f_test > 0)."""
    least_val, least_test = int(f_val > 0), int(f_test > 0)
    n_val = max(least_val, round(n * f_val))
    n_test = max(least_test, round(n * f_test))
    while n_val + n_test > n - 1:  # too few left to train on: shrink the larger share, never below its least
        if n_val > least_val and (n_val >= n_test or n_test <= least_test):
            n_val -= 1
        else:
            n_test -= 1
    return n - n_val - n_test, n_val


def _stratified_split(
    y: np.ndarray, fractions: tuple[float, float, float], seed: int, class_names: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per class: shuffle, then cut into train / val / test with at least one image in each."""
    rng = np.random.default_rng(seed)
    parts: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
    _, f_val, f_test = fractions
    for c in range(len(class_names)):
        idx = np.flatnonzero(y == c)
        need = 1 + (f_val > 0) + (f_test > 0)
        if len(idx) < need:
            raise DataError(
                f"class {class_names[c]!r} has {len(idx)} image(s); a train/val/test split needs "
                f"at least {need} per class: add images or remove the class"
            )
        idx = rng.permutation(idx)
        n_train, n_val = _class_counts(len(idx), f_val, f_test)
        parts[0].append(idx[:n_train])
        parts[1].append(idx[n_train : n_train + n_val])
        parts[2].append(idx[n_train + n_val :])
    train, val, test = (np.sort(np.concatenate(p)) for p in parts)
    return train, val, test


def channel_stats(x: Pixels, sample: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of images in [0, 1]: every image in memory, or an evenly
    spaced sample of ``sample`` images when they stream from disk."""
    if isinstance(x, ImageFiles):
        picks = np.linspace(0, len(x) - 1, num=min(sample, len(x))).round().astype(int)
        x = x.read(np.unique(picks))
    c = x.shape[1]
    total = np.zeros(c)
    total_sq = np.zeros(c)
    count = 0
    for start in range(0, len(x), 4096):
        chunk = to_float(x[start : start + 4096]).astype(np.float64)
        total += chunk.sum(axis=(0, 2, 3))
        total_sq += (chunk**2).sum(axis=(0, 2, 3))
        count += chunk.shape[0] * chunk.shape[2] * chunk.shape[3]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    std = np.where(std < 1e-6, 1.0, std)  # a constant channel: leave it unscaled
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def _concat(a: ImageSet, b: ImageSet) -> ImageSet:
    """``a`` followed by ``b`` (a user's test set appended to the training images)."""
    if isinstance(a.x, ImageFiles) and isinstance(b.x, ImageFiles):
        x: Pixels = ImageFiles(a.x.paths + b.x.paths, a.x.mode, a.x.size)
    else:
        xa = a.x if isinstance(a.x, np.ndarray) else a.x.read()
        xb = b.x if isinstance(b.x, np.ndarray) else b.x.read()
        if xa.dtype != xb.dtype:
            xa, xb = to_float(xa), to_float(xb)
        x = np.concatenate([xa, xb])
    fp = f"{a.fingerprint()}+{b.fingerprint()}"
    return ImageSet(
        x=x,
        y=np.concatenate([a.y, b.y]),
        class_names=a.class_names,
        name=a.name,
        paths=a.paths + b.paths if a.paths and b.paths else (),
        notes=a.notes,
        source_fingerprint=fp,
    )


def _counts(y: np.ndarray, k: int) -> np.ndarray:
    """Images per class, a class with none counted as one (so neither helper divides by 0)."""
    return np.maximum(np.bincount(y, minlength=k).astype(np.float64), 1.0)


def class_weights_for(y: np.ndarray, k: int) -> tuple[float, ...]:
    """Inverse-frequency weights ``n / (k * n_c)``: each class counts as much in the loss."""
    return tuple(float(len(y) / (k * c)) for c in _counts(y, k))


def log_prior(y: np.ndarray, k: int) -> tuple[float, ...]:
    """``log(n_c / n)`` per class (a class with no image counts as one): the offset of the
    logit-adjusted loss (Menon et al., "Long-tail learning via logit adjustment", ICLR 2021, tau = 1),
    which adds it to the logits the loss sees, so the network's own logits rank classes as if
    they were balanced."""
    counts = _counts(y, k)
    return tuple(float(v) for v in np.log(counts / counts.sum()))


def split_data(
    images: ImageSet,
    fractions: tuple[float, float, float] = DEFAULT_SPLIT,
    seed: int = 0,
    *,
    test: ImageSet | None = None,
    class_weights: bool = False,
) -> DataBundle:
    """A deterministic stratified split; normalisation statistics from the training split only.

    With ``test`` (a user's test set, or a dataset's own), the images are split into train and
    validation only, in the ratio of the first two fractions, and ``test`` is the test split.
    """
    if abs(sum(fractions) - 1.0) > 1e-6 or min(fractions) < 0 or fractions[0] <= 0:
        raise DataError(f"split fractions {fractions} must be non-negative and sum to 1, with some training data")
    if images.num_classes < 2:
        raise DataError(f"{images.name}: found a single class; a classifier needs at least two classes")
    if test is None:
        train, val, test_idx = _stratified_split(images.y, fractions, seed, images.class_names)
        combined = images
    else:
        f_train, f_val = fractions[0], fractions[1]
        train, val, _ = _stratified_split(
            images.y, (f_train / (f_train + f_val), f_val / (f_train + f_val), 0.0), seed, images.class_names
        )
        combined = _concat(images, test)
        test_idx = np.arange(len(images.y), len(combined.y))
    mean, std = channel_stats(combined.x[train])
    weights = class_weights_for(combined.y[train], combined.num_classes) if class_weights else None
    return DataBundle(combined, train, val, test_idx, mean, std, seed, fractions, weights)
