"""Language-model windows over one token stream: a resumable shuffled train iterator and eval windows.

Training: each epoch draws, from `(seed, epoch)`, a random offset in [0, seq_len) and a permutation
of the contiguous blocks that start there, so every epoch sees the stream cut at different places
while the number of blocks (and steps) stays fixed. `y` is `x` shifted by one token.
Evaluation: non-overlapping windows predict every token after the first exactly once; the last
window is padded and its padding carries weight 0.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Arrays = dict[str, np.ndarray]


class LMWindowIterator:
  """Endless iterator of {'x', 'y', 'weights'} (B, T) batches with the interface of `TrainIterator`."""

  def __init__(self, tokens: np.ndarray, seq_len: int, batch_size: int, seed: int, shard_index: int = 0,
               shard_count: int = 1):
    self.tokens = np.asarray(tokens, np.int32).reshape(-1)
    self.seq_len = seq_len
    self.batch_size = batch_size
    self.seed = seed
    self.num_tokens = len(self.tokens)
    # A block needs seq_len + 1 tokens; this count fits for every offset in [0, seq_len).
    self.num_blocks = max(self.num_tokens - seq_len, 0) // seq_len
    self.shard_index, self.shard_count = shard_index, shard_count
    self.steps_per_epoch = self.num_blocks // shard_count // batch_size  # Equal on every process.
    if self.steps_per_epoch == 0:
      raise ValueError(f"{self.num_tokens} tokens make {self.num_blocks} windows of data.seq_len={seq_len} "
                       f"({self.num_blocks // shard_count} on this process), fewer than data.batch_size={batch_size}; "
                       f"lower --config.data.batch_size or data.seq_len.")
    self.epoch = 0
    self.index = 0  # Batches already produced in the current epoch.
    self._offset, self._perm = self._epoch_order(0)

  def _epoch_order(self, epoch: int) -> tuple[int, np.ndarray]:
    rng = np.random.default_rng([self.seed, epoch])
    # Every process draws the same order and keeps its own stride of it, so no two share a block.
    return int(rng.integers(self.seq_len)), rng.permutation(self.num_blocks)[self.shard_index::self.shard_count]

  def __iter__(self) -> LMWindowIterator:
    return self

  def __next__(self) -> Arrays:
    if self.index >= self.steps_per_epoch:
      self.epoch, self.index = self.epoch + 1, 0
      self._offset, self._perm = self._epoch_order(self.epoch)
    blocks = self._perm[self.index * self.batch_size:(self.index + 1) * self.batch_size]
    self.index += 1
    starts = self._offset + blocks * self.seq_len
    chunk = self.tokens[starts[:, None] + np.arange(self.seq_len + 1)]
    return {"x": chunk[:, :-1], "y": chunk[:, 1:], "weights": np.ones((self.batch_size, self.seq_len), np.float32)}

  def get_state(self) -> dict[str, Any]:
    return {"epoch": self.epoch, "index": self.index, "seed": self.seed, "batch_size": self.batch_size,
            "seq_len": self.seq_len, "num_tokens": self.num_tokens}

  def set_state(self, state: dict[str, Any]) -> None:
    for key in ("seed", "batch_size", "seq_len", "num_tokens"):
      if state[key] != getattr(self, key):
        raise ValueError(f"Saved data-iterator state has {key}={state[key]} but this run has {getattr(self, key)}; "
                         f"the data, batch size or sequence length changed since the checkpoint was written.")
    self.epoch, self.index = int(state["epoch"]), int(state["index"])
    self._offset, self._perm = self._epoch_order(self.epoch)


def lm_eval_arrays(tokens: np.ndarray, seq_len: int) -> Arrays:
  """Non-overlapping (N, seq_len) windows covering the stream once; padded targets have weight 0."""
  tokens = np.asarray(tokens, np.int32).reshape(-1)
  num_targets = max(len(tokens) - 1, 0)
  n = -(-num_targets // seq_len)
  x = np.zeros(n * seq_len, np.int32)
  y = np.zeros(n * seq_len, np.int32)
  x[:num_targets] = tokens[:num_targets]
  y[:num_targets] = tokens[1:num_targets + 1]
  weights = (np.arange(n * seq_len) < num_targets).astype(np.float32)
  return {"x": x.reshape(n, seq_len), "y": y.reshape(n, seq_len), "weights": weights.reshape(n, seq_len)}
