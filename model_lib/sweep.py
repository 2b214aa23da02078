"""Hyper-parameter sweeps with Optuna: each trial is a normal run in its own workdir.

A search space maps config keys to specs:
  {"optimizer.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
   "model.dropout": {"type": "categorical", "choices": [0.0, 0.1, 0.3]},
   "data.batch_size": {"type": "int", "low": 16, "high": 128, "step": 16}}
Samplers: grid (categorical specs only; every combination), random, tpe.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
from typing import Any

import ml_collections

from model_lib.config import set_path

SAMPLERS = ("grid", "random", "tpe")


def load_space(path: str) -> dict[str, dict[str, Any]]:
  """A search space from a .py file (`get_space()`), .yaml/.yml or .json."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"Search-space file '{path}' not found (flag --space).")
  if path.endswith(".py"):
    import importlib.util

    spec = importlib.util.spec_from_file_location("sweep_space", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    space = module.get_space()
  elif path.endswith((".yaml", ".yml")):
    import yaml

    with open(path) as f:
      space = yaml.safe_load(f)
  else:
    with open(path) as f:
      space = json.load(f)
  for key, spec in space.items():
    if spec.get("type") not in ("float", "int", "categorical"):
      raise ValueError(f"Search space key '{key}': type must be float, int or categorical, got {spec.get('type')!r}.")
  return space


def _suggest(trial: Any, key: str, spec: dict[str, Any]) -> Any:
  if spec["type"] == "float":
    return trial.suggest_float(key, spec["low"], spec["high"], log=spec.get("log", False))
  if spec["type"] == "int":
    return trial.suggest_int(key, spec["low"], spec["high"], step=spec.get("step", 1), log=spec.get("log", False))
  return trial.suggest_categorical(key, list(spec["choices"]))


def run_sweep(config: ml_collections.ConfigDict, space: dict[str, dict[str, Any]], workdir: str, trials: int,
              metric: str, mode: str = "max", sampler: str = "tpe", seed: int = 0) -> dict[str, Any]:
  """Runs the trials; writes `<workdir>/sweep.json` (ranked), `sweep.md` (table) and `sweep.png`; returns the report.

  A trial's objective is the best `metric` on the eval split during its run (from metrics.jsonl).
  """
  import optuna

  from model_lib.train.trainer import train_and_evaluate
  from model_lib.train.writer import read_metrics

  if sampler not in SAMPLERS:
    raise ValueError(f"Unknown --sampler '{sampler}'; choose one of {list(SAMPLERS)}.")
  if mode not in ("min", "max"):
    raise ValueError(f"--mode must be min or max, got '{mode}'.")
  if sampler == "grid":
    if any(s["type"] != "categorical" for s in space.values()):
      raise ValueError("--sampler=grid needs categorical specs only (a list of choices per key).")
    grid = {k: list(s["choices"]) for k, s in space.items()}
    trials = min(trials, len(list(itertools.product(*grid.values()))))
    optuna_sampler = optuna.samplers.GridSampler(grid, seed=seed)
  elif sampler == "random":
    optuna_sampler = optuna.samplers.RandomSampler(seed=seed)
  else:
    optuna_sampler = optuna.samplers.TPESampler(seed=seed)
  optuna.logging.set_verbosity(optuna.logging.WARNING)
  study = optuna.create_study(direction="maximize" if mode == "max" else "minimize", sampler=optuna_sampler)
  rows = []

  def objective(trial: Any) -> float:
    cfg = copy.deepcopy(config)
    overrides = {k: _suggest(trial, k, s) for k, s in space.items()}
    for k, v in overrides.items():
      set_path(cfg, k, v, label="Search space key")
    trial_dir = os.path.join(workdir, f"trial_{trial.number:03d}")
    summary = train_and_evaluate(cfg, trial_dir, show_progress=False)
    evals = [r[metric] for r in read_metrics(trial_dir) if r["split"] == "eval" and isinstance(r.get(metric), float)]
    if not evals:
      raise ValueError(f"--metric '{metric}' was never logged on the eval split; choose one of the eval metrics.")
    value = max(evals) if mode == "max" else min(evals)
    rows.append({"trial": trial.number, "value": value, "overrides": overrides, "workdir": trial_dir,
                 "test": summary.get("test", {})})
    return value

  study.optimize(objective, n_trials=trials)
  ranked = sorted(rows, key=lambda r: r["value"], reverse=mode == "max")
  report = {"metric": metric, "mode": mode, "sampler": sampler, "trials": ranked, "best": ranked[0]}
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "sweep.json"), "w") as f:
    json.dump(report, f, indent=2)
  with open(os.path.join(workdir, "sweep.md"), "w") as f:
    f.write(results_table(report) + "\n")
  plot_sweep(rows, metric, mode, os.path.join(workdir, "sweep.png"))
  return report


def results_table(report: dict[str, Any]) -> str:
  """Markdown table of the trials, best first."""
  keys = list(report["trials"][0]["overrides"])
  lines = ["| rank | trial | " + " | ".join(keys) + f" | best eval {report['metric']} |",
           "|---|---|" + "---|" * len(keys) + "---|"]
  for rank, r in enumerate(report["trials"], 1):
    vals = " | ".join(f"{r['overrides'][k]:.4g}" if isinstance(r["overrides"][k], float) else str(r["overrides"][k])
                      for k in keys)
    lines.append(f"| {rank} | {r['trial']} | {vals} | {r['value']:.4f} |")
  return "\n".join(lines)


def plot_sweep(rows: list[dict[str, Any]], metric: str, mode: str, out_path: str) -> None:
  """Each trial's value and the best-so-far curve against the trial number."""
  import numpy as np
  from matplotlib.figure import Figure

  order = sorted(rows, key=lambda r: r["trial"])
  values = np.asarray([r["value"] for r in order])
  best = np.maximum.accumulate(values) if mode == "max" else np.minimum.accumulate(values)
  fig = Figure(figsize=(6, 4), dpi=100)
  ax = fig.add_subplot(1, 1, 1)
  ax.plot([r["trial"] for r in order], values, "o", label="trial")
  ax.plot([r["trial"] for r in order], best, "-", label="best so far")
  ax.set_xlabel("trial")
  ax.set_ylabel(f"best eval {metric}")
  ax.legend()
  ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(out_path)
