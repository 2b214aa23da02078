"""Batches from in-memory arrays: a checkpointable shuffled train iterator and padded eval batches.

Training: every epoch is a fresh permutation drawn from `(seed, epoch)`, the last partial batch is
dropped (fixed shapes, no recompiles), and the iterator state is two integers, so a resumed run
sees exactly the batches an uninterrupted run would have seen.
Evaluation: every example exactly once, in order; the last batch is padded to full size and
carries `mask` (1 = real example, 0 = padding) so shapes never change.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

Arrays = dict[str, np.ndarray]


class TrainIterator:
  """Endless iterator over shuffled, fixed-size batches of `arrays` with JSON-able state."""

  def __init__(self, arrays: Arrays, batch_size: int, seed: int):
    self.arrays = arrays
    self.batch_size = batch_size
    self.seed = seed
    self.num_examples = len(next(iter(arrays.values())))
    self.steps_per_epoch = self.num_examples // batch_size
    if self.steps_per_epoch == 0:
      raise ValueError(f"data.batch_size={batch_size} is larger than the training split ({self.num_examples} "
                       f"examples); lower --config.data.batch_size.")
    self.epoch = 0
    self.index = 0  # Batches already produced in the current epoch.
    self._perm = self._permutation(0)

  def _permutation(self, epoch: int) -> np.ndarray:
    return np.random.default_rng([self.seed, epoch]).permutation(self.num_examples)

  def __iter__(self) -> "TrainIterator":
    return self

  def __next__(self) -> Arrays:
    if self.index >= self.steps_per_epoch:
      self.epoch, self.index = self.epoch + 1, 0
      self._perm = self._permutation(self.epoch)
    idx = self._perm[self.index * self.batch_size:(self.index + 1) * self.batch_size]
    self.index += 1
    return {k: v[idx] for k, v in self.arrays.items()}

  def get_state(self) -> dict[str, Any]:
    return {"epoch": self.epoch, "index": self.index, "seed": self.seed, "batch_size": self.batch_size,
            "num_examples": self.num_examples}

  def set_state(self, state: dict[str, Any]) -> None:
    for key in ("seed", "batch_size", "num_examples"):
      if state[key] != getattr(self, key):
        raise ValueError(f"Saved data-iterator state has {key}={state[key]} but this run has {getattr(self, key)}; "
                         f"the data or batch size changed since the checkpoint was written.")
    self.epoch, self.index = int(state["epoch"]), int(state["index"])
    self._perm = self._permutation(self.epoch)


def eval_batches(arrays: Arrays, batch_size: int) -> Iterator[Arrays]:
  """Yields ordered batches of exactly `batch_size`; the last is zero-padded and `mask` marks real rows."""
  n = len(next(iter(arrays.values())))
  for start in range(0, n, batch_size):
    stop = min(start + batch_size, n)
    batch = {}
    for k, v in arrays.items():
      chunk = v[start:stop]
      if stop - start < batch_size:
        pad = np.zeros((batch_size - (stop - start),) + v.shape[1:], v.dtype)
        chunk = np.concatenate([chunk, pad])
      batch[k] = chunk
    batch["mask"] = (np.arange(batch_size) < stop - start).astype(np.float32)
    yield batch
