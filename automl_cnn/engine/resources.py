"""How many trials run at once, and what each reserves: checked against what the cluster has.

A request that can never be placed is refused at once, in one line naming what exists (Ray
would otherwise keep the actor pending forever and the search would wait with it); more
workers than fit at once are capped, with a note. On an autoscaling cluster
(``--wait-for-resources``) the request stands as asked: the executor waits that long for its
workers to start, the live panel saying what it waits for, and then stops with an error.
"""

from __future__ import annotations

import logging

from automl_cnn.engine.config import SearchConfig
from automl_cnn.engine.session import Resources
from automl_cnn.errors import UserInputError

log = logging.getLogger("automl_cnn")


def plan_resources(cfg: SearchConfig, cluster: dict[str, float]) -> Resources:
    """Workers and GPUs per trial for ``cfg`` on a cluster with ``cluster`` resources (the
    totals, and ``node_CPU`` / ``node_GPU``: the most one node has, since a trial runs on one)."""
    cpus, gpus = float(cluster.get("CPU", 1)), float(cluster.get("GPU", 0))
    node_cpus, node_gpus = float(cluster.get("node_CPU", cpus)), float(cluster.get("node_GPU", gpus))
    gpus_per_trial = (
        cfg.cluster.gpus_per_trial if cfg.cluster.gpus_per_trial is not None else (1.0 if node_gpus >= 1 else 0.0)
    )
    where = "this machine" if cfg.cluster.executor == "inprocess" else "the Ray cluster"
    if cfg.cluster.wait_for_resources is not None and cfg.cluster.executor == "ray":  # an autoscaling cluster grows
        workers = cfg.cluster.workers or cfg.default_workers(max(cpus, cfg.cluster.cpus_per_trial), gpus)
        log.warning(
            "waiting up to %gs for %d worker(s) of %g CPU(s) and %g GPU(s) each (the cluster has %g CPUs, "
            "%g GPUs now)",
            cfg.cluster.wait_for_resources, workers, cfg.cluster.cpus_per_trial, gpus_per_trial, cpus, gpus,
        )  # fmt: skip
        return Resources(workers, gpus_per_trial)
    if cfg.cluster.cpus_per_trial > node_cpus:
        raise UserInputError(
            f"--cpus-per-trial {cfg.cluster.cpus_per_trial:g} is more than any node of {where} has "
            f"({node_cpus:g} CPUs); use --cpus-per-trial {max(1, int(node_cpus))} or add bigger nodes"
        )
    if gpus_per_trial > node_gpus:
        has = f"{node_gpus:g} GPUs on its largest node" if gpus else "no GPU"
        raise UserInputError(
            f"--gpus-per-trial {gpus_per_trial:g} is more than {where} has ({has}); "
            + ("drop --gpus-per-trial to train on CPUs" if not gpus else f"use at most {node_gpus:g}")
        )
    if cfg.cluster.executor == "inprocess" and cfg.cluster.workers is None:
        return Resources(1, gpus_per_trial)  # in one process trials take turns: one at a time is simpler
    workers = cfg.default_workers(cpus, gpus if gpus_per_trial > 0 else 0)
    fit = int(cpus // cfg.cluster.cpus_per_trial)
    if gpus_per_trial > 0:
        fit = min(fit, int(gpus // gpus_per_trial + 1e-9))
    if cfg.cluster.executor == "ray" and workers > fit:
        log.warning(
            "--workers %d capped to %d: %s has %g CPUs and %g GPUs for %g CPU(s) and %g GPU(s) per trial",
            workers, fit, where, cpus, gpus, cfg.cluster.cpus_per_trial, gpus_per_trial,
        )  # fmt: skip
        workers = fit
    return Resources(workers, gpus_per_trial)
