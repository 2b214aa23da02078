"""k-fold cross-validation: train one run per fold, report mean ± std of every held-out metric."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import ml_collections
import numpy as np

from model_lib.data import Dataset, load_dataset
from model_lib.data.splits import kfold, stratified_kfold


def fold_datasets(dataset: Dataset, folds: int, seed: int) -> list[Dataset]:
  """Pools train+val and returns one Dataset per fold: the fold's complement trains, the fold is 'val' and 'test'.

  Classification folds are stratified; the dataset's own test split is left out entirely.
  """
  parts = [dataset.split(s) for s in ("train", "val") if s in dataset.splits]
  if "tokens" in parts[0]:
    raise ValueError("Cross-validation needs example-level data, not a token stream (language models).")
  pool = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
  y = pool["y"]
  classify = dataset.info.task in ("classification", "binary")
  splits = stratified_kfold(y, folds, seed) if classify else kfold(len(y), folds, seed)
  out = []
  for train_idx, held_idx in splits:
    held = {k: v[held_idx] for k, v in pool.items()}
    out.append(dataclasses.replace(dataset, splits={"train": {k: v[train_idx] for k, v in pool.items()},
                                                    "val": held, "test": held}))
  return out


def summarize(fold_metrics: list[dict[str, float]]) -> dict[str, dict[str, float]]:
  """{metric: {mean, std, values}} over folds (std with ddof=1, the sample standard deviation)."""
  keys = [k for k in fold_metrics[0] if all(isinstance(m.get(k), (int, float)) for m in fold_metrics)]
  out = {}
  for k in keys:
    values = np.asarray([m[k] for m in fold_metrics], np.float64)
    out[k] = {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
              "values": values.tolist()}
  return out


def cross_validate(config: ml_collections.ConfigDict, workdir: str, folds: int = 5,
                   show_progress: bool | None = None) -> dict[str, Any]:
  """Trains `folds` runs in `<workdir>/fold_<i>` and writes `<workdir>/crossval.json`."""
  from model_lib.train.trainer import train_and_evaluate  # Local: the trainer imports much of the library.

  if folds < 2:
    raise ValueError(f"--folds must be >= 2, got {folds}.")
  datasets = fold_datasets(load_dataset(config.data), folds, config.data.split_seed)
  results = []
  for i, ds in enumerate(datasets):
    summary = train_and_evaluate(config, os.path.join(workdir, f"fold_{i}"), dataset=ds, show_progress=show_progress)
    results.append(summary["test"])
  report = {"folds": folds, "num_examples": int(sum(d.num_examples("test") for d in datasets)),
            "metrics": summarize(results)}
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "crossval.json"), "w") as f:
    json.dump(report, f, indent=2)
  return report
