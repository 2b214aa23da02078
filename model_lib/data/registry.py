"""Dataset registry: `config.data.name` -> a loader returning an in-memory `Dataset`."""

from __future__ import annotations

import ml_collections

from model_lib.data.base import Dataset
from model_lib.registry import Registry

DATASETS = Registry("dataset")


def load_dataset(data_cfg: ml_collections.ConfigDict) -> Dataset:
  """Loads the dataset named by `data_cfg.name` with the loader's own options from `data_cfg`."""
  return DATASETS.get(data_cfg.name, key="data.name")(data_cfg)
