"""TFDS through `tfds.data_source` (mocked, no files), the not-prepared error, and `data.source` resolution."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from model_lib.config import base_config
from model_lib.data import embedded, local, tfds_source
from model_lib.data.base import default_data_dir


def data_cfg(name, data_dir, **overrides):
  cfg = base_config().data
  cfg.name = name
  cfg.data_dir = str(data_dir)
  cfg.update(overrides)
  return cfg


def test_mock_mnist_end_to_end(tmp_path):
  with tfds.testing.mock_data(num_examples=24):
    ds = tfds_source.load_tfds(data_cfg("mnist", tmp_path, val_size=4))
  assert ds.split("train")["x"].shape == (20, 28, 28) and ds.split("val")["x"].shape == (4, 28, 28)
  assert ds.split("test")["x"].shape == (24, 28, 28)
  for split in ds.splits.values():
    assert split["x"].dtype == np.float32 and 0 <= split["x"].min() and split["x"].max() <= 1
    assert split["y"].dtype == np.int32 and 0 <= split["y"].min() and split["y"].max() < 10
  assert ds.info.task == "classification" and ds.info.num_classes == 10


def test_mock_cifar10_and_raw_arrays(tmp_path):
  with tfds.testing.mock_data(num_examples=30):
    raw = tfds_source.tfds_arrays("cifar10", "train", str(tmp_path))
    ds = tfds_source.load_tfds(data_cfg("cifar10", tmp_path, val_fraction=0.2))
  assert raw["image"].shape == (30, 32, 32, 3) and raw["image"].dtype == np.uint8 and raw["label"].shape == (30,)
  assert ds.split("train")["x"].shape == (24, 32, 32, 3) and ds.num_examples("val") == 6
  assert ds.num_examples("test") == 30


@pytest.mark.parametrize("name", ["imdb_reviews", "glue/sst2"])
def test_mock_text_end_to_end(tmp_path, name):
  with tfds.testing.mock_data(num_examples=20):
    ds = tfds_source.load_tfds(data_cfg(name, tmp_path, max_len=12, vocab_size=50, val_fraction=0.25))
  assert ds.info.task == "binary" and ds.info.num_outputs == 1
  assert ds.num_examples("train") == 15 and ds.num_examples("val") == 5 and ds.num_examples("test") == 20
  for split in ds.splits.values():
    assert split["x"].shape[1] == 12 and split["x"].dtype == np.int32 and split["x"].max() < ds.info.vocab_size
  assert ds.tokenizer is not None and ds.info.vocab_size == ds.tokenizer.vocab_size


def test_not_prepared_gives_the_fix(tmp_path):
  assert not tfds_source.is_prepared("mnist", str(tmp_path))
  with pytest.raises(FileNotFoundError, match="tfds build fashion_mnist --data_dir="):
    tfds_source.load_tfds(data_cfg("fashion_mnist", tmp_path))
  with pytest.raises(FileNotFoundError, match="source=local"):
    tfds_source.load_tfds(data_cfg("cifar10", tmp_path))


def test_resolve_source_explicit(tmp_path):
  assert tfds_source.resolve_source(data_cfg("cifar10", tmp_path, source="tfds")) is tfds_source.load_tfds
  assert tfds_source.resolve_source(data_cfg("cifar10", tmp_path, source="local")) is local.LOCAL["cifar10"][0]
  assert tfds_source.resolve_source(data_cfg("digits", tmp_path, source="embedded")) is embedded.load_digits
  with pytest.raises(ValueError, match="data.source='tfds' supports"):
    tfds_source.resolve_source(data_cfg("sst5", tmp_path, source="tfds"))
  with pytest.raises(ValueError, match="data.source='embedded' has no dataset 'mnist'"):
    tfds_source.resolve_source(data_cfg("mnist", tmp_path, source="embedded"))
  with pytest.raises(ValueError, match="Unknown data.source 'web'"):
    tfds_source.resolve_source(data_cfg("mnist", tmp_path, source="web"))


def test_resolve_source_auto(tmp_path, monkeypatch):
  assert tfds_source.resolve_source(data_cfg("digits", tmp_path)) is embedded.load_digits
  with pytest.raises(FileNotFoundError, match="tfds build cifar10 .*Local files 'cifar10_subset/"):
    tfds_source.resolve_source(data_cfg("cifar10", tmp_path))
  with pytest.raises(ValueError, match="Unknown dataset 'nope'"):
    tfds_source.resolve_source(data_cfg("nope", tmp_path))
  if os.path.isdir(default_data_dir()):
    assert tfds_source.resolve_source(data_cfg("sst2", default_data_dir())) is local.LOCAL["sst2"][0]
  monkeypatch.setattr(tfds_source, "is_prepared", lambda name, data_dir: True)
  assert tfds_source.resolve_source(data_cfg("cifar10", tmp_path)) is tfds_source.load_tfds


def test_mock_tfds_through_grain_into_one_train_step(tmp_path):
  from experiments.configs import mnist_cnn
  from model_lib.train.trainer import train_and_evaluate

  c = mnist_cnn.get_config()
  c.data.source, c.data.data_dir, c.data.batch_size, c.data.val_size = "tfds", str(tmp_path), 8, 8
  c.model.features, c.model.dense_sizes = (4,), (8,)
  c.train.num_epochs, c.train.num_steps, c.train.log_every, c.train.eval_every = 0, 2, 1, 2
  with tfds.testing.mock_data(num_examples=32):
    summary = train_and_evaluate(c, str(tmp_path / "run"), show_progress=False)
  assert summary["step"] == 2 and np.isfinite(summary["test"]["loss"])
