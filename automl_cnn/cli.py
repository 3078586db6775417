"""``automl-cnn``: the command line.

Bad input ends with one line on stderr (``error: ...``) and exit status 2; an interrupted search
exits 130. Everything else a search meets (a network that does not fit, NaN loss, a dead worker)
is recorded on its trial and the search goes on.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from automl_cnn.engine.config import PRUNERS, SAMPLERS, parse_duration
from automl_cnn.errors import AutoMLError, UserInputError


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record arrives."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _quiet_libraries() -> None:
    """Keep library chatter (progress bars, INFO lines, deprecation notes) off the console."""
    import warnings

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    for name in ("mlflow", "alembic", "ray", "optuna"):
        logging.getLogger(name).setLevel(logging.WARNING)
    ours = logging.getLogger("automl_cnn")
    if not any(isinstance(h, _StderrHandler) for h in ours.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("warning: %(message)s"))
        handler.setLevel(logging.WARNING)
        ours.addHandler(handler)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="mlflow")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _fraction_list(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(p) for p in text.replace("/", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three fractions like 0.7,0.15,0.15, got {text!r}") from None
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected three fractions like 0.7,0.15,0.15, got {text!r}")
    return parts  # type: ignore[return-value]


def _image_size(text: str) -> tuple[int, int]:
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size like 32 or 32x48, got {text!r}") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"expected a size like 32 or 32x48, got {text!r}")
    return parts[0], parts[1]


_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2, "g": 1024**3, "gb": 1024**3}


def _bytes(text: str) -> int:
    import re

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _SIZE_UNITS:
        raise argparse.ArgumentTypeError(f"expected a size like 512MB or 4GB, got {text!r}")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line plus a pointer to --help."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="automl-cnn", description="Search for a CNN: Optuna proposes, Ray trains, MLflow records.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("search", help="run a search and deliver the best model")
    s.add_argument(
        "--data",
        required=True,
        help="digits | mnist5k | a torchvision name (mnist, fashion-mnist, kmnist, cifar10, cifar100, svhn) | "
        "a folder with one sub-folder per class | a .csv manifest of path,label | a .npz with x and y",
    )
    s.add_argument("--test-data", help="your own test set (folder, .csv or .npz), kept out of the search")
    s.add_argument("--image-size", type=_image_size, help="resize every image, e.g. 32 or 32x48 (HxW)")
    s.add_argument("--strict", action="store_true", help="a corrupt or unreadable image is an error, not skipped")
    s.add_argument("--data-root", default="~/.cache/automl_cnn/torchvision", help="where torchvision datasets are")
    s.add_argument(
        "--download", action="store_true", help="let torchvision download a dataset missing from --data-root"
    )
    s.add_argument("--class-weights", action="store_true", help="weight the loss by inverse class frequency")
    s.add_argument(
        "--memory-budget",
        type=_bytes,
        default=2 * 1024**3,
        help="decoded bytes kept in memory (e.g. 2GB); more streams from disk",
    )
    mode = s.add_mutually_exclusive_group()
    mode.add_argument(
        "--stream", dest="stream", action="store_const", const=True, help="always stream images from disk"
    )
    mode.add_argument(
        "--in-memory", dest="stream", action="store_const", const=False, help="always load images into memory"
    )
    s.add_argument(
        "--space", default="default", help="a search-space YAML file, or a shipped name (default, tiny, residual)"
    )
    s.add_argument("--trials", type=_positive_int, help="the most trials to run")
    s.add_argument(
        "--time-budget", help="wall-clock budget for the whole run, e.g. 90s, 10m, 1h (default 10m without --trials)"
    )
    s.add_argument("--max-epochs", type=_positive_int, help="cap every trial's epochs")
    s.add_argument("--workers", type=_positive_int, help="trials at once (default: one per CPU core, or per GPU)")
    s.add_argument("--cpus-per-trial", type=float, default=1.0)
    s.add_argument("--gpus-per-trial", type=float, help="GPUs per trial; a fraction packs trials on one GPU")
    s.add_argument("--sampler", choices=SAMPLERS, default="tpe", help="Optuna sampler (default tpe)")
    s.add_argument("--pruner", choices=PRUNERS, default="asha", help="early stopping of weak trials (default asha)")
    s.add_argument("--seed", type=int, default=0, help="seeds the split, the sampler and every trial")
    s.add_argument("--split", type=_fraction_list, default=(0.7, 0.15, 0.15), help="train,val,test fractions")
    s.add_argument(
        "--warm-start",
        default="classics",
        help="presets enqueued first where they fit the space: classics (default), keras_mnist, lenet5, "
        "vgg_small, resnet_small (comma-separated), or none",
    )
    s.add_argument(
        "--objective",
        default="accuracy",
        help="accuracy, or accuracy plus any of params, flops, latency (e.g. accuracy,params) for a Pareto front",
    )
    s.add_argument(
        "--pick",
        help="which Pareto member to deliver: accuracy, or OBJECTIVE@TOLERANCE, e.g. params@0.005 (the default: "
        "fewest of the second objective within 0.5 points of the best accuracy)",
    )
    s.add_argument("--final-repeats", type=_positive_int, default=1, help="retrain the winner with N seeds")
    s.add_argument("--final-top-k", type=_positive_int, default=1, help="also retrain and test the next best trials")
    s.add_argument("--max-params", type=_positive_int, help="never train candidates with more parameters")
    s.add_argument("--max-flops", type=_positive_int, help="never train candidates with more FLOPs per image")
    s.add_argument("--max-latency-ms", type=float, help="never train candidates slower per image (1 CPU thread)")
    s.add_argument("--tracking-uri", help="MLflow tracking URI (default sqlite:///./mlflow.db)")
    s.add_argument("--experiment", default="automl-cnn", help="MLflow experiment name")
    s.add_argument("--model-name", help="registered model name (default automl-cnn-<data>)")
    s.add_argument("--out", type=Path, help="output folder (default runs/<data>-<time>)")
    s.add_argument("--ray-address", help="join an existing Ray cluster (e.g. auto or 10.0.0.5:6379)")
    s.add_argument(
        "--storage",
        help="Optuna storage: a PostgreSQL/MySQL/SQLite URL or redis:// (default: a journal file in the run folder)",
    )
    s.add_argument("--device", choices=("cpu", "cuda"), help="force the device inside workers")
    s.add_argument("--no-progress", action="store_true", help="plain log lines instead of the live panel")

    r = sub.add_parser("resume", help="continue a search whose driver stopped (killed, crashed, interrupted)")
    r.add_argument("run_dir", type=Path, help="the search's output folder")
    r.add_argument("--no-progress", action="store_true", help="plain log lines instead of the live panel")
    r.add_argument("--storage", help="the study's storage URL, when it holds a password (not kept in the folder)")

    pr = sub.add_parser("predict", help="label image files with a trained model")
    pr.add_argument("model", help="a search's output folder, or an MLflow URI such as models:/NAME@champion")
    pr.add_argument("images", nargs="+", type=Path, help="image files or folders of them")
    pr.add_argument("--tracking-uri", help="MLflow store for models:/ URIs (default sqlite:///./mlflow.db)")
    pr.add_argument("--top", type=_positive_int, default=1, help="show the K most likely classes")
    pr.add_argument("--json", action="store_true", help="one JSON object per image")

    ex = sub.add_parser("export", help="export a trained model to ONNX or TorchScript")
    ex.add_argument("model", help="a search's output folder, or an MLflow URI such as models:/NAME@champion")
    ex.add_argument("--format", choices=("onnx", "torchscript"), required=True)
    ex.add_argument("--out", type=Path, help="file to write (default: model.onnx / model.torchscript.pt)")
    ex.add_argument("--tracking-uri", help="MLflow store for models:/ URIs (default sqlite:///./mlflow.db)")

    u = sub.add_parser("ui", help="open the MLflow UI on the search's tracking store")
    u.add_argument("--tracking-uri", help="the store (default sqlite:///./mlflow.db)")
    u.add_argument("--host", default="127.0.0.1")
    u.add_argument("--port", type=int, default=5000)
    return p


def _cmd_search(args: argparse.Namespace) -> int:
    from automl_cnn.engine.config import SearchConfig
    from automl_cnn.engine.run import run_search

    cfg = SearchConfig(
        trials=args.trials,
        time_budget=parse_duration(args.time_budget),
        max_epochs=args.max_epochs,
        workers=args.workers,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        sampler=args.sampler,
        pruner=args.pruner,
        seed=args.seed,
        split=args.split,
        test_data=args.test_data,
        image_size=args.image_size,
        strict=args.strict,
        data_root=args.data_root,
        download=args.download,
        memory_budget=args.memory_budget,
        stream=args.stream,
        class_weights=args.class_weights,
        tracking_uri=args.tracking_uri,
        experiment=args.experiment,
        model_name=args.model_name,
        out=args.out,
        ray_address=args.ray_address,
        storage=args.storage,
        device=args.device,
        progress=False if args.no_progress else None,
        warm_start=args.warm_start,
        objectives=args.objective,  # type: ignore[arg-type]
        pick=args.pick,
        final_repeats=args.final_repeats,
        final_top_k=args.final_top_k,
        max_params=args.max_params,
        max_flops=args.max_flops,
        max_latency_ms=args.max_latency_ms,
    )
    result = run_search(args.data, args.space, cfg)
    print()
    print(result.summary())
    return 0


def _image_paths(items: list[Path]) -> list[Path]:
    from automl_cnn.data.files import is_image_name

    paths: list[Path] = []
    for item in items:
        if item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.is_file() and is_image_name(p))
            if not found:
                raise UserInputError(f"{item}: no image files in this folder")
            paths += found
        elif item.is_file() or item.is_symlink():
            paths.append(item)
        else:
            raise UserInputError(f"{item}: no such file; give image files or folders")
    return paths


def _cmd_predict(args: argparse.Namespace) -> int:
    import json

    import numpy as np

    from automl_cnn.data.files import read_image
    from automl_cnn.model.trained import load_model

    model = load_model(args.model, args.tracking_uri)
    paths = _image_paths(args.images)
    mode = "L" if model.input_shape[0] == 1 else "RGB"
    size = (model.input_shape[1], model.input_shape[2])
    images = []
    for p in paths:
        try:
            images.append(read_image(p, mode, size))
        except Exception as exc:
            raise UserInputError(f"{p}: cannot read this image ({exc.__class__.__name__}); give image files") from None
    probs = model.predict_proba(np.stack(images))
    for p, row in zip(paths, probs, strict=True):
        order = np.argsort(-row)[: args.top]
        if args.json:
            top = [{"label": model.class_names[i], "probability": float(row[i])} for i in order]
            print(
                json.dumps(
                    {"image": str(p), "label": top[0]["label"], "probability": top[0]["probability"], "top": top}
                )
            )
        else:
            print(f"{p}\t" + "\t".join(f"{model.class_names[i]}\t{row[i]:.4f}" for i in order))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from automl_cnn.model.export import export_model
    from automl_cnn.model.trained import load_model

    model = load_model(args.model, args.tracking_uri)
    default = "model.onnx" if args.format == "onnx" else "model.torchscript.pt"
    folder = Path(args.model)
    out = args.out or ((folder if folder.is_dir() else Path.cwd()) / default)
    print(export_model(model, args.format, out))
    return 0


def _cmd_resume(args: argparse.Namespace) -> int:
    from automl_cnn.engine.run import resume

    result = resume(args.run_dir, progress=False if args.no_progress else None, storage=args.storage)
    print()
    print(result.summary())
    return 0


def _cmd_ui(args: argparse.Namespace) -> int:
    from automl_cnn.services.tracking import local_artifact_root

    uri = args.tracking_uri or f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).exists():
        raise UserInputError(f"no MLflow store at {uri}; run a search first or pass --tracking-uri")
    if uri.startswith(("http://", "https://")):
        print(f"the MLflow UI of that server is at {uri}")
        return 0
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        uri,
        "--host",
        args.host,
        "--port",
        str(args.port),
    ]
    root = local_artifact_root(uri)
    if root is not None:
        cmd += ["--artifacts-destination", str(root)]
    print(f"MLflow UI on http://{args.host}:{args.port} (Ctrl-C to stop)", flush=True)
    os.execv(sys.executable, cmd)
    return 0  # pragma: no cover


def _interrupt_on_sigterm() -> None:
    """``kill PID`` ends a search like Ctrl-C: running trials are recorded as interrupted and
    their MLflow runs closed, instead of being left RUNNING."""
    import signal
    import threading

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_libraries()
    _interrupt_on_sigterm()
    handlers = {
        "search": _cmd_search,
        "resume": _cmd_resume,
        "predict": _cmd_predict,
        "export": _cmd_export,
        "ui": _cmd_ui,
    }
    try:
        return handlers[args.command](args)
    except UserInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except AutoMLError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
