"""Cross-validation folds and the seeded train/val split."""

from __future__ import annotations

import numpy as np

from model_lib.data import splits


def test_stratified_kfold_disjoint_covering_and_balanced():
  y = np.repeat([0, 1, 2], [50, 31, 7])
  folds = splits.stratified_kfold(y, k=5, seed=0)
  assert len(folds) == 5
  val_all = np.concatenate([va for _, va in folds])
  np.testing.assert_array_equal(np.sort(val_all), np.arange(len(y)))  # Val folds partition the data.
  for tr, va in folds:
    assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == len(y)
    for c, total in zip(*np.unique(y, return_counts=True)):
      assert abs((y[va] == c).sum() - total / 5) < 1  # Within one example of the exact class share.


def test_stratified_kfold_is_seeded():
  y = np.tile([0, 1], 20)
  a, b, c = (splits.stratified_kfold(y, 4, seed) for seed in (0, 0, 1))
  assert all(np.array_equal(x[1], z[1]) for x, z in zip(a, b))
  assert not all(np.array_equal(x[1], z[1]) for x, z in zip(a, c))


def test_kfold_partitions():
  folds = splits.kfold(23, 4, seed=0)
  np.testing.assert_array_equal(np.sort(np.concatenate([va for _, va in folds])), np.arange(23))
  assert sorted(len(va) for _, va in folds) == [5, 6, 6, 6]


def test_train_val_split_stratifies_and_falls_back():
  y = np.repeat(np.arange(10), 40)
  tr, va = splits.train_val_split(y, 0.1, seed=0)
  assert len(va) == 40 and len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == 400
  assert (np.bincount(y[va]) == 4).all()
  tr, va = splits.train_val_split(np.array([0, 1, 2, 2, 2]), 0.2, seed=0)  # Too small to stratify.
  assert len(va) == 1 and len(tr) == 4
