"""CIFAR-10 subset (`<data_dir>/cifar10_subset/*.npz`): official train images 0-3,999 and test images 0-999."""

from __future__ import annotations

import ml_collections
import numpy as np

from model_lib.data.base import Dataset, DatasetInfo
from model_lib.data.local.common import data_file, register_local
from model_lib.data.splits import train_val_split

_FILES = {"train": "cifar10_train_first4000.npz", "test": "cifar10_test_first1000.npz"}


def images_to_splits(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                     cfg: ml_collections.ConfigDict) -> dict[str, dict[str, np.ndarray]]:
  """uint8 images -> float32 in [0, 1]; a seeded, stratified data.val_fraction of train becomes 'val'."""
  to_split = lambda x, y: {"x": x.astype(np.float32) / 255.0, "y": y.astype(np.int32)}
  splits = {"test": to_split(x_test, y_test)}
  val_fraction = cfg.get("val_fraction", 0.1)
  if val_fraction > 0:
    train_idx, val_idx = train_val_split(y_train, val_fraction, cfg.get("split_seed", 0))
    splits["val"] = to_split(x_train[val_idx], y_train[val_idx])
    x_train, y_train = x_train[train_idx], y_train[train_idx]
  splits["train"] = to_split(x_train, y_train)
  return splits


@register_local("cifar10", "cifar10_subset/cifar10_train_first4000.npz")
def load_cifar10(cfg: ml_collections.ConfigDict) -> Dataset:
  """(N, 32, 32, 3) float32 images, 10 classes; 'test' is the 1,000 official test images."""
  arrays = {}
  for split, fname in _FILES.items():
    with np.load(data_file(cfg, "cifar10_subset", fname, what=f"CIFAR-10 subset 'cifar10_subset/{fname}'")) as z:
      arrays[split] = (z["x"], z["y"], tuple(str(c) for c in z["class_names"]))
  splits = images_to_splits(*arrays["train"][:2], *arrays["test"][:2], cfg)
  return Dataset(DatasetInfo("cifar10", "classification", 10, 10, arrays["train"][2]), splits)
