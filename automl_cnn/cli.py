"""``automl-cnn``: the command line.

Bad input ends with one line on stderr (``error: ...``) and exit status 2; an interrupted search
exits 130. Everything else a search meets (a network that does not fit, NaN loss, a dead worker)
is recorded on its trial and the search goes on.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from automl_cnn.engine.config import SearchConfig
from automl_cnn.engine.settings import TrackingSettings
from automl_cnn.errors import AutoMLError, UserInputError
from automl_cnn.options import cli_option, field_default, help_text, positive_int


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


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line plus a pointer to --help."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")


def _add_settings(parser: argparse.ArgumentParser | argparse._ArgumentGroup, settings: type) -> None:
    """An option per field of the dataclass ``settings``, as its metadata declares (see
    :mod:`automl_cnn.options`), its default the field's (and said in its help); the value lands
    under the field's name."""
    for f in dataclasses.fields(settings):
        opt = cli_option(f)
        if opt is None:
            continue
        default = field_default(f)
        if opt.flag is not None:
            parser.add_argument(
                opt.flag,
                dest=f.name,
                default=default,
                type=opt.parse or str,  # text unless the setting parses it
                choices=opt.choices,
                metavar=opt.metavar,
                help=help_text(opt, default),
            )
        group = parser.add_mutually_exclusive_group() if len(opt.switches) > 1 else parser
        for sw in opt.switches:
            group.add_argument(
                sw.flag,
                dest=f.name,
                action="store_const",
                const=sw.value,
                default=default,
                help=help_text(opt, default, sw.help),
            )


SEARCH_USAGE = "automl-cnn search --data DATA [--space SPACE] [--time-budget T | --trials N] [options]"
SEARCH_EXAMPLES = """examples:
  automl-cnn search --data digits --space tiny --trials 8
  automl-cnn search --data ./photos --time-budget 1h --image-size 64 --objective accuracy,params
  automl-cnn search --data cifar10 --download --ray-address auto --gpus-per-trial 0.5 --time-budget 2h
"""


def _add_search(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``automl-cnn search``: one help section per settings group, budget and search first."""
    s = sub.add_parser(
        "search",
        help="run a search and deliver the best model",
        description="Search for the best CNN on --data within a budget (default 10 minutes); deliver it.",
        usage=SEARCH_USAGE,
        epilog=SEARCH_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    groups = {name: s.add_argument_group(name, SearchConfig.about(name)) for name in SearchConfig.groups()}
    groups["data"].add_argument(
        "--data",
        required=True,
        help="digits | mnist5k | a torchvision name (mnist, fashion-mnist, kmnist, cifar10, cifar100, svhn) | "
        "a folder with one sub-folder per class | a .csv manifest of path,label | a .npz with x and y (required)",
    )
    groups["search"].add_argument(
        "--space", default="default", help="a search-space YAML file, or a shipped name (default, tiny, residual)"
    )
    for name, settings in SearchConfig.groups().items():
        _add_settings(groups[name], settings)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="automl-cnn", description="Search for a CNN: Optuna proposes, Ray trains, MLflow records.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    _add_search(sub)

    r = sub.add_parser("resume", help="continue a search whose driver stopped, or give a finished one --more time")
    r.add_argument("run_dir", type=Path, help="the search's output folder")
    r.add_argument("--more", metavar="DURATION", help="a finished search's extra time (10m): search on, deliver again")
    r.add_argument("--no-progress", action="store_true", help="plain log lines instead of the live panel")
    r.add_argument("--storage", help="the study's storage URL, when it holds a password (not kept in the folder)")
    r.add_argument(
        "--tracking-uri",
        help="the MLflow URI, when it holds a password (not kept in the folder; or set MLFLOW_TRACKING_PASSWORD)",
    )
    r.add_argument(
        "--ray-address",
        help="the Ray cluster to continue on, instead of the recorded one (a new head after the old one was lost)",
    )

    pr = sub.add_parser("predict", help="label image files with a trained model")
    pr.add_argument("model", help="a search's output folder, or an MLflow URI such as models:/NAME@champion")
    pr.add_argument("images", nargs="+", type=Path, help="image files or folders of them")
    pr.add_argument("--tracking-uri", help="MLflow store for models:/ URIs (default sqlite:///./mlflow.db)")
    pr.add_argument("--top", type=positive_int, default=1, help="show the K most likely classes")
    pr.add_argument("--json", action="store_true", help="one JSON object per image")

    ex = sub.add_parser("export", help="export a trained model to ONNX or TorchScript")
    ex.add_argument("model", help="a search's output folder, or an MLflow URI such as models:/NAME@champion")
    ex.add_argument("--format", choices=("onnx", "torchscript"), required=True)
    ex.add_argument("--out", type=Path, help="file to write (default: model.onnx / model.torchscript.pt)")
    ex.add_argument("--tracking-uri", help="MLflow store for models:/ URIs (default sqlite:///./mlflow.db)")

    u = sub.add_parser("ui", help="open the MLflow UI on the trials of the searches")
    u.add_argument("--tracking-uri", help="the store (default sqlite:///./mlflow.db), or an MLflow server's URL")
    experiment = next(f for f in dataclasses.fields(TrackingSettings) if f.name == "experiment")
    u.add_argument("--experiment", default=field_default(experiment), help="the searches' MLflow experiment")
    u.add_argument("--host", default="127.0.0.1")
    u.add_argument("--port", type=int, default=5000)
    u.add_argument("--no-browser", action="store_true", help="only print the address (no browser opens)")
    return p


def _cmd_search(args: argparse.Namespace) -> int:
    from automl_cnn.app import run_search

    result = run_search(args.data, args.space, SearchConfig.from_cli(args))
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

    from automl_cnn.data.pixels import read_image
    from automl_cnn.deliver.loading import load_model

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
    from automl_cnn.deliver.loading import load_model
    from automl_cnn.model.export import export_model

    model = load_model(args.model, args.tracking_uri)
    default = "model.onnx" if args.format == "onnx" else "model.torchscript.pt"
    folder = Path(args.model)
    out = args.out or ((folder if folder.is_dir() else Path.cwd()) / default)
    print(export_model(model, args.format, out))
    return 0


def _cmd_resume(args: argparse.Namespace) -> int:
    from automl_cnn.app import resume

    progress = False if args.no_progress else None
    given = {k: getattr(args, k) for k in ("storage", "tracking_uri", "ray_address", "more")}
    result = resume(args.run_dir, progress=progress, **given)
    print()
    print(result.summary())
    return 0


def _url_host(host: str) -> str:
    """``host`` as a browser on this machine reaches it."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _trials_experiment(uri: str, name: str) -> tuple[str, bool]:
    """The id of experiment ``name`` in store ``uri``, and whether it holds the trials view."""
    from mlflow.tracking import MlflowClient

    from automl_cnn.services.tracking import SAVED_VIEW_TAG, TRIALS_VIEW, MlflowTracker, check_reachable

    check_reachable(uri)
    if MlflowClient(uri).get_experiment_by_name(name) is None:
        raise UserInputError(
            f"no MLflow experiment {name!r} in {uri}; run a search first, or pass the --experiment its search used"
        )
    tracker = MlflowTracker(uri, name)  # tags it for the UI, if no search of this version has yet
    tags = tracker.client.get_experiment(tracker.experiment_id).tags
    return tracker.experiment_id, SAVED_VIEW_TAG + TRIALS_VIEW in tags


def ui_command(args: argparse.Namespace) -> tuple[str, list[str] | None]:
    """The address of the experiment's trials in the MLflow UI (its runs table in Model-training
    mode, opening on the trials view where the experiment holds it), and the command that serves
    the UI: None when ``--tracking-uri`` is a server, whose own UI shows them."""
    import urllib.parse

    from automl_cnn.services.credentials import tracking_credentials
    from automl_cnn.services.tracking import TRIALS_VIEW, default_tracking_uri, local_artifact_root

    uri = tracking_credentials(args.tracking_uri or default_tracking_uri())  # a server's password: not printed
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).exists():
        raise UserInputError(f"no MLflow store at {uri}; run a search first or pass --tracking-uri")
    experiment_id, has_view = _trials_experiment(uri, args.experiment)
    query = {"workflowType": "machine_learning", **({"viewStateShareKey": TRIALS_VIEW} if has_view else {})}
    page = f"/#/experiments/{experiment_id}/runs?{urllib.parse.urlencode(query)}"
    if uri.startswith(("http://", "https://")):
        return uri.rstrip("/") + page, None
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri]
    cmd += ["--host", args.host, "--port", str(args.port)]
    root = local_artifact_root(uri)
    if root is not None:
        cmd += ["--artifacts-destination", str(root)]
    return f"http://{_url_host(args.host)}:{args.port}{page}", cmd


def _open_browser(url: str) -> None:
    """Show ``url`` in the user's browser when there is a graphical one; never a text browser (it
    would take over this terminal), never an error."""
    import webbrowser

    try:
        browser = webbrowser.get()
        if type(browser) is not webbrowser.GenericBrowser:  # lynx, w3m, ... are plain GenericBrowsers
            browser.open(url)
    except (webbrowser.Error, OSError):
        pass


def _serve(cmd: list[str], health: str, browse: str | None) -> int:
    """Run the MLflow UI until it stops or Ctrl-C; once it answers, open ``browse`` in a browser."""
    import subprocess
    import time
    import urllib.request

    proc = subprocess.Popen(cmd)
    try:
        deadline = time.monotonic() + 120
        while browse is not None and proc.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(health, timeout=2):
                    _open_browser(browse)
                    break
            except OSError:
                time.sleep(0.5)
        return proc.wait()
    except KeyboardInterrupt:  # Ctrl-C (or kill): the UI stops with us
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        return 0


def _cmd_ui(args: argparse.Namespace) -> int:
    from automl_cnn.services.tracking import TRIALS_SORT, TRIALS_VIEW

    url, cmd = ui_command(args)
    if TRIALS_VIEW in url:
        print(f"the trials of experiment {args.experiment!r}, best {TRIALS_SORT} first, grouped by dataset:")
        print(f"  {url}", flush=True)
    else:  # the view could not be saved in the experiment (no permission): two clicks instead
        print(f"the runs of experiment {args.experiment!r}: {url}")
        print(
            f"  to rank the trials: Sort -> {TRIALS_SORT}, descending; Columns -> {TRIALS_SORT}, params, "
            "flops, automl_cnn.outcome",
            flush=True,
        )
    browse = url if not args.no_browser and sys.stdout.isatty() else None
    if cmd is None:
        if browse is not None:
            _open_browser(browse)
        return 0
    print(f"MLflow UI on http://{_url_host(args.host)}:{args.port} (Ctrl-C to stop)", flush=True)
    return _serve(cmd, f"http://{_url_host(args.host)}:{args.port}/health", browse)


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
