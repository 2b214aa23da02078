"""In-memory datasets: named splits of aligned NumPy arrays plus what the model and task need to know."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """Static facts about a dataset that configure the model head and the task."""

  name: str
  task: str  # 'classification' | 'binary' | 'regression'
  num_outputs: int  # Width of the model's last layer.
  num_classes: int = 0  # 0 for regression.
  class_names: tuple[str, ...] = ()
  target_mean: float = 0.0  # Regression targets are standardised; metrics are reported in original units.
  target_std: float = 1.0
  vocab_size: int = 0  # Token datasets: size of the input vocabulary (id 0 is always PAD).


@dataclasses.dataclass(frozen=True)
class Dataset:
  """`splits[name] = {'x': (N, ...), 'y': (N, ...)}` for 'train', 'val' (may be absent) and 'test'."""

  info: DatasetInfo
  splits: dict[str, dict[str, np.ndarray]]
  tokenizer: Any = None  # Text datasets: the tokenizer (saved next to checkpoints so samples decode).

  def split(self, name: str) -> dict[str, np.ndarray]:
    if name not in self.splits:
      raise ValueError(f"Dataset '{self.info.name}' has no split '{name}'; available: {sorted(self.splits)}.")
    return self.splits[name]

  def num_examples(self, name: str) -> int:
    """Examples in a split; for token-stream (LM) splits, the number of tokens."""
    split = self.split(name)
    return len(split["tokens"] if "tokens" in split else next(iter(split.values())))


def default_data_dir() -> str:
  """The data dir used when `config.data.data_dir` is empty: env MODEL_LIB_DATA_DIR, else ''."""
  return os.environ.get("MODEL_LIB_DATA_DIR", "")


def require_file(path: str, what: str) -> str:
  """Returns `path` if it exists, else raises FileNotFoundError naming the data-dir fix."""
  if not os.path.exists(path):
    raise FileNotFoundError(
        f"{what} not found at '{path}'. Point --config.data.data_dir (or env MODEL_LIB_DATA_DIR) "
        f"at the folder that holds it.")
  return path
