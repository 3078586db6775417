"""automl-cnn against a plain sequential Optuna loop: same space, data and wall-clock budget.

    python benchmarks/search_mnist5k.py --budget 600

Prints, for each system, the held-out test accuracy it delivers and when (wall seconds from
start to a trained model), and the best validation accuracy over time. It is the first two
rows of ``search_efficiency.py`` on mnist5k (the same code, seed and budget).
"""

from __future__ import annotations

import sys

from search_efficiency import main

if __name__ == "__main__":
    main(["--datasets", "mnist5k", "--systems", "automl-cnn,tpe", *sys.argv[1:]])
