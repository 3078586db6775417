"""Human-readable summaries of a model and a search: layer tables and the Markdown report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class LayerRow:
    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int


def layer_table(network: nn.Module, input_shape: tuple[int, int, int]) -> list[LayerRow]:
    """One row per leaf layer (a residual block is one row): output shape and parameters."""
    rows: list[LayerRow] = []
    hooks = []

    def visit(prefix: str, module: nn.Module) -> None:
        children = list(module.named_children())
        if not children or module.__class__.__name__ == "Residual":

            def hook(mod: nn.Module, _inp: Any, out: torch.Tensor, name: str = prefix) -> None:
                rows.append(
                    LayerRow(
                        name=name,
                        kind=mod.__class__.__name__,
                        output_shape=tuple(out.shape[1:]),
                        params=sum(p.numel() for p in mod.parameters()),
                    )
                )

            hooks.append(module.register_forward_hook(hook))
            return
        for child_name, child in children:
            visit(f"{prefix}.{child_name}" if prefix else child_name, child)

    visit("", network)
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            network(torch.zeros(1, *input_shape, device=next(network.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
        network.train(was_training)
    return rows


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1 else f"{value:,.3f}".rstrip("0").rstrip(".")
    return f"{value:,}" if isinstance(value, int) else str(value)


def _with_interval(acc: float, images: int) -> str:
    """The score and its 95% Wilson interval over the ``n`` images it was measured on."""
    from automl_cnn.deliver.result import with_interval

    return with_interval(acc, images) + (f" on {images} images" if images else "")


def _test_text(model: dict[str, Any]) -> str:
    """The delivered model's test score with its interval; several seeds add their mean ± std."""
    n, acc, text = model.get("test_images", 0), model.get("test_accuracy"), str(model["test_accuracy_text"])
    if not n or acc is None:
        return text
    return _with_interval(acc, n) + (f" (delivered model); this design: {text}" if "±" in text else "")


def tables(summary: dict[str, Any], network: nn.Module, input_shape: tuple[int, int, int]) -> list[Table]:
    """The report's tables, shared by the Markdown and the HTML report."""
    m = summary
    out = [
        Table(
            "Metrics",
            ["metric", "value"],
            [
                ["validation accuracy (search)", _with_interval(m["val_accuracy"], m.get("val_images", 0))],
                ["test accuracy (held out)", _test_text(m)],
                ["parameters", f"{m['params']:,}"],
                ["FLOPs per image", f"{m['flops']:,}"],
                ["latency per image (1 CPU thread)", f"{m.get('latency_ms') or 0:.2f} ms"],
                ["trials", ", ".join(f"{k}: {v}" for k, v in m["counts"].items())],
                ["wall time", f"{m['wall_seconds']:.0f} s"],
                ["registered model", f"{m['model_uri']} (version {m['model_version']}){_promotion(m)}"],
                ["MLflow", f"{m['tracking_uri']}, experiment {m['experiment']}, run {m['parent_run_id']}"],
                ["data", f"{m['data']} (fingerprint {m['fingerprint']}, split seed {m['split_seed']})"],
            ],
        ),
        Table("Training settings", ["setting", "value"], [[k, v] for k, v in m["training"].items()]),
    ]
    out += _delivered_tables(m)
    out += _per_class_tables(m)
    if m.get("pareto"):
        names = list(m["pareto"][0])
        rows = [[_fmt(row[n]) for n in names] for row in m["pareto"]]
        out.append(Table(f"Pareto front (delivered: {m['pick_rule']})", names, rows))
    if len(m.get("final_table", [])) > 1:
        rows = [
            [r["trial"], f"{r['val_accuracy']:.4f}", r["test_accuracy"], r["architecture"]] for r in m["final_table"]
        ]
        out.append(
            Table(
                "Final evaluation (retrained on train + half of validation)",
                ["trial", "val", "test", "architecture"],
                rows,
            )
        )
    layers = [
        [r.name, r.kind, "x".join(map(str, r.output_shape)), f"{r.params:,}"] for r in layer_table(network, input_shape)
    ]
    out.append(Table("Architecture", ["layer", "type", "output shape", "parameters"], layers))
    return out


def _per_class_tables(summary: dict[str, Any]) -> list[Table]:
    """Per class on the test split: precision and recall, then the confusion matrix normalised
    by row (up to 20 classes)."""
    found = summary.get("per_class")
    if not found:
        return []
    rows = [
        [c["name"], c["support"], c["predicted"], "n/a" if c["precision"] is None else f"{c['precision']:.4f}",
         f"{c['recall']:.4f}"]
        for c in found["classes"]
    ]  # fmt: skip
    title = f"Per class (test; balanced accuracy {found['balanced_accuracy']:.4f}, macro F1 {found['macro_f1']:.4f})"
    out = [Table(title, ["class", "test images", "predicted", "precision", "recall"], rows)]
    names = [c["name"] for c in found["classes"]]
    if len(names) <= 20:
        matrix = [[n, *(f"{v:.2f}" for v in row)] for n, row in zip(names, found["confusion_normalised"], strict=True)]
        out.append(
            Table("Confusion matrix (test, each true class's row sums to 1)", ["true \\ predicted", *names], matrix)
        )
    return out


def _delivered_tables(model: dict[str, Any]) -> list[Table]:
    """What was delivered (the members of an ensemble, or the winner) and which weights; then how
    it was chosen: one row per decision, in a fixed order, with its reason; and the warnings."""
    rows = model.get("delivered", [])
    if not rows:
        return []
    members = [
        [
            r["trial"],
            f"{r['weight']:.2f}",
            r["weights"],
            f"{r['val_accuracy'] or 0:.4f}",
            f"{r['params'] or 0:,}",
            r["architecture"],
        ]
        for r in rows
    ]
    header = ["trial", "weight", "weights delivered", "val", "parameters", "architecture"]
    out = [Table(f"Delivered: {model.get('kind', 'one network')}", header, members)]
    chosen = [[d["topic"], d["answer"], d["reason"], _compared(d)] for d in model.get("decisions", [])]
    if model.get("check_accuracy") is not None:
        check = _with_interval(model["check_accuracy"], model.get("check_images", 0))
        chosen.insert(0, ["held-out score", check, HELD_OUT_TEXT, ""])
    if model.get("training_length"):  # which epochs the search settled on (engine/search/pausing.py)
        length, _, why = model["training_length"].partition(": ")
        chosen.append(["training length", length, why, ""])
    chosen += [["warning", "", w, ""] for w in model.get("warnings", [])]
    if chosen:
        metric = model.get("metric", "accuracy")
        title = "How the delivered model was chosen" + ("" if metric == "accuracy" else f" (scores: {metric})")
        out.append(Table(title, ["question", "answer", "why", "compared"], chosen))
    return out


HELD_OUT_TEXT = "the delivered model on the held-out half of validation (images the final fit did not train on)"


def _compared(data: dict[str, Any]) -> str:
    """``trials 3, 5 0.9712, trial 3 alone 0.9680 on 312 images``"""
    pairs = list(zip(data.get("candidates", []), data.get("scores", []), strict=False))
    if not pairs:
        return ""
    images = f" on {data['images']} images" if data.get("images") else ""
    return ", ".join(f"{c} {s:.4f}" for c, s in pairs) + images


@dataclass(frozen=True)
class Table:
    title: str
    header: list[str]
    rows: list[list[Any]]


def search_report(summary: dict[str, Any], network: nn.Module, input_shape: tuple[int, int, int]) -> str:
    """The Markdown report written beside the model."""
    lines = [f"# automl-cnn: {summary['data']}", "", f"Best architecture: `{summary['architecture']}`", ""]
    for t in tables(summary, network, input_shape):
        lines += [f"## {t.title}", "", markdown_table(t.header, t.rows), ""]
    return "\n".join(lines)


def _h(text: Any) -> str:
    import html

    return html.escape(str(text))


def _html_table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{_h(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_h(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


TRIAL_COLUMNS = ["trial", "outcome", "val accuracy", "epochs", "parameters", "architecture", "reason"]


def html_report(
    summary: dict[str, Any],
    network: nn.Module,
    input_shape: tuple[int, int, int],
    records: list[Any],
    plots: dict[str, Path],
    out: Path,
) -> str:
    """One page (beside the PNGs it links) with the tables and pictures."""
    m = summary
    trials = [
        [
            r.number,
            r.outcome,
            "" if r.val_acc is None else f"{r.val_acc:.4f}",
            len(r.history),
            f"{r.profile.params:,}" if r.profile else "",
            r.candidate.architecture.describe(),
            r.reason,
        ]
        for r in records
    ]
    figures = "".join(
        f'<figure><a href="{_h(p.relative_to(out))}"><img src="{_h(p.relative_to(out))}" alt="{_h(name)}"></a>'
        f"<figcaption>{_h(name.replace('_', ' '))}</figcaption></figure>"
        for name, p in plots.items()
    )
    sections = "".join(
        f"<h2>{_h(t.title)}</h2>{_html_table(t.header, t.rows)}" for t in tables(m, network, input_shape)
    )
    style = (
        "body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:90%}"
        "figure{display:inline-block;margin:0.5em;vertical-align:top}img{max-width:560px;border:1px solid #ddd}"
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>automl-cnn: {_h(m["data"])}</title><style>{style}</style></head>
<body>
<h1>automl-cnn: {_h(m["data"])}</h1>
<p>Best architecture (trial {_h(m["best_trial"])}): <code>{_h(m["architecture"])}</code></p>
<h2>Pictures</h2>{figures}
{sections}
<h2>Trials</h2>{_html_table(TRIAL_COLUMNS, trials)}
</body></html>
"""


def _promotion(model: dict[str, Any]) -> str:
    """Why the version is champion or challenger (the registry's decision), if known."""
    reason = model.get("promotion_reason")
    return f": {reason}" if reason else ""
