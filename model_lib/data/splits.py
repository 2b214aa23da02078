"""Cross-validation folds as index arrays."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split


def stratified_kfold(y: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
  """k seeded (train_idx, val_idx) folds; each class's count per val fold differs by at most one."""
  y = np.asarray(y).reshape(-1)
  folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)
  return [(np.sort(tr), np.sort(va)) for tr, va in folds]


def kfold(n: int, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
  """k seeded (train_idx, val_idx) folds of `n` examples (for regression, where there is nothing to stratify)."""
  folds = KFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(n))
  return [(np.sort(tr), np.sort(va)) for tr, va in folds]


def train_val_split(y: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Seeded (train_idx, val_idx) holding out `val_fraction`, stratified by `y` whenever every class allows it."""
  y = np.asarray(y).reshape(-1)
  idx = np.arange(len(y))
  n_val = max(1, int(round(len(y) * val_fraction)))
  counts = np.unique(y, return_counts=True)[1]
  # sklearn cannot stratify classes with one member or fewer held-out rows than classes (tiny or mocked data).
  stratify = y if counts.min() >= 2 and len(counts) <= n_val <= len(y) - len(counts) else None
  train_idx, val_idx = train_test_split(idx, test_size=n_val, random_state=seed, stratify=stratify)
  return np.sort(train_idx), np.sort(val_idx)
