"""Image files: checking them, choosing one size and channel count, reading them.

Every file-based source (a folder of class folders, a CSV manifest) becomes a list of
``(path, label)`` entries and goes through :func:`load_entries`: a header scan finds the bad
files (corrupt, empty, unreadable: skipped with a warning, or an error with ``strict``;
decompression bombs: always an error), the sizes and modes decide one image size and one
channel count, and the images are either decoded into memory or left on disk to be streamed.
``predict`` reads files with the same :func:`read_image`, so serving applies exactly the
training preprocessing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from automl_cnn.data.images import ImageFiles, ImageSet
from automl_cnn.data.options import DataOptions
from automl_cnn.data.pixels import read_image
from automl_cnn.errors import DataError

log = logging.getLogger("automl_cnn.data")

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".pbm"}
GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}
MAX_DEFAULT_SIDE = 64


@dataclass(frozen=True)
class Entry:
    path: Path
    label: int


def is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


class EmptyFile(OSError):
    """A zero-byte file."""


def _describe_error(exc: BaseException) -> str:
    if isinstance(exc, EmptyFile):
        return "empty file (0 bytes)"
    if isinstance(exc, UnidentifiedImageError):
        return "not a readable image"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, FileNotFoundError):
        return "missing (a broken link?)"
    if isinstance(exc, IsADirectoryError):
        return "a folder, not a file"
    if isinstance(exc, OSError) and "truncated" in str(exc):
        return "truncated image data"
    return f"{exc.__class__.__name__}: {str(exc)[:120]}"


def _bomb_error(path: Path, exc: BaseException) -> DataError:
    return DataError(
        f"{path}: refused as a decompression bomb by Pillow's guard ({str(exc).split('.')[0]}); "
        "remove the file or shrink the image"
    )


def probe(path: Path) -> tuple[tuple[int, int], str]:
    """(height, width) and mode of an image, from its header; raises on a bad file."""
    if os.path.getsize(path) == 0:
        raise EmptyFile(str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as img:
            img.verify()  # reads the data for PNG/GIF/..., raises on corruption
            return (img.height, img.width), img.mode


def choose_size(sizes: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """The most common (height, width), scaled down so the longer side is at most 64."""
    h, w = Counter(sizes).most_common(1)[0][0]
    scale = min(1.0, MAX_DEFAULT_SIDE / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def files_fingerprint(entries: Sequence[Entry], root: Path) -> str:
    """A hash of the files (relative path, size, modification time) and their labels."""
    h = hashlib.sha256()
    for e in entries:
        st = e.path.stat()
        rel = os.path.relpath(e.path, root)
        h.update(f"{rel}\0{st.st_size}\0{int(st.st_mtime)}\0{e.label}\n".encode())
    return h.hexdigest()[:16]


def scan(entries: Sequence[Entry], strict: bool) -> tuple[list[Entry], list[tuple[int, int]], list[str], list[str]]:
    """Check every file; returns the good entries, their sizes and modes, and the skip notes."""
    good: list[Entry] = []
    sizes: list[tuple[int, int]] = []
    modes: list[str] = []
    bad: list[str] = []
    for e in entries:
        try:
            size, mode = probe(e.path)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise _bomb_error(e.path, exc) from None
        except Exception as exc:  # Pillow raises many types for a bad file
            problem = _describe_error(exc)
            if strict:
                raise DataError(f"{e.path}: {problem}; fix or remove the file, or drop --strict to skip it") from None
            bad.append(f"{e.path} ({problem})")
            continue
        good.append(e)
        sizes.append(size)
        modes.append(mode)
    return good, sizes, modes, bad


def _decode(path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as img:
            img.load()


def _decodable(entries: Sequence[Entry], strict: bool) -> tuple[list[Entry], list[str]]:
    """The entries whose files decode in full (Pillow decodes without the GIL: threads help)."""
    from concurrent.futures import ThreadPoolExecutor

    def attempt(e: Entry) -> BaseException | None:
        try:
            _decode(e.path)
        except Exception as exc:
            return exc
        return None

    good: list[Entry] = []
    broken: list[str] = []
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for e, exc in zip(entries, pool.map(attempt, entries), strict=True):
            if exc is None:
                good.append(e)
            elif isinstance(exc, Image.DecompressionBombError | Image.DecompressionBombWarning):
                raise _bomb_error(e.path, exc) from None
            elif strict:
                problem = _describe_error(exc)
                raise DataError(f"{e.path}: {problem}; fix or remove the file, or drop --strict to skip it") from None
            else:
                broken.append(f"{e.path} ({_describe_error(exc)})")
    return good, broken


def _looks_grey(x: np.ndarray, tolerance: int = 3) -> bool:
    """True when every pixel's channels agree within ``tolerance`` (lossy codecs add noise)."""
    for start in range(0, len(x), 1024):
        chunk = x[start : start + 1024].astype(np.int16)
        if np.abs(chunk[:, 0] - chunk[:, 1]).max() > tolerance or np.abs(chunk[:, 1] - chunk[:, 2]).max() > tolerance:
            return False
    return True


def _check_classes(good: Sequence[Entry], class_names: tuple[str, ...]) -> None:
    present = Counter(e.label for e in good)
    for label, cname in enumerate(class_names):
        if present[label] == 0:
            raise DataError(f"class {cname!r} has no readable images; add images or remove the class")


def load_entries(
    entries: Sequence[Entry],
    class_names: tuple[str, ...],
    name: str,
    root: Path,
    options: DataOptions,
    mode: str | None = None,
) -> ImageSet:
    """Check, size and read image files (into memory, or as a lazy list to stream); ``mode``
    (L or RGB) forces the channels, else they follow the files."""
    good, sizes, modes, bad = scan(entries, options.strict)
    notes: list[str] = []
    if bad:
        shown = "; ".join(bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
        log.warning("skipped %d unreadable image(s): %s", len(bad), shown)
        notes.append(f"skipped {len(bad)} unreadable image(s): {shown}")
    if not good:
        raise DataError(f"{root}: none of the {len(entries)} image files could be read; check the files")
    _check_classes(good, class_names)
    size = options.image_size or choose_size(sizes)
    distinct = len(set(sizes))
    if options.image_size is None:
        how = "all images have that size" if distinct == 1 else f"the most common of {distinct} sizes"
        notes.append(f"image size {size[0]}x{size[1]} ({how}; --image-size to change)")
    channels = mode or ("L" if all(m in GREY_MODES for m in modes) else "RGB")
    reading = _Reading(size, channels, mode is not None, class_names)
    pixels = len(good) * (1 if reading.mode == "L" else 3) * size[0] * size[1]
    budget = options.memory_budget
    x: np.ndarray | ImageFiles
    if options.stream if options.stream is not None else (budget is not None and pixels > budget):
        x, good, mode = _stream(good, reading, options.strict, notes)
        notes.append(f"streamed from disk ({pixels / 1e9:.2f} GB decoded is over the memory budget)")
    else:
        x, good, mode = _read_all(good, reading, options.strict, notes)
    notes.append(f"{'greyscale' if mode == 'L' else 'RGB'} (file modes: {dict(Counter(modes))})")
    for note in notes:
        log.info("%s: %s", name, note)
    return ImageSet(
        x=x,
        y=np.array([e.label for e in good], dtype=np.int64),
        class_names=class_names,
        name=name,
        paths=tuple(str(e.path) for e in good),
        notes=tuple(notes),
        source_fingerprint=files_fingerprint(good, root),
    )


@dataclass(frozen=True)
class _Reading:
    size: tuple[int, int]
    mode: str  # L or RGB
    forced: bool  # the mode was asked for, not read off the files
    class_names: tuple[str, ...]  # each must keep a readable image


def _stream(
    good: list[Entry], reading: _Reading, strict: bool, notes: list[str]
) -> tuple[ImageFiles, list[Entry], str]:
    # a header scan misses truncated JPEG data: decode each file once now, so that a bad file
    # is skipped here instead of failing every trial's data loader
    good, broken = _decodable(good, strict)
    for problem in broken:
        log.warning("skipped %s", problem)
        notes.append(f"skipped {problem}")
    _check_classes(good, reading.class_names)
    return ImageFiles(tuple(str(e.path) for e in good), reading.mode, reading.size), good, reading.mode


def _read_all(
    good: list[Entry], reading: _Reading, strict: bool, notes: list[str]
) -> tuple[np.ndarray, list[Entry], str]:
    arrays, kept = [], []
    mode, size = reading.mode, reading.size
    for e in good:  # decoding finds the corruption a header scan cannot
        try:
            arrays.append(read_image(e.path, mode, size))
            kept.append(e)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise _bomb_error(e.path, exc) from None
        except Exception as exc:
            problem = _describe_error(exc)
            if strict:
                raise DataError(f"{e.path}: {problem}; fix or remove the file, or drop --strict to skip it") from None
            log.warning("skipped %s (%s)", e.path, problem)
            notes.append(f"skipped {e.path} ({problem})")
    _check_classes(kept, reading.class_names)
    x = np.stack(arrays)
    if mode == "RGB" and not reading.forced and _looks_grey(x):
        # grey pictures stored as colour (WebP, GIF palettes): read them as Pillow's "L", as predict will
        mode = "L"
        x = np.stack([read_image(e.path, mode, size) for e in kept])
    return x, kept, mode
