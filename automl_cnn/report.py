"""Human-readable summaries of a model and a search: layer tables and the Markdown report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class LayerRow:
    name: str
    kind: str
    output_shape: tuple[int, ...]
    params: int


def layer_table(network: nn.Sequential, input_shape: tuple[int, int, int]) -> list[LayerRow]:
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


def architecture_markdown(network: nn.Sequential, input_shape: tuple[int, int, int]) -> str:
    rows = layer_table(network, input_shape)
    return markdown_table(
        ["layer", "type", "output shape", "parameters"],
        [[r.name, r.kind, "x".join(map(str, r.output_shape)), f"{r.params:,}"] for r in rows],
    )


def search_report(summary: dict[str, Any], network: nn.Sequential, input_shape: tuple[int, int, int]) -> str:
    """The Markdown report written beside the model."""
    m = summary
    lines = [
        f"# automl-cnn: {m['data']}",
        "",
        f"Best architecture: `{m['architecture']}`",
        "",
        "## Metrics",
        "",
        markdown_table(
            ["metric", "value"],
            [
                ["validation accuracy (search)", f"{m['val_accuracy']:.4f}"],
                ["test accuracy (held out)", m["test_accuracy_text"]],
                ["parameters", f"{m['params']:,}"],
                ["FLOPs per image", f"{m['flops']:,}"],
                ["trials", ", ".join(f"{k}: {v}" for k, v in m["counts"].items())],
                ["wall time", f"{m['wall_seconds']:.0f} s"],
            ],
        ),
        "",
        "## Training settings",
        "",
        markdown_table(["setting", "value"], [[k, v] for k, v in m["training"].items()]),
        "",
        "## Architecture",
        "",
        architecture_markdown(network, input_shape),
        "",
        "## Where things are",
        "",
        f"- MLflow: `{m['tracking_uri']}`, experiment `{m['experiment']}`, run `{m['parent_run_id']}`",
        f"- Registered model: `{m['model_uri']}` (version {m['model_version']})",
        f"- Data: {m['data']} (fingerprint `{m['fingerprint']}`, split seed {m['split_seed']})",
        "",
    ]
    return "\n".join(lines)
