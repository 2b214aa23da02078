"""Local readers against the real files under MODEL_LIB_DATA_DIR (conftest: skipped locally when absent, failing in CI)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from model_lib.config import base_config
from model_lib.data import DATASETS
from model_lib.data.base import default_data_dir
from model_lib.data.local import LOCAL, has_local_files
from model_lib.data.mnist import load_mnist_arrays

DATA_DIR = default_data_dir()
pytestmark = pytest.mark.usefixtures("data_dir")  # Skipped locally without data, a failure in CI.

UCI_ROWS = {"bostonHousing": 506, "concrete": 1030, "energy": 768, "wine-quality-red": 1599, "yacht": 308,
            "kin8nm": 8192, "naval-propulsion-plant": 11934, "power-plant": 9568}


def data_cfg(name, **overrides):
  cfg = base_config().data
  cfg.name = name
  cfg.data_dir = DATA_DIR
  cfg.update(overrides)
  return cfg


def load(name, **overrides):
  cfg = data_cfg(name, **overrides)
  return DATASETS.get(name)(cfg)


def test_mnist_arrays():
  arrays = load_mnist_arrays(DATA_DIR)
  (x_train, y_train), (x_test, y_test) = arrays["train"], arrays["test"]
  assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
  assert y_train.shape == (60000,) and y_test.shape == (10000,)
  assert set(np.unique(y_train)) == set(range(10)) == set(np.unique(y_test))


def test_tiny_shakespeare_char():
  with open(os.path.join(DATA_DIR, "tinyshakespeare", "input.txt"), encoding="utf-8") as f:
    corpus = f.read()
  assert len(corpus) == 1_115_394 and len(set(corpus)) == 65
  ds = load("tiny_shakespeare", tokenizer="char", lowercase=False)
  assert ds.info.task == "lm" and ds.info.vocab_size == ds.info.num_outputs == 66
  train, val = ds.split("train")["tokens"], ds.split("val")["tokens"]
  assert train.dtype == np.int32 and len(train) + len(val) == len(corpus) and len(train) == int(0.9 * len(corpus))
  assert ds.split("test")["tokens"] is val
  assert ds.tokenizer.decode(train[:200]) == corpus[:200]
  assert ds.tokenizer.decode(val) == corpus[len(train):]
  assert train.min() >= 1


def test_tiny_shakespeare_subword_and_bad_tokenizer():
  ds = load("tiny_shakespeare", tokenizer="subword", vocab_size=300, lowercase=False)
  assert ds.info.vocab_size == 300 and ds.tokenizer.type == "subword"
  assert len(ds.split("train")["tokens"]) < 1_003_854  # Fewer tokens than characters.
  with pytest.raises(ValueError, match="'char' or 'subword'"):
    load("tiny_shakespeare", tokenizer="word")


def test_sst2_counts_and_vocab():
  ds = load("sst2", max_len=40, vocab_size=5000)
  assert {s: ds.num_examples(s) for s in ("train", "val", "test")} == {"train": 6920, "val": 872, "test": 1821}
  assert ds.info.task == "binary" and ds.info.num_outputs == 1 and ds.info.num_classes == 2
  assert ds.info.vocab_size == 5000 and ds.tokenizer.vocab_size == 5000
  for split in ds.splits.values():
    assert split["x"].shape[1] == 40 and split["x"].dtype == np.int32 and split["y"].dtype == np.int32
    assert set(np.unique(split["y"])) == {0, 1} and split["x"].max() < 5000
  assert (ds.split("train")["x"][:, 0] != 0).all()  # Right padding: sentences start at position 0.
  alias = load("glue/sst2", max_len=40, vocab_size=5000)
  np.testing.assert_array_equal(alias.split("test")["x"], ds.split("test")["x"])


def test_sst5_counts():
  ds = load("sst5")
  assert {s: ds.num_examples(s) for s in ("train", "val", "test")} == {"train": 8544, "val": 1101, "test": 2210}
  assert ds.info.task == "classification" and ds.info.num_outputs == 5
  assert set(np.unique(ds.split("train")["y"])) == set(range(5))


def test_cifar10_subset():
  ds = load("cifar10", val_fraction=0.1)
  assert ds.split("test")["x"].shape == (1000, 32, 32, 3) and ds.num_examples("train") + ds.num_examples("val") == 4000
  assert ds.num_examples("val") == 400
  for split in ds.splits.values():
    assert split["x"].dtype == np.float32 and split["y"].dtype == np.int32
    assert 0.0 <= split["x"].min() and split["x"].max() <= 1.0
  assert ds.info.class_names[0] == "airplane" and ds.info.num_classes == 10
  assert "val" not in load("cifar10", val_fraction=0.0).splits


def test_uci_row_counts_and_standardisation():
  for name, rows in UCI_ROWS.items():
    ds = load(f"uci/{name}", uci_split=1)
    assert sum(ds.num_examples(s) for s in ("train", "val", "test")) == rows, name
    assert ds.info.task == "regression" and ds.info.target_std > 0
    train = ds.split("train")
    assert train["x"].dtype == np.float32 and train["y"].shape == (ds.num_examples("train"),)
    np.testing.assert_allclose(train["x"].mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(train["y"].mean(), 0, atol=1e-4)
  full = load("uci/concrete", uci_split=0, val_fraction=0.0)  # The published protocol: 927 / 103.
  assert (full.num_examples("train"), full.num_examples("test")) == (927, 103) and "val" not in full.splits


def test_uci_bad_split_and_missing_dir(tmp_path):
  with pytest.raises(ValueError, match="data.uci_split=7"):
    load("uci/yacht", uci_split=7)
  with pytest.raises(FileNotFoundError, match="MODEL_LIB_DATA_DIR"):
    load("sst2", data_dir=str(tmp_path))


def test_every_local_dataset_has_its_files():
  assert all(has_local_files(name, DATA_DIR) for name in LOCAL)
  assert not has_local_files("sst2", "")
