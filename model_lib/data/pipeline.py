"""Batches from in-memory arrays: a checkpointable shuffled train iterator and padded eval batches.

Training: every epoch is a fresh seeded permutation, the last partial batch is dropped (fixed
shapes, no recompiles), and the iterator state is saved in the checkpoint, so a resumed run sees
exactly the batches an uninterrupted run would have seen.
Evaluation: every example exactly once, in order; the last batch is padded to full size and
carries `mask` (1 = real example, 0 = padding) so shapes never change.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Iterator

import grain
import ml_collections
import numpy as np

from model_lib.data.augment import augment_batch
from model_lib.data.base import Dataset
from model_lib.data.windows import LMWindowIterator, lm_eval_arrays

Arrays = dict[str, np.ndarray]


class TrainIterator:
  """Endless iterator over shuffled, fixed-size batches of `arrays`, built on a Grain MapDataset.

  Pipeline: indices [this process's shard] -> shuffle(seed) -> batch(drop remainder) -> repeat
  (Grain reshuffles every epoch) -> gather rows (vectorised) -> optional `transform(batch, rng)`
  with a per-batch `np.random.Generator` (deterministic per seed and step) -> prefetch threads.
  The state is Grain's position plus what must match on restore.
  """

  def __init__(self, arrays: Arrays, batch_size: int, seed: int, transform: Callable | None = None,
               shard_index: int = 0, shard_count: int = 1, num_threads: int = 2):
    self.arrays = arrays
    self.batch_size = batch_size
    self.seed = seed
    self.num_examples = len(next(iter(arrays.values())))
    indices = grain.MapDataset.range(self.num_examples)[shard_index::shard_count]
    self.steps_per_epoch = len(indices) // batch_size
    if self.steps_per_epoch == 0:
      raise ValueError(f"data.batch_size={batch_size} is larger than the training split ({len(indices)} examples "
                       f"on this process); lower --config.data.batch_size.")
    ds = indices.shuffle(seed=seed).batch(batch_size, drop_remainder=True).repeat(None).map(self._gather)
    if transform is not None:
      ds = ds.random_map(transform, seed=seed)
    self._ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=2 * num_threads))
    self._it = iter(self._ds)

  def _gather(self, idx: np.ndarray) -> Arrays:
    return {k: v[idx] for k, v in self.arrays.items()}

  def __iter__(self) -> "TrainIterator":
    return self

  def __next__(self) -> Arrays:
    return next(self._it)

  def get_state(self) -> dict[str, Any]:
    return {"grain": self._it.get_state(), "seed": self.seed, "batch_size": self.batch_size,
            "num_examples": self.num_examples}

  def set_state(self, state: dict[str, Any]) -> None:
    for key in ("seed", "batch_size", "num_examples"):
      if state[key] != getattr(self, key):
        raise ValueError(f"Saved data-iterator state has {key}={state[key]} but this run has {getattr(self, key)}; "
                         f"the data or batch size changed since the checkpoint was written.")
    self._it.set_state(state["grain"])


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


def make_train_iterator(dataset: Dataset, data_cfg: ml_collections.ConfigDict, seed: int, shard_index: int = 0,
                        shard_count: int = 1) -> TrainIterator | LMWindowIterator:
  """The training iterator for a dataset: LM windows over a token stream, else shuffled array batches."""
  train = dataset.split("train")
  if "tokens" in train:
    return LMWindowIterator(train["tokens"], data_cfg.seq_len, data_cfg.batch_size, seed, shard_index, shard_count)
  aug = data_cfg.get("augment", ml_collections.ConfigDict())
  transform = None
  if dataset.info.task == "mlm":  # Fresh masks every time a batch is drawn (deterministic per seed and step).
    from model_lib.data.mlm import MASK_TOKEN, mask_batch

    transform = functools.partial(mask_batch, mask_id=int(dataset.tokenizer.encode(MASK_TOKEN)[0]),
                                  vocab_size=dataset.info.vocab_size)
    return TrainIterator(train, data_cfg.batch_size, seed, transform, shard_index, shard_count)
  if aug.get("random_crop", 0) or aug.get("flip", False) or aug.get("mixup_alpha", 0.0):
    random_only = {**aug.to_dict(), "normalize": False}  # Normalisation already happened at load time.
    transform = functools.partial(augment_batch, cfg_augment=random_only, dataset=data_cfg.name)
  return TrainIterator(train, data_cfg.batch_size, seed, transform, shard_index, shard_count)


def eval_arrays(dataset: Dataset, split: str, data_cfg: ml_collections.ConfigDict) -> Arrays:
  """Arrays to evaluate a split on: LM streams become non-overlapping windows covering every token once."""
  arrays = dataset.split(split)
  return lm_eval_arrays(arrays["tokens"], data_cfg.seq_len) if "tokens" in arrays else arrays


def steps_per_epoch(dataset: Dataset, data_cfg: ml_collections.ConfigDict, shard_count: int = 1) -> int:
  """Training steps in one pass over the train split (LM: over its token stream in seq_len windows)."""
  train = dataset.split("train")
  if "tokens" in train:
    return (len(train["tokens"]) - 1) // shard_count // data_cfg.seq_len // data_cfg.batch_size
  return len(next(iter(train.values()))) // shard_count // data_cfg.batch_size


def sample_inputs(dataset: Dataset, data_cfg: ml_collections.ConfigDict) -> np.ndarray:
  """A batch of model inputs with the training shapes and dtype (used to initialise parameters)."""
  train = dataset.split("train")
  if "tokens" in train:
    return np.zeros((data_cfg.batch_size, data_cfg.seq_len), np.int32)
  return train["x"][: data_cfg.batch_size]
