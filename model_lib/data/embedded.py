"""scikit-learn's bundled datasets (no files, no network) with fixed, seeded, stratified splits."""

from __future__ import annotations

import ml_collections
import numpy as np
from sklearn import datasets as skdatasets
from sklearn.model_selection import train_test_split

from model_lib.data.base import Dataset, DatasetInfo
from model_lib.data.registry import DATASETS


def split_train_val_test(x: np.ndarray, y: np.ndarray, val_fraction: float, test_fraction: float,
                         seed: int, stratify: bool) -> dict[str, dict[str, np.ndarray]]:
  """Seeded (stratified for classification) train/val/test split; val may be empty (then omitted)."""
  x_rest, x_test, y_rest, y_test = train_test_split(
      x, y, test_size=test_fraction, random_state=seed, stratify=y if stratify else None)
  splits = {"test": {"x": x_test, "y": y_test}}
  if val_fraction > 0:
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=val_fraction / (1 - test_fraction), random_state=seed,
        stratify=y_rest if stratify else None)
    splits["val"] = {"x": x_val, "y": y_val}
  else:
    x_train, y_train = x_rest, y_rest
  splits["train"] = {"x": x_train, "y": y_train}
  return splits


def _standardize(splits: dict[str, dict[str, np.ndarray]]) -> None:
  """Standardises features in place with train-split mean/std."""
  mean = splits["train"]["x"].mean(0)
  std = splits["train"]["x"].std(0) + 1e-8
  for s in splits.values():
    s["x"] = ((s["x"] - mean) / std).astype(np.float32)


def _fractions(cfg: ml_collections.ConfigDict) -> tuple[float, float, int]:
  return cfg.get("val_fraction", 0.1), cfg.get("test_fraction", 0.2), cfg.get("split_seed", 0)


@DATASETS.register("digits")
def load_digits(cfg: ml_collections.ConfigDict) -> Dataset:
  """8x8 handwritten digits (1,797 images, 10 classes), pixels scaled to [0, 1], shape (N, 8, 8)."""
  raw = skdatasets.load_digits()
  x = (raw.images / 16.0).astype(np.float32)
  y = raw.target.astype(np.int32)
  splits = split_train_val_test(x, y, *_fractions(cfg), stratify=True)
  info = DatasetInfo("digits", "classification", 10, 10, tuple(str(c) for c in range(10)))
  return Dataset(info, splits)


@DATASETS.register("breast_cancer")
def load_breast_cancer(cfg: ml_collections.ConfigDict) -> Dataset:
  """Wisconsin breast cancer (569 x 30 features, binary: 1 = benign), standardised features."""
  raw = skdatasets.load_breast_cancer()
  splits = split_train_val_test(raw.data.astype(np.float64), raw.target.astype(np.int32), *_fractions(cfg),
                                stratify=True)
  _standardize(splits)
  info = DatasetInfo("breast_cancer", "binary", 1, 2, tuple(str(n) for n in raw.target_names))
  return Dataset(info, splits)


@DATASETS.register("diabetes")
def load_diabetes(cfg: ml_collections.ConfigDict) -> Dataset:
  """Diabetes progression (442 x 10 features), standardised features and targets (train statistics)."""
  raw = skdatasets.load_diabetes(scaled=False)
  splits = split_train_val_test(raw.data.astype(np.float64), raw.target.astype(np.float64), *_fractions(cfg),
                                stratify=False)
  _standardize(splits)
  y_mean, y_std = float(splits["train"]["y"].mean()), float(splits["train"]["y"].std())
  for s in splits.values():
    s["y"] = ((s["y"] - y_mean) / y_std).astype(np.float32)
  return Dataset(DatasetInfo("diabetes", "regression", 1, target_mean=y_mean, target_std=y_std), splits)
