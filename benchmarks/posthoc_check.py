"""Post-hoc logit adjustment, checked on validation: for each completed trial of an imbalance
benchmark search (a run folder kept with ``imbalance.py --keep DIR``), its validation accuracy,
its validation balanced accuracy, and the same with log(prior) taken off its logits.

    python benchmarks/posthoc_check.py DIR/accuracy-6 --seed 6 --difficulty standard --rare-share 0.1

Reads the trials' stored validation probabilities (``outputs/trial-N.probs.pt``); the split is
rebuilt from the task and seed as the search built it. Validation only: nothing here touches
the test split. A search whose trials were already scored adjusted (``--metric auto`` since
``training/posthoc.py``) shows the adjustment twice in the last column.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from baselines import markdown_table
from imbalance import task_data

from automl_cnn.data import split_data
from automl_cnn.data.bundle import log_prior as prior_offsets
from automl_cnn.metrics import score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--task", default="shapes-rare")
    parser.add_argument("--difficulty", default="hard")
    parser.add_argument("--rare-share", type=float, default=0.1)
    args = parser.parse_args()
    images, _ = task_data(args.task, args.rare_share, args.seed, args.difficulty)
    data = split_data(images, seed=args.seed).search_data()
    y = np.asarray(data.y_eval)
    log_prior = np.asarray(prior_offsets(np.asarray(data.y_train), data.num_classes))
    rows = []
    for line in (args.run / "trials.jsonl").read_text().splitlines():
        record = json.loads(line)
        path = args.run / "outputs" / f"trial-{record['number']}.probs.pt"
        if record["outcome"] != "completed" or not path.is_file():
            continue
        probs = torch.load(path, weights_only=False)
        p = np.asarray(probs[0] if isinstance(probs, (tuple, list)) else probs, dtype=np.float64)
        training = record["candidate"]["training"]
        loss = "weighted" if training.get("class_weighted") else "plain"
        loss += " + logit-adjusted" if training.get("logit_adjusted") else ""
        adjusted = (np.log(p + 1e-12) - log_prior).argmax(1)
        rows.append(
            (
                record["number"],
                loss,
                score("accuracy", p.argmax(1), y),
                score("balanced_accuracy", p.argmax(1), y),
                score("balanced_accuracy", adjusted, y),
            )
        )
    markdown_table(["trial", "loss", "val accuracy", "val balanced accuracy", "same, logits - log(prior)"], rows)


if __name__ == "__main__":
    main()
