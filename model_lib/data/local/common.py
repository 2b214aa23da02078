"""The local-file dataset table and the helpers every local reader shares."""

from __future__ import annotations

import os
from typing import Callable

import ml_collections

from model_lib.data.base import Dataset, default_data_dir, require_file
from model_lib.data.registry import DATASETS

Loader = Callable[[ml_collections.ConfigDict], Dataset]
LOCAL: dict[str, tuple[Loader, str]] = {}  # name -> (loader, path under data_dir whose presence means "available").


def register_local(name: str, path: str) -> Callable[[Loader], Loader]:
  """Decorator: registers `name` in DATASETS and records `path` (relative to data_dir) as its files."""
  def wrap(fn: Loader) -> Loader:
    DATASETS.register(name)(fn)
    LOCAL[name] = (fn, path)
    return fn
  return wrap


def data_dir(cfg: ml_collections.ConfigDict) -> str:
  """`data.data_dir`, else env MODEL_LIB_DATA_DIR."""
  return cfg.get("data_dir", "") or default_data_dir()


def data_file(cfg: ml_collections.ConfigDict, *parts: str, what: str = "") -> str:
  """`<data_dir>/<parts...>`, raising the data-dir hint if it is missing."""
  path = os.path.join(data_dir(cfg), *parts)
  return require_file(path, what or f"Data file '{os.path.join(*parts)}'")


def has_local_files(name: str, dir_: str) -> bool:
  """Whether `name` has a local reader and its files exist under `dir_`."""
  return name in LOCAL and bool(dir_) and os.path.exists(os.path.join(dir_, LOCAL[name][1]))
