"""MNIST from the four official IDX files (`<data_dir>/mnist/*-idx?-ubyte[.gz]`)."""

from __future__ import annotations

import gzip
import os

import ml_collections
import numpy as np

from model_lib.data.base import Dataset, DatasetInfo, default_data_dir, require_file
from model_lib.data.registry import DATASETS

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: str) -> np.ndarray:
  """Reads an IDX file (optionally gzipped): big-endian header of dims, then uint8 data."""
  opener = gzip.open if path.endswith(".gz") else open
  with opener(path, "rb") as f:
    data = f.read()
  if data[0] != 0 or data[1] != 0 or data[2] != 0x08:
    raise ValueError(f"{path} is not an unsigned-byte IDX file (magic {data[:4].hex()}).")
  ndim = data[3]
  dims = np.frombuffer(data, ">u4", count=ndim, offset=4).astype(int)
  return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _find(folder: str, stem: str) -> str:
  for candidate in (stem + ".gz", stem):
    if os.path.exists(os.path.join(folder, candidate)):
      return os.path.join(folder, candidate)
  return require_file(os.path.join(folder, stem + ".gz"), f"MNIST file {stem}[.gz]")


def load_mnist_arrays(data_dir: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """{'train': (x uint8 (60000,28,28), y uint8 (60000,)), 'test': (10000 ...)} from `data_dir/mnist`."""
  folder = os.path.join(data_dir or default_data_dir(), "mnist")
  require_file(folder, "MNIST folder 'mnist/'")
  return {split: (read_idx(_find(folder, img)), read_idx(_find(folder, lbl))) for split, (img, lbl) in _FILES.items()}


@DATASETS.register("mnist")
def load_mnist(cfg: ml_collections.ConfigDict) -> Dataset:
  """MNIST scaled to [0, 1], (N, 28, 28) float32; the last `val_size` training images form 'val'."""
  arrays = load_mnist_arrays(cfg.get("data_dir", ""))
  val_size = cfg.get("val_size", 5000)
  to_split = lambda x, y: {"x": (x.astype(np.float32) / 255.0), "y": y.astype(np.int32)}
  x_train, y_train = arrays["train"]
  splits = {"test": to_split(*arrays["test"])}
  if val_size:
    splits["val"] = to_split(x_train[-val_size:], y_train[-val_size:])
    x_train, y_train = x_train[:-val_size], y_train[:-val_size]
  splits["train"] = to_split(x_train, y_train)
  return Dataset(DatasetInfo("mnist", "classification", 10, 10, tuple(str(c) for c in range(10))), splits)
