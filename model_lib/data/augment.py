"""Host-side image augmentation on NumPy batches, deterministic given the `np.random.Generator`.

Order: random crop (zero padding, i.e. black) and horizontal flip on [0, 1] pixels, then
normalisation with the dataset's channel statistics, then mixup. Normalisation must also be applied
at evaluation: use `normalize_batch` there.

Mixup keeps integer labels and returns `(y_a, y_b, lam)` as batch keys: 'y' (= y_a, so accuracy
still compares against the dominant label), 'y_b' (the partner's label) and 'lam' ((B,) float32,
one value per batch). The mixup loss is `lam * loss(y) + (1 - lam) * loss(y_b)`, which works for
integer-label classification and binary tasks alike.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Batch = dict[str, np.ndarray]

# Per-channel mean/std of the training images on the [0, 1] scale.
DATASET_STATS = {
    "mnist": {"mean": (0.1307,), "std": (0.3081,)},
    "fashion_mnist": {"mean": (0.2860,), "std": (0.3530,)},
    "cifar10": {"mean": (0.4914, 0.4822, 0.4465), "std": (0.2470, 0.2435, 0.2616)},
}


def random_crop(x: np.ndarray, padding: int, rng: np.random.Generator) -> np.ndarray:
  """Zero-pads H and W of (B, H, W[, C]) by `padding` and crops a random H x W window per image."""
  b, h, w = x.shape[:3]
  pad = [(0, 0), (padding, padding), (padding, padding)] + [(0, 0)] * (x.ndim - 3)
  padded = np.pad(x, pad)
  dy, dx = rng.integers(0, 2 * padding + 1, size=(2, b))
  rows = (dy[:, None] + np.arange(h))[:, :, None]
  cols = (dx[:, None] + np.arange(w))[:, None, :]
  return padded[np.arange(b)[:, None, None], rows, cols]


def flip_horizontal(x: np.ndarray) -> np.ndarray:
  """Mirrors (B, H, W[, C]) images left-right."""
  return x[:, :, ::-1]


def random_flip(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """Flips each image left-right with probability 1/2."""
  flip = rng.random(len(x)) < 0.5
  return np.where(flip.reshape((-1,) + (1,) * (x.ndim - 1)), flip_horizontal(x), x)


def normalize(x: np.ndarray, dataset: str) -> np.ndarray:
  """(x - mean) / std per channel with `DATASET_STATS[dataset]`; (B, H, W) images use the one channel."""
  if dataset not in DATASET_STATS:
    raise ValueError(f"data.augment.normalize has no statistics for dataset '{dataset}'; known: "
                     f"{sorted(DATASET_STATS)}.")
  stats = DATASET_STATS[dataset]
  mean, std = np.asarray(stats["mean"], np.float32), np.asarray(stats["std"], np.float32)
  if x.ndim == 3:
    mean, std = mean.reshape(()), std.reshape(())
  return ((x - mean) / std).astype(np.float32)


def mixup(batch: Batch, alpha: float, rng: np.random.Generator) -> Batch:
  """Mixes each example with a random partner: x = lam x + (1 - lam) x[perm], adds 'y_b' and 'lam'."""
  lam = np.float32(rng.beta(alpha, alpha))
  perm = rng.permutation(len(batch["x"]))
  out = dict(batch)
  out["x"] = (lam * batch["x"] + (1 - lam) * batch["x"][perm]).astype(batch["x"].dtype)
  out["y_b"] = batch["y"][perm]
  out["lam"] = np.full(len(perm), lam, np.float32)
  return out


def augment_batch(batch: Batch, rng: np.random.Generator, cfg_augment: Any, dataset: str = "") -> Batch:
  """Applies data.augment's crop, flip, normalisation (needs `dataset`) and mixup to a training batch."""
  out = dict(batch)
  if cfg_augment.get("random_crop", 0) > 0:
    out["x"] = random_crop(out["x"], cfg_augment.get("random_crop"), rng)
  if cfg_augment.get("flip", False):
    out["x"] = random_flip(out["x"], rng)
  out = normalize_batch(out, cfg_augment, dataset)
  if cfg_augment.get("mixup_alpha", 0.0) > 0:
    out = mixup(out, cfg_augment.get("mixup_alpha"), rng)
  return out


def normalize_batch(batch: Batch, cfg_augment: Any, dataset: str) -> Batch:
  """The deterministic part for evaluation: normalises 'x' if data.augment.normalize, else returns `batch`."""
  if not cfg_augment.get("normalize", False):
    return batch
  return {**batch, "x": normalize(batch["x"], dataset)}
