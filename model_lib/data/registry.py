"""Dataset registry: `config.data.name` -> a loader returning an in-memory `Dataset`."""

from __future__ import annotations

import ml_collections

from model_lib.data.base import Dataset
from model_lib.registry import Registry

DATASETS = Registry("dataset")


def load_dataset(data_cfg: ml_collections.ConfigDict) -> Dataset:
  """Loads `data_cfg.name` from `data_cfg.source` (auto: tfds if prepared, else local files, else embedded).

  With `data.augment.normalize`, every split's inputs are normalised once here with the dataset's
  statistics, so training and evaluation see the same transformation.
  """
  from model_lib.data.augment import normalize_batch  # Local: these modules import this registry.
  from model_lib.data.tfds_source import resolve_source

  dataset = resolve_source(data_cfg)(data_cfg)
  augment_cfg = data_cfg.get("augment", {})
  if augment_cfg and augment_cfg.get("normalize", False):
    for split in dataset.splits.values():
      split.update(normalize_batch({"x": split["x"]}, augment_cfg, data_cfg.name))
  return dataset
