"""TFDS datasets read with `tfds.data_source` (array_record, no TensorFlow), and the `data.source` resolution.

TFDS data is looked up under data.data_dir (else env MODEL_LIB_DATA_DIR, else TFDS's own default,
~/tensorflow_datasets). Nothing is downloaded: a dataset that is not prepared raises an error that
says how to prepare it or which other source to use.
Splits follow the local readers: images become float32 in [0, 1] ((N, 28, 28) for grayscale, like
mnist.py); mnist/fashion_mnist keep the last data.val_size training images as 'val', the others a
seeded, stratified data.val_fraction of train. glue/sst2's official test labels are hidden, so its
'test' is the official validation split (872 sentences, the same as the local SST-2 dev set).
"""

from __future__ import annotations

import glob
import os
from typing import Any, Callable

import ml_collections
import numpy as np

from model_lib.data import embedded, text
from model_lib.data.base import Dataset, DatasetInfo, default_data_dir
from model_lib.data.local import LOCAL, has_local_files
from model_lib.data.registry import DATASETS
from model_lib.data.splits import train_val_split

Loader = Callable[[ml_collections.ConfigDict], Dataset]

# name -> how to turn it into a Dataset: 'image' sets have 'image'/'label'; text sets name their text feature.
TFDS_DATASETS: dict[str, dict[str, str]] = {
    "mnist": {"kind": "image", "val": "tail"},
    "fashion_mnist": {"kind": "image", "val": "tail"},
    "cifar10": {"kind": "image", "val": "fraction"},
    "imdb_reviews": {"kind": "text", "text_key": "text", "test": "test"},
    "glue/sst2": {"kind": "text", "text_key": "sentence", "test": "validation"},
}
SOURCES = ("auto", "tfds", "local", "embedded")


def _tfds(name: str = "") -> Any:
  # Imported on use: `import tensorflow_datasets` takes about half a second and most runs never need it.
  import tensorflow_datasets as tfds
  if name.startswith("glue/"):
    # Legacy builders such as glue register only once their module is imported.
    import tensorflow_datasets.text.glue  # noqa: F401
  return tfds


def tfds_data_dir(cfg: ml_collections.ConfigDict) -> str | None:
  """data.data_dir, else env MODEL_LIB_DATA_DIR, else None (TFDS's default)."""
  return cfg.get("data_dir", "") or default_data_dir() or None


def is_prepared(name: str, data_dir: str | None) -> bool:
  """Whether `name` is prepared under `data_dir` in a random-access format (array_record or parquet)."""
  if data_dir and not glob.glob(os.path.join(data_dir, name, "**", "dataset_info.json"), recursive=True):
    return False  # Skips importing TFDS (and its warnings about our local folders that share a name).
  tfds = _tfds(name)
  try:
    builder = tfds.builder(name, data_dir=data_dir or None)
    if not builder.is_prepared():
      return False
    return bool(builder.info.available_file_formats() & set(tfds.core.FileFormat.with_random_access()))
  except Exception:  # Unknown names, unreadable metadata: either way not usable here.
    return False


def _not_prepared_message(name: str, data_dir: str | None) -> str:
  where = data_dir or "~/tensorflow_datasets"
  alternative = " or use --config.data.source=local" if name in LOCAL else ""
  return (f"TFDS dataset '{name}' is not prepared as array_record under '{where}'. On a machine with internet run "
          f"`tfds build {name} --data_dir={where} --file_format=array_record` and copy the result into "
          f"'{where}'{alternative}.")


def tfds_arrays(name: str, split: str, data_dir: str | None) -> dict[str, Any]:
  """Every example of one split as {feature: stacked array (numbers) or list (text)}."""
  tfds = _tfds(name)
  try:
    source = tfds.data_source(name, split=split, data_dir=data_dir or None, download=False)
  except Exception as e:
    if not is_prepared(name, data_dir):
      raise FileNotFoundError(_not_prepared_message(name, data_dir)) from e
    raise
  examples = [source[i] for i in range(len(source))]
  out = {}
  for key in examples[0] if examples else ():
    values = [ex[key] for ex in examples]
    out[key] = [_as_str(v) for v in values] if _is_text(values[0]) else np.stack([np.asarray(v) for v in values])
  return out


def _is_text(v: Any) -> bool:
  return isinstance(v, (str, bytes)) or (isinstance(v, np.ndarray) and v.dtype.kind in "OSU")


def _as_str(v: Any) -> str:
  v = v.item() if isinstance(v, np.ndarray) else v
  return v.decode("utf-8") if isinstance(v, bytes) else str(v)


def _label_names(name: str, data_dir: str | None, num_classes: int) -> tuple[str, ...]:
  try:
    names = _tfds(name).builder(name, data_dir=data_dir or None).info.features["label"].names
    if len(names) == num_classes:
      return tuple(names)
  except Exception:  # Metadata is cosmetic here; fall back to the class ids.
    pass
  return tuple(str(c) for c in range(num_classes))


def _carve_val(x: Any, y: np.ndarray, cfg: ml_collections.ConfigDict) -> tuple[Any, Any, np.ndarray, np.ndarray]:
  """Seeded, stratified data.val_fraction of (x, y) -> (x_train, x_val, y_train, y_val); x may be a list."""
  train_idx, val_idx = train_val_split(y, cfg.get("val_fraction", 0.1), cfg.get("split_seed", 0))
  take = (lambda idx: [x[i] for i in idx]) if isinstance(x, list) else (lambda idx: x[idx])
  return take(train_idx), take(val_idx), y[train_idx], y[val_idx]


def _image_dataset(cfg: ml_collections.ConfigDict, name: str, spec: dict[str, str], data_dir: str | None) -> Dataset:
  raw = {s: tfds_arrays(name, s, data_dir) for s in ("train", "test")}

  def to_split(image: np.ndarray, label: np.ndarray) -> dict[str, np.ndarray]:
    x = image.astype(np.float32) / 255.0
    return {"x": x[..., 0] if x.shape[-1] == 1 else x, "y": label.astype(np.int32)}

  x_train, y_train = raw["train"]["image"], raw["train"]["label"]
  splits = {"test": to_split(raw["test"]["image"], raw["test"]["label"])}
  if spec["val"] == "tail" and cfg.get("val_size", 5000) > 0:
    n_val = cfg.get("val_size", 5000)
    splits["val"] = to_split(x_train[-n_val:], y_train[-n_val:])
    x_train, y_train = x_train[:-n_val], y_train[:-n_val]
  elif spec["val"] == "fraction" and cfg.get("val_fraction", 0.1) > 0:
    x_train, x_val, y_train, y_val = _carve_val(x_train, y_train, cfg)
    splits["val"] = to_split(x_val, y_val)
  splits["train"] = to_split(x_train, y_train)
  num_classes = 10
  info = DatasetInfo(name, "classification", num_classes, num_classes, _label_names(name, data_dir, num_classes))
  return Dataset(info, splits)


def _text_dataset(cfg: ml_collections.ConfigDict, name: str, spec: dict[str, str], data_dir: str | None) -> Dataset:
  raw = {s: tfds_arrays(name, s, data_dir) for s in ("train", spec["test"])}
  clean = lambda texts: [t.replace("<br />", " ") for t in texts]  # IMDB keeps HTML line breaks.
  texts = {"test": clean(raw[spec["test"]][spec["text_key"]])}
  labels = {"test": raw[spec["test"]]["label"].astype(np.int32)}
  x_train, y_train = clean(raw["train"][spec["text_key"]]), raw["train"]["label"].astype(np.int32)
  if cfg.get("val_fraction", 0.1) > 0:
    x_train, texts["val"], y_train, labels["val"] = _carve_val(x_train, y_train, cfg)
  texts["train"], labels["train"] = x_train, y_train
  splits, tokenizer = text.encode_splits(texts, labels, cfg)
  info = DatasetInfo(name, "binary", 1, 2, _label_names(name, data_dir, 2), vocab_size=tokenizer.vocab_size)
  return Dataset(info, splits, tokenizer)


def load_tfds(cfg: ml_collections.ConfigDict) -> Dataset:
  """data.name from TFDS (see the module docstring for splits); raises a clear error if not prepared."""
  name = cfg.name
  if name not in TFDS_DATASETS:
    raise ValueError(f"data.source='tfds' supports {sorted(TFDS_DATASETS)}, not '{name}'.")
  spec = TFDS_DATASETS[name]
  build = _image_dataset if spec["kind"] == "image" else _text_dataset
  return build(cfg, name, spec, tfds_data_dir(cfg))


for _name in TFDS_DATASETS:
  if _name not in DATASETS:  # Names with local files keep their local loader; resolve_source picks between them.
    DATASETS.register(_name)(load_tfds)


def _embedded_loader(name: str) -> Loader | None:
  if name in DATASETS and getattr(DATASETS.get(name), "__module__", "") == embedded.__name__:
    return DATASETS.get(name)
  return None


def resolve_source(cfg: ml_collections.ConfigDict) -> Loader:
  """The loader to call for data.name under data.source ('auto': tfds if prepared, else local files, else embedded)."""
  name, source = cfg.name, cfg.get("source", "auto")
  local_dir = cfg.get("data_dir", "") or default_data_dir()
  embedded_loader = _embedded_loader(name)
  if source == "tfds":
    if name not in TFDS_DATASETS:
      raise ValueError(f"data.source='tfds' supports {sorted(TFDS_DATASETS)}, not '{name}'.")
    return load_tfds
  if source == "local":
    if name not in LOCAL:
      raise ValueError(f"data.source='local' supports {sorted(LOCAL)}, not '{name}'.")
    return LOCAL[name][0]
  if source == "embedded":
    if embedded_loader is None:
      raise ValueError(f"data.source='embedded' has no dataset '{name}'; embedded datasets need no files: "
                       f"{sorted(n for n in DATASETS.names() if _embedded_loader(n))}.")
    return embedded_loader
  if source != "auto":
    raise ValueError(f"Unknown data.source '{source}'; choose one of {list(SOURCES)}.")
  if name in TFDS_DATASETS and is_prepared(name, tfds_data_dir(cfg)):
    return load_tfds
  if has_local_files(name, local_dir):
    return LOCAL[name][0]
  if embedded_loader is not None:
    return embedded_loader
  if name not in TFDS_DATASETS and name not in LOCAL:
    return DATASETS.get(name, key="data.name")  # Other registered datasets (e.g. synthetic) need no source.
  tried = []
  if name in TFDS_DATASETS:
    tried.append(_not_prepared_message(name, tfds_data_dir(cfg)))
  if name in LOCAL:
    tried.append(f"Local files '{LOCAL[name][1]}' are not under data_dir '{local_dir}'; point --config.data.data_dir "
                 f"(or env MODEL_LIB_DATA_DIR) at the folder that holds them.")
  raise FileNotFoundError(f"Dataset '{name}' is not available (data.source='auto'). " + " ".join(tried))
