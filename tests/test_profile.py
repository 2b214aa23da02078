"""train.profile_steps: a jax.profiler trace of exactly the named steps, viewable in TensorBoard and Perfetto."""

from __future__ import annotations

import glob
import gzip
import json
import os

from experiments.configs import digits_mlp
from model_lib.train import trainer


def _config(profile_steps: str):
  c = digits_mlp.get_config()
  c.train.num_epochs = 0
  c.train.num_steps = 6
  c.train.log_every = 2
  c.train.eval_every = 6
  c.train.early_stopping.metric = ""
  c.train.profile_steps = profile_steps
  return c


def test_profile_steps_trace_only_the_named_steps(tmp_path):
  workdir = str(tmp_path / "run")
  summary = trainer.train_and_evaluate(_config("3,4"), workdir, show_progress=False)
  assert summary["step"] == 6
  runs = glob.glob(os.path.join(workdir, "profile", "plugins", "profile", "*"))
  assert len(runs) == 1  # One trace, in TensorBoard's profile-plugin layout.
  assert glob.glob(os.path.join(runs[0], "*.xplane.pb"))
  with gzip.open(glob.glob(os.path.join(runs[0], "perfetto_trace.json.gz"))[0]) as f:
    events = json.load(f)
  events = events["traceEvents"] if isinstance(events, dict) else events
  steps = sorted(int(e["args"]["step_num"]) for e in events if e.get("name") == "train" and "step_num" in
                 e.get("args", {}))
  assert steps == [3, 4]


def test_no_profile_by_default(tmp_path):
  workdir = str(tmp_path / "run")
  trainer.train_and_evaluate(_config(""), workdir, show_progress=False)
  assert not os.path.exists(os.path.join(workdir, "profile"))
