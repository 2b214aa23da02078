"""Stanford Sentiment Treebank, sentence level (`<data_dir>/sst2/stsa.{binary,fine}.{train,dev,test}`)."""

from __future__ import annotations

import ml_collections
import numpy as np

from model_lib.data import text
from model_lib.data.base import Dataset, DatasetInfo
from model_lib.data.local.common import data_file, register_local

SST2_CLASSES = ("negative", "positive")
SST5_CLASSES = ("very negative", "negative", "neutral", "positive", "very positive")
_SPLITS = {"train": "train", "val": "dev", "test": "test"}


def read_sst(path: str) -> tuple[list[str], np.ndarray]:
  """Sentences and int32 labels from lines of '<label> <tokenised sentence>'."""
  texts, labels = [], []
  with open(path, encoding="utf-8") as f:
    for line in f:
      if line.strip():
        labels.append(int(line[0]))
        texts.append(line[2:].rstrip("\n"))
  return texts, np.array(labels, np.int32)


def _load(cfg: ml_collections.ConfigDict, stem: str, name: str, task: str, classes: tuple[str, ...]) -> Dataset:
  texts, labels = {}, {}
  for split, suffix in _SPLITS.items():
    path = data_file(cfg, "sst2", f"{stem}.{suffix}", what=f"SST file 'sst2/{stem}.{suffix}'")
    texts[split], labels[split] = read_sst(path)
  splits, tokenizer = text.encode_splits(texts, labels, cfg)
  num_outputs = 1 if task == "binary" else len(classes)
  info = DatasetInfo(name, task, num_outputs, len(classes), classes, vocab_size=tokenizer.vocab_size)
  return Dataset(info, splits, tokenizer)


@register_local("sst2", "sst2/stsa.binary.train")
def load_sst2(cfg: ml_collections.ConfigDict) -> Dataset:
  """SST-2: 6,920 / 872 / 1,821 sentences (train / val = dev / test), binary, ids padded to data.max_len."""
  return _load(cfg, "stsa.binary", "sst2", "binary", SST2_CLASSES)


register_local("glue/sst2", "sst2/stsa.binary.train")(load_sst2)


@register_local("sst5", "sst2/stsa.fine.train")
def load_sst5(cfg: ml_collections.ConfigDict) -> Dataset:
  """SST-5: 8,544 / 1,101 / 2,210 sentences (train / val = dev / test), 5 classes, ids padded to data.max_len."""
  return _load(cfg, "stsa.fine", "sst5", "classification", SST5_CLASSES)


@register_local("sst_mlm", "sst2/stsa.fine.train")
def load_sst_mlm(cfg: ml_collections.ConfigDict) -> Dataset:
  """Masked-LM pretraining text: the SST-2 and SST-5 *train* sentences (deduplicated), SST-2 dev for evaluation.

  Word vocabulary built on that train text with a final '<mask>' token; evaluation masks are fixed by
  data.split_seed, training masks are drawn afresh per batch (see model_lib.data.mlm).
  """
  from model_lib.data.mlm import MASK_TOKEN, mask_tokens

  train = list(dict.fromkeys(read_sst(data_file(cfg, "sst2", "stsa.binary.train"))[0]
                             + read_sst(data_file(cfg, "sst2", "stsa.fine.train"))[0]))
  dev = read_sst(data_file(cfg, "sst2", "stsa.binary.dev"))[0]
  if cfg.get("tokenizer_path", ""):
    tokenizer = text.load_tokenizer(cfg.tokenizer_path)
  else:
    base = text.WordVocab.build(train, max_size=cfg.get("vocab_size", 10000) - 1, lowercase=cfg.get("lowercase", True))
    tokenizer = text.WordVocab(base.words + [MASK_TOKEN], base.lowercase)
  mask_id = int(tokenizer.encode(MASK_TOKEN)[0])
  max_len = cfg.get("max_len", 64)
  x_train = text.pad_to_length(tokenizer.encode_batch(train), max_len)[0]
  x_dev = text.pad_to_length(tokenizer.encode_batch(dev), max_len)[0]
  held = mask_tokens(x_dev, np.random.default_rng(cfg.get("split_seed", 0)), mask_id, tokenizer.vocab_size)
  info = DatasetInfo("sst_mlm", "mlm", tokenizer.vocab_size, vocab_size=tokenizer.vocab_size)
  return Dataset(info, {"train": {"x": x_train}, "val": held, "test": held}, tokenizer)
