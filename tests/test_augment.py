"""Host-side image augmentation: determinism, crop/flip geometry, normalisation and mixup."""

from __future__ import annotations

import ml_collections
import numpy as np
import pytest

from model_lib.data import augment


def images(shape=(8, 32, 32, 3)):
  return np.random.default_rng(0).random(shape, dtype=np.float32)


def cfg(**kw):
  base = {"random_crop": 4, "flip": True, "normalize": True, "mixup_alpha": 0.0}
  return ml_collections.ConfigDict({**base, **kw})


def batch(shape=(8, 32, 32, 3)):
  return {"x": images(shape), "y": np.arange(shape[0], dtype=np.int32) % 10}


def test_same_seed_same_output_different_seed_different():
  a = augment.augment_batch(batch(), np.random.default_rng(1), cfg(mixup_alpha=0.4), "cifar10")
  b = augment.augment_batch(batch(), np.random.default_rng(1), cfg(mixup_alpha=0.4), "cifar10")
  c = augment.augment_batch(batch(), np.random.default_rng(2), cfg(mixup_alpha=0.4), "cifar10")
  for key in a:
    np.testing.assert_array_equal(a[key], b[key])
  assert not np.array_equal(a["x"], c["x"])


def test_flip_twice_is_identity():
  x = images()
  np.testing.assert_array_equal(augment.flip_horizontal(augment.flip_horizontal(x)), x)
  once = augment.random_flip(x, np.random.default_rng(5))
  np.testing.assert_array_equal(augment.random_flip(once, np.random.default_rng(5)), x)
  flipped = [not np.array_equal(once[i], x[i]) for i in range(len(x))]
  assert 0 < sum(flipped) < len(x)
  for i in np.flatnonzero(flipped):
    np.testing.assert_array_equal(once[i], x[i, :, ::-1])


@pytest.mark.parametrize("shape", [(8, 32, 32, 3), (5, 28, 28)])
def test_crop_keeps_shape_and_shifts_content(shape):
  x = images(shape) + 0.5  # No zeros in the image, so the padding is recognisable.
  out = augment.random_crop(x, 4, np.random.default_rng(0))
  assert out.shape == x.shape and out.dtype == x.dtype
  for i in range(shape[0]):
    # The crop is the image shifted by (dy, dx) in [-4, 4]: find the shift and check every real pixel.
    match = [(dy, dx) for dy in range(-4, 5) for dx in range(-4, 5)
             if np.array_equal(np.roll(x[i], (dy, dx), axis=(0, 1))[4:-4, 4:-4], out[i, 4:-4, 4:-4])]
    assert len(match) == 1
    dy, dx = match[0]
    padded_rows = out[i, :dy] if dy > 0 else out[i, out.shape[1] + dy:]
    assert (padded_rows == 0).all()


def test_normalize_uses_dataset_statistics():
  x = np.full((2, 4, 4, 3), 0.5, np.float32)
  out = augment.normalize(x, "cifar10")
  mean, std = (np.array(augment.DATASET_STATS["cifar10"][k]) for k in ("mean", "std"))
  np.testing.assert_allclose(out[0, 0, 0], (0.5 - mean) / std, rtol=1e-6)
  gray = augment.normalize(np.full((2, 28, 28), 0.1307, np.float32), "mnist")
  np.testing.assert_allclose(gray, 0, atol=1e-6)
  with pytest.raises(ValueError, match="no statistics for dataset 'svhn'"):
    augment.normalize(x, "svhn")
  b = batch()
  assert augment.normalize_batch(b, cfg(normalize=False), "cifar10") is b
  np.testing.assert_allclose(augment.normalize_batch(b, cfg(), "cifar10")["x"], augment.normalize(b["x"], "cifar10"))


def test_mixup_returns_both_labels_and_weight():
  b = batch()
  out = augment.augment_batch(b, np.random.default_rng(3),
                              cfg(random_crop=0, flip=False, normalize=False, mixup_alpha=1.0))
  lam = out["lam"]
  assert lam.shape == (8,) and lam.dtype == np.float32 and np.all(lam == lam[0]) and 0 < lam[0] < 1
  np.testing.assert_array_equal(out["y"], b["y"])
  partner = [int(np.flatnonzero(b["y"] == yb)[0]) if (b["y"] == yb).sum() == 1 else None for yb in out["y_b"]]
  for i, j in enumerate(partner):
    np.testing.assert_allclose(out["x"][i], lam[0] * b["x"][i] + (1 - lam[0]) * b["x"][j], rtol=1e-5, atol=1e-6)


def test_everything_off_is_identity():
  b = batch()
  out = augment.augment_batch(b, np.random.default_rng(0), cfg(random_crop=0, flip=False, normalize=False))
  assert set(out) == {"x", "y"}
  np.testing.assert_array_equal(out["x"], b["x"])
