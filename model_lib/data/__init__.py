"""Datasets by name (`config.data.name`) and the batch pipeline. Importing registers every dataset."""

from model_lib.data import embedded, local, mnist, tfds_source  # noqa: F401  (registration side effect)
from model_lib.data.base import Dataset, DatasetInfo
from model_lib.data.registry import DATASETS, load_dataset

__all__ = ["DATASETS", "Dataset", "DatasetInfo", "load_dataset"]
