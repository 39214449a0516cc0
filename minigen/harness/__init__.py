"""The run harness: one training loop, one run directory and one command line for every model
family.

    family.py    what a family is (the contract), the shared TrainConfig, the registry
    loop.py      fit(): the loop, checkpoints, resume, EMA, warm-up, clipping, anomaly guard
    rundir.py    the run directory's files: config.json, checkpoint, loss.csv/png, grids, npz
    progress.py  tqdm bar in a terminal, plain lines in a log; the Ctrl-C guard
    cli.py       ``minigen list | train FAMILY | sample RUN | eval RUN``, built from the registry

A family's own code lives in its folder (``minigen/diffusion/family.py``,
``minigen/vae/family.py``, ...).
"""
from __future__ import annotations

import os

from .family import FAMILIES, Batch, Family, TrainConfig, get_family, register
from .loop import TrainingAnomaly, fit

__all__ = ["FAMILIES", "Batch", "Family", "TrainConfig", "TrainingAnomaly", "fit", "get_family",
           "register", "load_run", "evaluate_run_dir", "family_of_run"]


def family_of_run(path: str) -> type:
    """The family class that made the run in ``path`` (from its config.json)."""
    from . import rundir
    cfg_path = os.path.join(path, rundir.CONFIG)
    if not os.path.isfile(cfg_path) or not os.path.isfile(os.path.join(path, rundir.CHECKPOINT)):
        raise FileNotFoundError(f"{path!r} is not a training run directory: it needs "
                                f"{rundir.CONFIG} and {rundir.CHECKPOINT} (made by minigen "
                                f"train FAMILY --out {path})")
    name = rundir.read_json(cfg_path).get("family")
    if name is None:
        raise ValueError(f"{cfg_path} names no family: a run made before the harness; retrain "
                         "it with this version")
    return get_family(name)


def load_run(path: str, device: str = "cpu", ema: bool = True):
    """The family object of the run in ``path``: its trained network as ``.model`` (EMA weights
    where the family keeps them, unless ema=False), ``.config`` (the family's TrainConfig),
    ``.metrics`` (metrics.json), ``.step``; ready to sample, evaluate or fine-tune."""
    return family_of_run(path).load(path, device=device, ema=ema)


def evaluate_run_dir(path: str, device: str = "cpu", seed: int = 0, progress: bool = True,
                     log=print, out: str = "eval.json", **opts) -> dict:
    """``minigen eval RUN``: the family's ``evaluate`` on the run's (EMA) weights; results go to
    RUN/``out`` and to the section of RUN/metrics.json named by its stem."""
    import json
    from . import rundir
    if os.path.basename(out) != out or not out.endswith(".json"):
        raise ValueError(f"out={out!r}: give a file name ending in .json (it goes inside RUN)")
    run = load_run(path, device=device)
    results = {**run.evaluate(seed=seed, progress=progress, log=log, **opts), "step": run.step}
    rundir.write_json(os.path.join(path, out), results)
    section = os.path.splitext(out)[0]
    rundir.update_metrics(path, section, results)
    log(json.dumps(results, indent=2))
    log(f"wrote {os.path.join(path, out)} and the {section!r} section of "
        f"{os.path.join(path, rundir.METRICS)}")
    return results
