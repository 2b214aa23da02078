"""Tiny Shakespeare (`<data_dir>/tinyshakespeare/input.txt`) as token streams for language modelling."""

from __future__ import annotations

import ml_collections
import numpy as np

from model_lib.data import text
from model_lib.data.base import Dataset, DatasetInfo
from model_lib.data.local.common import data_file, register_local

TRAIN_FRACTION = 0.9


@register_local("tiny_shakespeare", "tinyshakespeare/input.txt")
def load_tiny_shakespeare(cfg: ml_collections.ConfigDict) -> Dataset:
  """First 90% of the characters train, last 10% 'val' (also 'test'); splits are {'tokens': (L,) int32}.

  `data.text_slice = (a, b)` first keeps the fraction [a, b) of the file (e.g. pretrain on one half,
  fine-tune on the other); the character alphabet is always the whole file's, so slices share token ids.
  """
  with open(data_file(cfg, "tinyshakespeare", "input.txt", what="Tiny Shakespeare 'tinyshakespeare/input.txt'"),
            encoding="utf-8") as f:
    whole = f.read()
  a, b = cfg.get("text_slice", (0.0, 1.0))
  if not 0.0 <= a < b <= 1.0:
    raise ValueError(f"data.text_slice must be (a, b) with 0 <= a < b <= 1, got {(a, b)}.")
  corpus = whole[int(a * len(whole)):int(b * len(whole))]
  kind = cfg.get("tokenizer", "char")
  if kind not in ("char", "subword"):
    raise ValueError(f"tiny_shakespeare supports data.tokenizer='char' or 'subword', got '{kind}'.")
  cut = int(len(corpus) * TRAIN_FRACTION)
  # Characters are the corpus's alphabet (all of it, so 'val' never meets an unknown one); subwords are
  # learned from the training text only.
  tokenizer = text.tokenizer_from_config(cfg, whole if kind == "char" else corpus[:cut])
  train, val = (tokenizer.encode(t).astype(np.int32) for t in (corpus[:cut], corpus[cut:]))
  v = tokenizer.vocab_size
  info = DatasetInfo("tiny_shakespeare", "lm", v, vocab_size=v)
  return Dataset(info, {"train": {"tokens": train}, "val": {"tokens": val}, "test": {"tokens": val}}, tokenizer)
