"""Train iterator determinism/resume and exact-once padded evaluation."""

import jax
import numpy as np

from model_lib.data.pipeline import TrainIterator, eval_batches
from model_lib.train.evaluate import evaluate_split
from model_lib.train.tasks import Classification


def _arrays(n=103):
  return {"x": np.arange(n, dtype=np.float32)[:, None], "y": (np.arange(n) % 3).astype(np.int32)}


def test_train_iterator_epochs_are_permutations_and_reshuffled():
  it = TrainIterator(_arrays(100), batch_size=10, seed=0)
  epoch0 = np.concatenate([next(it)["x"][:, 0] for _ in range(10)])
  epoch1 = np.concatenate([next(it)["x"][:, 0] for _ in range(10)])
  np.testing.assert_array_equal(np.sort(epoch0), np.arange(100))
  np.testing.assert_array_equal(np.sort(epoch1), np.arange(100))
  assert not np.array_equal(epoch0, epoch1)


def test_train_iterator_drops_remainder_and_resumes_exactly():
  it = TrainIterator(_arrays(103), batch_size=10, seed=5)
  assert it.steps_per_epoch == 10
  for _ in range(13):
    next(it)
  state = it.get_state()
  expected = [next(it)["x"] for _ in range(12)]  # Crosses an epoch boundary.
  resumed = TrainIterator(_arrays(103), batch_size=10, seed=5)
  resumed.set_state(state)
  for want in expected:
    np.testing.assert_array_equal(next(resumed)["x"], want)


def test_eval_batches_cover_every_example_once_with_fixed_shapes():
  batches = list(eval_batches(_arrays(103), 25))
  assert [b["x"].shape[0] for b in batches] == [25] * 5
  real = np.concatenate([b["x"][b["mask"] > 0, 0] for b in batches])
  np.testing.assert_array_equal(real, np.arange(103))


def test_evaluate_split_counts_each_example_once_without_recompiling():
  arrays = {"x": np.random.default_rng(0).normal(size=(103, 3)).astype(np.float32),
            "y": np.random.default_rng(1).integers(0, 3, 103).astype(np.int32)}
  task = Classification(num_classes=3)

  @jax.jit
  def eval_step(state, batch):
    return {"stats": task.eval_stats(batch["x"], batch), "scores": task.scores(batch["x"])}

  metrics, y_true, y_score = evaluate_split(eval_step, None, arrays, 25, task, collect_scores=True)
  assert eval_step._cache_size() == 1  # The padded last batch reuses the same executable.
  assert y_score.shape == (103, 3) and len(y_true) == 103
  assert metrics["accuracy"] == np.mean(arrays["x"].argmax(-1) == arrays["y"])


def test_two_processes_get_disjoint_shards_that_cover_the_data():
  arrays = _arrays(100)
  shards = [TrainIterator(arrays, batch_size=10, seed=3, shard_index=i, shard_count=2) for i in range(2)]
  seen = [np.concatenate([next(it)["x"][:, 0] for _ in range(it.steps_per_epoch)]) for it in shards]
  assert all(it.steps_per_epoch == 5 for it in shards)
  assert not set(seen[0]) & set(seen[1])
  np.testing.assert_array_equal(np.sort(np.concatenate(seen)), np.arange(100))
