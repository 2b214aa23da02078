"""UCI regression benchmarks with the standard 90/10 splits (`<data_dir>/uci_regression/<name>/`).

Registered as `uci/<name>`; data.uci_split picks the split (0-4). A seeded data.val_fraction of the
training rows becomes 'val' (set it to 0 for the published protocol, which trains on all of them).
Features and targets are standardised with the statistics of the rows trained on.
"""

from __future__ import annotations

import os

import ml_collections
import numpy as np

from model_lib.data.base import Dataset, DatasetInfo
from model_lib.data.local.common import data_dir, data_file, register_local

UCI_DATASETS = ("bostonHousing", "concrete", "energy", "wine-quality-red", "yacht", "kin8nm",
                "naval-propulsion-plant", "power-plant")


def _standardize(x: np.ndarray, train: np.ndarray) -> np.ndarray:
  # Some columns (naval) are constant in the training rows: centre them on that exact value (their float mean
  # differs from it by rounding) and leave the scale alone instead of dividing by a ~1e-16 std.
  constant = train.min(0) == train.max(0)
  mean = np.where(constant, train[0], train.mean(0))
  return ((x - mean) / np.where(constant, 1.0, train.std(0))).astype(np.float32)


def load_uci(cfg: ml_collections.ConfigDict, name: str) -> Dataset:
  """One UCI dataset's split data.uci_split: x (N, F) float32, y (N,) float32 standardised."""
  folder = os.path.join("uci_regression", name)
  read = lambda fname, **kw: np.loadtxt(data_file(cfg, folder, fname, what=f"UCI file '{folder}/{fname}'"), **kw)
  split = cfg.get("uci_split", 0)
  data = read("data.txt", ndmin=2)
  if not os.path.exists(os.path.join(data_dir(cfg), folder, f"index_train_{split}.txt")):
    raise ValueError(f"data.uci_split={split} has no index files in {folder}/; choose one of 0-4.")
  features = read("index_features.txt", dtype=int, ndmin=1)
  target = int(read("index_target.txt", dtype=int))
  train_idx = read(f"index_train_{split}.txt", dtype=int, ndmin=1)
  test_idx = read(f"index_test_{split}.txt", dtype=int, ndmin=1)
  rows = {"train": train_idx, "test": test_idx}
  val_fraction = cfg.get("val_fraction", 0.1)
  if val_fraction > 0:
    perm = np.random.default_rng([cfg.get("split_seed", 0), split]).permutation(train_idx)
    n_val = max(1, int(round(len(perm) * val_fraction)))
    rows["train"], rows["val"] = np.sort(perm[n_val:]), np.sort(perm[:n_val])
  x_train, y_train = data[rows["train"]][:, features], data[rows["train"], target]
  y_mean, y_std = float(y_train.mean()), float(y_train.std())
  splits = {s: {"x": _standardize(data[r][:, features], x_train),
                "y": ((data[r, target] - y_mean) / y_std).astype(np.float32)} for s, r in rows.items()}
  return Dataset(DatasetInfo(f"uci/{name}", "regression", 1, target_mean=y_mean, target_std=y_std), splits)


def _register(name: str) -> None:
  @register_local(f"uci/{name}", os.path.join("uci_regression", name, "data.txt"))
  def load(cfg: ml_collections.ConfigDict) -> Dataset:
    return load_uci(cfg, name)
  load.__doc__ = f"UCI '{name}', split data.uci_split, standardised (see load_uci)."


for _name in UCI_DATASETS:
  _register(_name)
