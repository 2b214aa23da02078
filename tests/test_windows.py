"""Language-model windows: shifted targets, epoch shuffling, exact resume, evaluation coverage."""

from __future__ import annotations

import json

import numpy as np
import pytest

from model_lib.data import text
from model_lib.data.windows import LMWindowIterator, lm_eval_arrays


def test_batches_are_contiguous_windows_with_shifted_targets():
  it = LMWindowIterator(np.arange(1000), seq_len=16, batch_size=4, seed=0)
  for _ in range(2 * it.steps_per_epoch):
    batch = next(it)
    assert batch["x"].shape == batch["y"].shape == batch["weights"].shape == (4, 16)
    assert batch["x"].dtype == batch["y"].dtype == np.int32 and batch["weights"].dtype == np.float32
    np.testing.assert_array_equal(batch["y"], batch["x"] + 1)
    np.testing.assert_array_equal(np.diff(batch["x"], axis=1), 1)
    assert batch["weights"].min() == 1.0


def test_char_lm_targets_are_inputs_shifted_by_one():
  corpus = "To be, or not to be, that is the question:\n" * 20
  tok = text.CharTokenizer.build(corpus)
  batch = next(LMWindowIterator(tok.encode(corpus), seq_len=32, batch_size=3, seed=1))
  for x, y in zip(batch["x"], batch["y"]):
    assert tok.decode(x)[1:] == tok.decode(y)[:-1]
    assert tok.decode(np.append(x, y[-1])) in corpus


def test_epoch_covers_distinct_blocks_and_reshuffles():
  it = LMWindowIterator(np.arange(10_000), seq_len=10, batch_size=8, seed=3)
  assert it.num_blocks == 999 and it.steps_per_epoch == 124
  epochs = [np.concatenate([next(it)["x"][:, 0] for _ in range(it.steps_per_epoch)]) for _ in range(3)]
  for starts in epochs:
    assert len(np.unique(starts)) == len(starts)  # No block twice in an epoch.
    assert len(np.unique(starts % 10)) == 1  # One offset per epoch.
  assert not np.array_equal(epochs[0], epochs[1])


def test_shards_split_each_epoch_without_overlap():
  shards = [LMWindowIterator(np.arange(5000), seq_len=10, batch_size=4, seed=2, shard_index=i, shard_count=3)
            for i in range(3)]
  assert {it.steps_per_epoch for it in shards} == {499 // 3 // 4}
  starts = [np.concatenate([next(it)["x"][:, 0] for _ in range(it.steps_per_epoch)]) for it in shards]
  assert len(np.unique(np.concatenate(starts))) == sum(len(s) for s in starts)


@pytest.mark.parametrize("consumed", [3, 11, 12, 25])  # steps_per_epoch is 12: mid-epoch, at and across the boundary.
def test_resume_from_state_yields_the_same_batches(consumed):
  tokens = np.random.default_rng(0).integers(1, 50, 2000)
  it = LMWindowIterator(tokens, seq_len=20, batch_size=8, seed=7)
  assert it.steps_per_epoch == 12
  for _ in range(consumed):
    next(it)
  state = json.loads(json.dumps(it.get_state()))
  expected = [next(it) for _ in range(15)]
  resumed = LMWindowIterator(tokens, seq_len=20, batch_size=8, seed=7)
  resumed.set_state(state)
  for want in expected:
    got = next(resumed)
    for key in want:
      np.testing.assert_array_equal(got[key], want[key])


def test_set_state_rejects_changed_setup_and_small_streams():
  state = LMWindowIterator(np.arange(500), seq_len=10, batch_size=4, seed=0).get_state()
  with pytest.raises(ValueError, match="seq_len=10"):
    LMWindowIterator(np.arange(500), seq_len=12, batch_size=4, seed=0).set_state(state)
  with pytest.raises(ValueError, match="data.batch_size=64"):
    LMWindowIterator(np.arange(500), seq_len=10, batch_size=64, seed=0)


@pytest.mark.parametrize("length", [2, 33, 65, 100])
def test_eval_arrays_predict_every_token_once(length):
  tokens = np.arange(1, length + 1)
  arrays = lm_eval_arrays(tokens, seq_len=16)
  n = -(-(length - 1) // 16)
  assert arrays["x"].shape == arrays["y"].shape == arrays["weights"].shape == (n, 16)
  w = arrays["weights"] > 0
  assert w.sum() == length - 1
  np.testing.assert_array_equal(arrays["x"][w], tokens[:-1])
  np.testing.assert_array_equal(arrays["y"][w], tokens[1:])
  assert (arrays["x"][~w] == 0).all() and (arrays["y"][~w] == 0).all()
