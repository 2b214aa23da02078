"""Reliability: SIGKILL/SIGTERM mid-run, corrupted checkpoints, NaN policies, bad input, workdir lock, provenance."""

import json
import logging
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import types

import jax
import ml_collections
import numpy as np
import pytest

from experiments.configs import diabetes_regression, digits_mlp
from model_lib import workdir as workdir_lib
from model_lib.checkpoint import Checkpointer, CheckpointError, abstract_like
from model_lib.checkpoint_inspect import inspect_checkpoint, params_digest, restore_raw
from model_lib.config import ConfigError, validate
from model_lib.data import load_dataset
from model_lib.data.pipeline import make_train_iterator
from model_lib.train import loop, trainer
from model_lib.train.loop import NonFiniteError
from model_lib.train.preemption import PreemptionGuard
from model_lib.train.writer import read_metrics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TMP_MARK = "orbax-checkpoint-tmp"
# A short digits run: 60 steps, checkpoint + eval every 20, so three checkpoints (20, 40, 60) with keep=3.
SMALL = {"train.num_epochs": 0, "train.num_steps": 60, "train.checkpoint_every": 20, "train.eval_every": 20,
         "train.log_every": 10}
VOLATILE = ("examples_per_sec", "compile_s")  # Timing columns of train rows; everything else must repeat exactly.


# --- helpers --------------------------------------------------------------------------------------------------------


def _config(module=digits_mlp, **overrides):
  """`module.get_config()` with `SMALL` and `overrides` ('a.b' or 'a__b' keys) applied."""
  c = module.get_config()
  for key, value in {**SMALL, **{k.replace("__", "."): v for k, v in overrides.items()}}.items():
    *sections, leaf = key.split(".")
    node = c
    for s in sections:
      node = node[s]
    node[leaf] = value
  return c


def _flags(workdir, **overrides):
  """CLI flags for `experiments.train` equivalent to `_config(**overrides)` on digits_mlp."""
  items = {**SMALL, **{k.replace("__", "."): v for k, v in overrides.items()}}
  return ["--config=experiments/configs/digits_mlp.py", f"--workdir={workdir}",
          *(f"--config.{k}={v}" for k, v in items.items())]


class Procs:
  """Starts training subprocesses (output to files, so no pipe fills up) and kills leftovers at teardown."""

  def __init__(self, log_dir):
    self.log_dir = str(log_dir)
    self.started = []

  def start(self, name, args):
    """Starts `python -m experiments.train *args` from the repository root."""
    out, err = os.path.join(self.log_dir, f"{name}.out"), os.path.join(self.log_dir, f"{name}.err")
    with open(out, "w") as fo, open(err, "w") as fe:
      p = subprocess.Popen([sys.executable, "-m", "experiments.train", *args], cwd=REPO, stdout=fo, stderr=fe)
    p.out_path, p.err_path, p.name = out, err, name
    self.started.append(p)
    return p

  def wait(self, p, timeout=120):
    """Exit code of `p`, then its stdout/stderr (read from the files)."""
    rc = p.wait(timeout=timeout)
    with open(p.out_path) as fo, open(p.err_path) as fe:
      return rc, fo.read(), fe.read()

  def cleanup(self):
    for p in self.started:
      if p.poll() is None:
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=30)


@pytest.fixture
def procs(tmp_path):
  logs = tmp_path / "logs"
  logs.mkdir()
  p = Procs(logs)
  yield p
  p.cleanup()


def _wait_for(predicate, timeout, proc=None, what="condition"):
  """Polls `predicate` every millisecond; fails if `proc` exits or `timeout` seconds pass first."""
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if predicate():
      return
    if proc is not None and proc.poll() is not None:
      with open(proc.err_path) as f:
        pytest.fail(f"{proc.name} exited ({proc.returncode}) before {what}:\n{f.read()[-3000:]}")
    time.sleep(0.001)
  pytest.fail(f"timed out after {timeout} s waiting for {what}")


def _listdir(path):
  try:
    return os.listdir(path)
  except FileNotFoundError:
    return []


def _max_train_step(workdir):
  """Largest train step in metrics.jsonl so far (0 if none); tolerates a line being written right now."""
  try:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
      lines = f.read().splitlines()
  except FileNotFoundError:
    return 0
  steps = [0]
  for line in lines:
    try:
      row = json.loads(line)
    except ValueError:
      continue
    if row.get("split") == "train":
      steps.append(row["step"])
  return max(steps)


def _error_lines(stderr):
  """The CLI's `error: ...` messages (the one-line error may share a line with background thread noise)."""
  return re.findall(r"(?<!last )\berror: (.*)", stderr)


def _row_keys(workdir):
  return [(r["step"], r["split"]) for r in read_metrics(workdir)]


def _stable_rows(workdir):
  return [{k: v for k, v in r.items() if k not in VOLATILE} for r in read_metrics(workdir)]


def _all_finite(workdir):
  """{(kind, step): every leaf of params/opt_state/batch_stats/lr_scale is finite} for all saved checkpoints."""
  out = {}
  for kind in ("checkpoints", "best"):
    directory = os.path.join(workdir, kind)
    if not os.path.isdir(directory):
      continue
    for step in Checkpointer(workdir, kind, read_only=True).steps():
      state = restore_raw(directory, step, keys=("params", "opt_state", "batch_stats", "lr_scale"))
      assert "params" in state and "lr_scale" in state
      out[(kind, step)] = all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state))
  return out


def _state_files(workdir, step):
  """Files of the 'state' item of checkpoint `step`, largest (the array data) first."""
  base = os.path.join(workdir, "checkpoints", str(step), "state")
  files = [os.path.join(r, f) for r, _, fs in os.walk(base) for f in fs]
  return sorted(files, key=lambda f: (-os.path.getsize(f), f))


def _corrupt(path, mode):
  if mode == "delete":
    os.remove(path)
  else:  # Truncate to half its size, as a write cut short would leave it.
    with open(path, "r+b") as f:
      f.truncate(os.path.getsize(path) // 2)


def _poisoned_steps(dataset, config, limit):
  """1-based train steps (up to `limit`) whose batch holds a NaN input, in the run's exact data order."""
  it = make_train_iterator(dataset, config.data, seed=config.seed)
  return [step for step in range(1, limit + 1) if np.isnan(next(it)["x"]).any()]


def _poisoned_digits(config):
  ds = load_dataset(config.data)
  ds.splits["train"]["x"][5] = np.nan  # One bad training example; it comes back once per epoch.
  return ds


@pytest.fixture
def checkpointers(monkeypatch):
  """Records every Checkpointer made (`.made`) and, at each workdir-lock release, whether none had a save pending."""
  t = types.SimpleNamespace(made=[], releases=[])
  init, save, restore, wait, close = (Checkpointer.__init__, Checkpointer.save, Checkpointer.restore,
                                      Checkpointer.wait, Checkpointer.close)

  def tracked_init(self, *args, **kwargs):
    init(self, *args, **kwargs)
    self.pending = False
    t.made.append(self)

  def tracked_save(self, *args, **kwargs):
    self.pending = True
    save(self, *args, **kwargs)

  def settles(method):
    def settled(self, *args, **kwargs):  # These all wait for the manager's pending saves first.
      self.pending = False
      return method(self, *args, **kwargs)
    return settled

  release = workdir_lib.WorkdirLock.release

  def tracked_release(self):
    t.releases.append(not any(c.pending for c in t.made))
    release(self)

  monkeypatch.setattr(Checkpointer, "__init__", tracked_init)
  monkeypatch.setattr(Checkpointer, "save", tracked_save)
  for name, method in (("restore", restore), ("wait", wait), ("close", close)):
    monkeypatch.setattr(Checkpointer, name, settles(method))
  monkeypatch.setattr(workdir_lib.WorkdirLock, "release", tracked_release)
  return t


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A finished SMALL digits run (checkpoints 20, 40, 60), its config and restore target; tests copy it."""
  workdir = str(tmp_path_factory.mktemp("trained") / "run")
  config = _config()
  trainer.train_and_evaluate(config, workdir, show_progress=False)
  target = abstract_like(trainer.build_experiment(config).state)
  return {"workdir": workdir, "config": config, "target": target,
          "digests": {s: inspect_checkpoint(workdir, s)["params_digest"] for s in (20, 40, 60)}}


def _copy(trained, tmp_path, name="run"):
  dst = str(tmp_path / name)
  shutil.copytree(trained["workdir"], dst)
  return dst


# --- 1. SIGKILL at random moments -----------------------------------------------------------------------------------


def _tmp_entries(workdir):
  return {n for n in _listdir(os.path.join(workdir, "checkpoints")) if TMP_MARK in n}


@pytest.mark.slow
def test_sigkill_at_random_moments_then_rerun_is_bitwise_identical(trained, tmp_path, procs):
  """One workdir killed three times (each rerun taking over the dead run's lock), then run to the end."""
  wd, rng = str(tmp_path / "run"), random.Random(20241124)
  early_delay, mid_step, mid_delay = rng.uniform(0.0, 1.0), rng.choice([30, 40, 50]), rng.uniform(0.0, 0.1)

  def early(st):  # A random delay after the lock appears: loading data, compiling, or the first steps.
    if "t" not in st and os.path.exists(os.path.join(wd, workdir_lib.LOCK_FILE)):
      st["t"] = time.monotonic()
    return "t" in st and time.monotonic() - st["t"] >= early_delay

  def during_save(st):  # An async save in flight: a tmp dir this run created (not one left by the last kill).
    stale = st.setdefault("stale", _tmp_entries(wd))
    now = _tmp_entries(wd)
    stale &= now  # A stale entry, once cleaned up, may be recreated by this run under the same name.
    return bool(now - stale)

  def mid(st):  # A random delay after a random train step this run logged (in a step, an eval or a save).
    st.setdefault("floor", max(_max_train_step(wd), mid_step - 10))
    if "t" not in st and _max_train_step(wd) > st["floor"]:
      st["t"] = time.monotonic()
    return "t" in st and time.monotonic() - st["t"] >= mid_delay

  for name, trigger in (("early", early), ("during_save", during_save), ("mid", mid)):
    if name == "mid" and _max_train_step(wd) >= 50:
      continue  # The earlier kills came late; no later step is left to kill at.
    p, st = procs.start(name, _flags(wd)), {}
    _wait_for(lambda: trigger(st), 90, p, f"the '{name}' kill moment")
    os.kill(p.pid, signal.SIGKILL)
    rc, _, err = procs.wait(p)
    assert rc == -signal.SIGKILL, name
    print(f"killed '{name}': committed {Checkpointer(wd, read_only=True).steps()}, "  # Shown if the test fails.
          f"in flight {sorted(_tmp_entries(wd))}, last train row {_max_train_step(wd)}")
    if name != "early":
      assert "Taking over the stale lock" in err, name  # The killed run's lock did not block this one.
    if name == "during_save":
      assert _tmp_entries(wd), "the kill should have interrupted a save"

  rc, out, err = procs.wait(procs.start("final", _flags(wd)))
  assert rc == 0, err[-3000:]
  assert "step 60: test" in out and "Taking over the stale lock" in err
  got = inspect_checkpoint(wd)
  assert got["steps"] == [20, 40, 60] and got["params_digest"] == trained["digests"][60], "parameters differ"
  best = inspect_checkpoint(trained["workdir"], kind="best")["params_digest"]
  assert inspect_checkpoint(wd, kind="best")["params_digest"] == best
  keys = _row_keys(wd)
  assert len(keys) == len(set(keys)), "duplicated (step, split) rows in metrics.jsonl"
  assert keys == _row_keys(trained["workdir"])
  assert _stable_rows(wd) == _stable_rows(trained["workdir"]), "logged metrics differ from the uninterrupted run"
  for kind in ("checkpoints", "best"):
    assert not [n for n in _listdir(os.path.join(wd, kind)) if TMP_MARK in n], f"{kind} keeps a tmp dir"
  assert not os.path.exists(os.path.join(wd, workdir_lib.LOCK_FILE))


# --- 2, 6, 7. SIGTERM, workdir lock, run_info -----------------------------------------------------------------------


@pytest.mark.slow
def test_second_run_is_refused_and_sigterm_checkpoints_the_current_step_then_resumes(tmp_path, procs):
  wd, steps, every = str(tmp_path / "run"), 300, 100
  flags = _flags(wd, train__num_steps=steps, train__checkpoint_every=every, train__eval_every=every)
  first = procs.start("first", flags)
  _wait_for(lambda: _max_train_step(wd) > 0, 90, first, "the first train row")
  os.kill(first.pid, signal.SIGSTOP)  # Frozen mid-training, holding the lock, for as long as the second run needs.
  try:
    # A second run on the same workdir refuses with one line naming the holder's PID.
    rc, _, err = procs.wait(procs.start("second", flags))
    assert rc == 2, err[-3000:]
    errors = _error_lines(err)
    assert len(errors) == 1 and f"is in use by PID {first.pid}" in errors[0], err[-3000:]
    assert "Traceback" not in err
  finally:
    # SIGTERM mid-training: a clean exit after checkpointing the exact step it stopped at.
    os.kill(first.pid, signal.SIGTERM)
    os.kill(first.pid, signal.SIGCONT)
  rc, out, err = procs.wait(first)
  assert rc == 0, err[-3000:]
  stopped = re.search(r"stopped by SIGTERM at step (\d+)", out)
  assert stopped, out
  s = int(stopped.group(1))
  assert 0 < s < steps
  assert Checkpointer(wd, read_only=True).steps()[-1] == s  # The current step, not the last multiple of `every`.
  assert not os.path.exists(os.path.join(wd, workdir_lib.LOCK_FILE))
  before = read_metrics(wd)
  assert max(r["step"] for r in before) <= s

  # The same command resumes from S and finishes.
  rc, out, err = procs.wait(procs.start("resume", flags))
  assert rc == 0, err[-3000:]
  assert f"Resumed from step {s} " in err
  assert f"step {steps}: test" in out
  rows = read_metrics(wd)
  assert rows[:len(before)] == before
  new_train = [r["step"] for r in rows[len(before):] if r["split"] == "train"]
  assert new_train and new_train[0] > s and new_train[-1] == steps
  keys = _row_keys(wd)
  assert len(keys) == len(set(keys))
  assert Checkpointer(wd, read_only=True).steps()[-1] == steps

  # run_info.json: code version, packages, devices, seed and command line; the first start moved to 'previous'.
  with open(os.path.join(wd, workdir_lib.RUN_INFO_FILE)) as f:
    info = json.load(f)
  if workdir_lib.git_state()["commit"] is None:  # Not a git checkout (e.g. an unpacked source archive).
    assert info["git"] == {"commit": None, "dirty": None}
  else:
    assert re.fullmatch(r"[0-9a-f]{40}", info["git"]["commit"]) and isinstance(info["git"]["dirty"], bool)
  assert set(workdir_lib.PACKAGES) <= set(info["packages"]) and info["packages"]["jax"] == jax.__version__
  assert info["platform"] == jax.devices()[0].platform and info["device_count"] >= 1 and info["device_kind"]
  assert info["seed"] == 0 and info["executable"] == sys.executable
  assert f"--workdir={wd}" in info["command"] and f"--config.train.num_steps={steps}" in info["command"]
  assert len(info["previous"]) == 1 and info["previous"][0]["command"] == info["command"]


def test_workdir_lock_takes_over_stale_holders_and_refuses_live_ones(tmp_path, caplog):
  wd = str(tmp_path)
  path = os.path.join(wd, workdir_lib.LOCK_FILE)
  dead = subprocess.Popen(["true"])
  dead.wait(timeout=30)
  me = workdir_lib.WorkdirLock(wd)._record
  holders = {
      "dead pid": {**me, "pid": dead.pid, "start": None},
      "reused pid": {**me, "start": "1"},  # Our PID, but a different process start time: the holder is gone.
      "half-written": None,  # The holder died between creating and filling the file.
  }
  for name, holder in holders.items():
    with open(path, "w") as f:
      f.write("" if holder is None else json.dumps(holder))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="model_lib.workdir"):
      with workdir_lib.WorkdirLock(wd):
        with open(path) as f:
          assert json.load(f)["pid"] == os.getpid(), name
    assert "Taking over the stale lock" in caplog.text, name
    assert not os.path.exists(path), name

  # A live holder (this test's parent process, recorded with its true start time) is refused, naming its PID.
  with open(path, "w") as f:
    json.dump({**me, "pid": os.getppid(), "start": workdir_lib._process_start(os.getppid())}, f)
  with pytest.raises(workdir_lib.WorkdirBusyError, match=rf"in use by PID {os.getppid()} on {me['hostname']}"):
    workdir_lib.WorkdirLock(wd).acquire()
  with pytest.raises(workdir_lib.WorkdirBusyError, match=r"in use by PID \d+ on elsewhere"):
    with open(path, "w") as f:
      json.dump({**me, "hostname": "elsewhere"}, f)  # Another host: cannot be checked, so assumed alive.
    workdir_lib.WorkdirLock(wd).acquire()


# --- 3. corruption --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode,which", [("delete", "data"), ("truncate", "data"), ("truncate", "_METADATA")])
def test_corrupt_latest_checkpoint_falls_back_to_previous_with_warning(trained, tmp_path, caplog, mode, which):
  wd = _copy(trained, tmp_path)
  files = _state_files(wd, 60)
  victim = files[0] if which == "data" else next(f for f in files if os.path.basename(f) == which)
  _corrupt(victim, mode)
  with caplog.at_level(logging.WARNING, logger="model_lib.checkpoint"):
    step, state, data_state, meta = Checkpointer(wd).restore(trained["target"])
  assert step == 40 and int(state.step) == 40 and data_state and "best_value" in meta
  warnings = [r.getMessage() for r in caplog.records if r.name == "model_lib.checkpoint"]
  assert len(warnings) == 1 and "Checkpoint step 60 " in warnings[0] and "could not be restored" in warnings[0]
  restored = restore_raw(os.path.join(wd, "checkpoints"), 40)
  assert params_digest(state.params) == params_digest(restored["params"]) == trained["digests"][40]


def test_rerun_after_corrupt_latest_checkpoint_continues_from_the_older_step(trained, tmp_path, caplog):
  wd = _copy(trained, tmp_path)
  _corrupt(_state_files(wd, 60)[0], "delete")
  with caplog.at_level(logging.INFO, logger="model_lib"):
    summary = trainer.train_and_evaluate(trained["config"], wd, show_progress=False)
  assert "Checkpoint step 60 " in caplog.text and f"Resumed from step 40 in {wd}" in caplog.text
  assert summary["step"] == 60
  keys = _row_keys(wd)
  assert keys == _row_keys(trained["workdir"]) and len(keys) == len(set(keys))
  assert _stable_rows(wd) == _stable_rows(trained["workdir"])  # Steps 41-60 were retrained exactly.
  step, _, _, _ = Checkpointer(wd, read_only=True).restore(trained["target"], step=60)  # CheckpointError today.
  assert step == 60 and inspect_checkpoint(wd)["params_digest"] == trained["digests"][60]


def test_all_checkpoints_corrupt_is_a_clear_error(trained, tmp_path, procs):
  wd = _copy(trained, tmp_path)
  for step in (20, 40, 60):
    _corrupt(_state_files(wd, step)[0], "delete")
  with pytest.raises(CheckpointError, match=r"No checkpoint in .*checkpoints could be restored \(tried steps "
                                            r"\[60, 40, 20\]; last error: .*\)\. Delete the directory"):
    Checkpointer(wd).restore(trained["target"])
  rc, _, err = procs.wait(procs.start("cli", _flags(wd)))
  assert rc == 2, err[-3000:]
  errors = _error_lines(err)
  assert len(errors) == 1 and "could be restored (tried steps [60, 40, 20]" in errors[0], err[-3000:]


def test_leftover_tmp_checkpoint_dir_is_ignored(trained, tmp_path):
  wd = _copy(trained, tmp_path)
  tmp = os.path.join(wd, "checkpoints", f"80.{TMP_MARK}-1700000000")  # What a kill during an async save leaves.
  os.makedirs(os.path.join(tmp, "state"))
  with open(os.path.join(tmp, "state", "_METADATA"), "w") as f:
    f.write("{half a file")
  assert inspect_checkpoint(wd)["steps"] == [20, 40, 60]
  step, state, _, _ = Checkpointer(wd).restore(trained["target"])
  assert step == 60 and inspect_checkpoint(wd)["params_digest"] == trained["digests"][60]
  assert not os.path.exists(tmp)  # cleanup_tmp_directories removed it.


def test_config_json_cut_short_by_a_kill_does_not_block_the_rerun(trained, tmp_path):
  wd = _copy(trained, tmp_path)
  open(os.path.join(wd, "config.json"), "w").close()  # State after a kill between open(..., 'w') and write().
  summary = trainer.train_and_evaluate(trained["config"], wd, show_progress=False)
  assert summary["step"] == 60


# --- 4. NaN policies ------------------------------------------------------------------------------------------------


def test_nan_policy_raise_names_the_step_and_leaf(tmp_path, checkpointers):
  # Checkpoints every 2 steps, logs every 10: the run must stop at the first checkpoint after the bad step (metrics
  # are read before every save), so no checkpoint holds the state the bad step produced.
  config = _config(**{"train.nan_policy": "raise", "train.checkpoint_every": 2})
  ds = _poisoned_digits(config)
  first = _poisoned_steps(ds, config, 60)[0]
  with pytest.raises(NonFiniteError) as e:
    trainer.train_and_evaluate(config, str(tmp_path), dataset=ds, show_progress=False)
  leaf = "first non-finite gradient leaf ['Dense_0']['kernel']"  # relu'(NaN) = 0 keeps Dense_0's bias finite.
  assert f"Non-finite loss/gradient at step {first} ({leaf}" in str(e.value)
  assert "--config.train.nan_policy=skip|rollback" in str(e.value)
  for c in checkpointers.made:
    c.wait()  # The run may return with saves still in flight (see the xfail test below).
  finite = _all_finite(str(tmp_path))
  assert first - 2 <= max(step for _, step in finite) < first and all(finite.values()), finite


def test_a_failing_run_finishes_its_checkpoint_writes_before_releasing_the_workdir(tmp_path, checkpointers):
  config = _config(**{"train.nan_policy": "raise", "train.checkpoint_every": 2})
  with pytest.raises(NonFiniteError):
    trainer.train_and_evaluate(config, str(tmp_path), dataset=_poisoned_digits(config), show_progress=False)
  assert checkpointers.releases == [True]


def test_nan_policy_skip_drops_bad_updates_and_counts_them(tmp_path):
  config = _config(**{"train.nan_policy": "skip", "train.num_steps": 80})
  ds = _poisoned_digits(config)
  poisoned = _poisoned_steps(ds, config, 80)
  assert len(poisoned) == 2  # Once per 39-step epoch.
  summary = trainer.train_and_evaluate(config, str(tmp_path), dataset=ds, show_progress=False)
  assert summary["step"] == 80 and summary["test"]["accuracy"] > 0.5
  counted = [(r["step"], r["nonfinite_steps"]) for r in read_metrics(str(tmp_path)) if "nonfinite_steps" in r]
  assert counted == [(math.ceil(s / 10) * 10, i + 1) for i, s in enumerate(poisoned)]
  assert all(r["split"] == "train" for r in read_metrics(str(tmp_path)) if "nonfinite_steps" in r)
  finite = _all_finite(str(tmp_path))
  assert ("checkpoints", 80) in finite and all(finite.values())


def test_nan_policy_rollback_gives_up_on_a_repeating_bad_example(tmp_path, caplog):
  config = _config(**{"train.nan_policy": "rollback", "train.max_rollbacks": 2})
  ds = _poisoned_digits(config)
  first = _poisoned_steps(ds, config, 60)[0]
  with caplog.at_level(logging.WARNING, logger="model_lib.train.loop"):
    with pytest.raises(NonFiniteError, match=rf"at step {first} .*gave up after train.max_rollbacks=2 rollbacks"):
      trainer.train_and_evaluate(config, str(tmp_path), dataset=ds, show_progress=False)
  rollbacks = [r.getMessage() for r in caplog.records if "rolled back" in r.getMessage()]
  assert len(rollbacks) == 2
  assert "rolled back to step 0 with learning-rate scale 0.5 (rollback 1 of at most 2)" in rollbacks[0]
  assert "rolled back to step 0 with learning-rate scale 0.25 (rollback 2 of at most 2)" in rollbacks[1]
  finite = _all_finite(str(tmp_path))
  assert ("checkpoints", 0) in finite and all(finite.values())  # The step-0 checkpoint it rolled back to.


def test_nan_policy_rollback_recovers_from_divergence_with_a_lower_learning_rate(tmp_path, caplog):
  config = _config(**{"train.nan_policy": "rollback", "train.rollback_lr_factor": 1e-3, "train.num_steps": 80,
                      "optimizer.name": "sgd", "optimizer.learning_rate": 1e4, "optimizer.schedule.name": "constant"})
  with caplog.at_level(logging.WARNING, logger="model_lib.train.loop"):
    summary = trainer.train_and_evaluate(config, str(tmp_path), show_progress=False)
  rollbacks = [r.getMessage() for r in caplog.records if "rolled back" in r.getMessage()]
  assert 1 <= len(rollbacks) <= config.train.max_rollbacks
  assert "rolled back to step 0 with learning-rate scale 0.001 (rollback 1 of at most 3)" in rollbacks[0]
  assert summary["step"] == 80 and summary["test"]["accuracy"] > 0.3
  assert np.isfinite(summary["test"]["loss"])
  finite = _all_finite(str(tmp_path))
  assert ("checkpoints", 80) in finite and all(finite.values())
  saved = restore_raw(os.path.join(str(tmp_path), "checkpoints"), 80, keys=("lr_scale",))
  np.testing.assert_allclose(saved["lr_scale"], 1e-3 ** len(rollbacks), rtol=1e-5)  # Lowered scale is saved.
  rows = read_metrics(str(tmp_path))
  last = [r for r in rows if r["split"] == "train"][-1]
  assert last["step"] == 80 and np.isfinite(last["loss"])
  keys = [(r["step"], r["split"]) for r in rows]
  assert len(keys) == len(set(keys))  # Rows of rolled-back steps were dropped, not duplicated.


def test_nan_policy_skip_keeps_overflowing_updates_out_of_checkpoints(tmp_path):
  config = _config(diabetes_regression, **{"train.nan_policy": "skip", "train.num_steps": 20,
                                           "train.checkpoint_every": 10, "train.early_stopping.metric": "",
                                           "optimizer.learning_rate": 3e38})
  trainer.train_and_evaluate(config, str(tmp_path), show_progress=False)
  finite = _all_finite(str(tmp_path))
  assert ("checkpoints", 20) in finite
  assert all(finite.values()), finite


@pytest.mark.parametrize("learning_rate,saved", [(3e38, False), (1e-3, True)])
def test_a_preemption_on_an_unmeasured_step_saves_only_finite_parameters(tmp_path, monkeypatch, caplog,
                                                                        learning_rate, saved):
  # Step 1 checks only its loss (logs every 10), which is finite; lr 3e38 overflows its update into the params.
  class PreemptedAtOnce(PreemptionGuard):
    def __enter__(self):
      super().__enter__()
      self.requested, self.signal_name = True, "SIGTERM"
      return self

  monkeypatch.setattr(loop, "PreemptionGuard", PreemptedAtOnce)
  config = _config(diabetes_regression, **{"train.num_steps": 20, "train.checkpoint_every": 10,
                                           "train.early_stopping.metric": "", "optimizer.learning_rate": learning_rate})
  with caplog.at_level(logging.WARNING, logger="model_lib.train.loop"):
    assert trainer.train_and_evaluate(config, str(tmp_path), show_progress=False) == {"step": 1, "preempted": "SIGTERM"}
  assert (("checkpoints", 1) in _all_finite(str(tmp_path))) == saved and all(_all_finite(str(tmp_path)).values())
  assert any("Not saving step 1: its parameters are non-finite" in r.getMessage() for r in caplog.records) != saved


# --- 5. bad input ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key,value,needle", [
    ("train.num_steps", "10", "Config key 'train.num_steps' must be int, got str '10'."),
    ("train.nan_policy", 3, "Config key 'train.nan_policy' must be str, got int 3."),
    ("train.nan_policy", "explode", "train.nan_policy must be 'raise', 'skip' or 'rollback', got 'explode'."),
    ("data.source", "ftp", "data.source must be one of auto, tfds, local, embedded; got 'ftp'."),
    ("train.rollback_lr_factor", 0.0, "train.rollback_lr_factor must be in (0, 1], got 0.0."),
    ("train.keep_checkpoints", 0, "train.keep_checkpoints must be > 0, got 0."),
    ("train.checkpoint_every", -5, "train.checkpoint_every must be >= 0 (0 = default), got -5."),
    ("optimizer.grad_clip_norm", -1.0, "optimizer.grad_clip_norm must be >= 0, got -1.0."),
    ("data.augment.flipp", True, "Unknown config key 'data.augment.flipp'. Did you mean 'data.augment.flip'?"),
])
def test_validate_names_the_key(key, value, needle):
  d = digits_mlp.get_config().to_dict()  # A plain dict: ConfigDict itself refuses type changes on assignment.
  *sections, leaf = key.split(".")
  node = d
  for s in sections:
    node = node[s]
  node[leaf] = value
  with pytest.raises(ConfigError) as e:
    validate(ml_collections.ConfigDict(d))
  assert needle in str(e.value) and "\n" not in str(e.value)


def test_batch_larger_than_the_training_split_names_the_fix():
  c = digits_mlp.get_config()
  c.data.batch_size = 5000
  with pytest.raises(ConfigError, match=r"data.batch_size=5000 exceeds the training split \(\d+ examples"):
    trainer.build_experiment(c)


def test_cli_bad_value_gives_one_line_error(tmp_path, procs):
  # Other validation messages are checked in-process above; this is the CLI path for a ConfigError.
  wd = tmp_path / "run"
  rc, _, err = procs.wait(procs.start("cli", ["--config.train.nan_policy=explode", f"--workdir={wd}"]))
  errors = _error_lines(err)
  assert rc == 2 and errors == ["train.nan_policy must be 'raise', 'skip' or 'rollback', got 'explode'."], err[-3000:]
  assert "Traceback" not in err
  assert not os.path.exists(wd / "checkpoints") and not os.path.exists(wd / workdir_lib.LOCK_FILE)


@pytest.mark.slow
def test_cli_refuses_a_changed_model_config_and_reports_unrestorable_checkpoints(trained, tmp_path, procs):
  refused_dir, allowed_dir = _copy(trained, tmp_path, "refused"), _copy(trained, tmp_path, "allowed")
  refused = procs.start("refused", [*_flags(refused_dir), "--config.model.hidden_sizes=(7,)"])
  allowed = procs.start("allowed", [*_flags(allowed_dir), "--config.model.hidden_sizes=(7,)",
                                    "--config.train.allow_config_change=true"])
  rc, _, err = procs.wait(refused)
  errors = _error_lines(err)
  assert rc == 2 and len(errors) == 1, err[-3000:]
  assert "model.hidden_sizes: [256, 128] -> [7]" in errors[0]
  assert "--config.train.allow_config_change=true" in errors[0]
  rc, _, err = procs.wait(allowed)
  errors = _error_lines(err)
  assert rc == 2 and len(errors) == 1, err[-3000:]
  assert re.search(r"No checkpoint in \S+ could be restored \(tried steps \[60, 40, 20\]", errors[0]), errors[0]
  assert "Traceback" not in err
  for wd in (refused_dir, allowed_dir):
    assert inspect_checkpoint(wd)["params_digest"] == trained["digests"][60]  # Nothing was overwritten.


def test_failed_restore_after_allowed_config_change_keeps_the_workdir_resumable(trained, tmp_path):
  wd = _copy(trained, tmp_path)
  changed = _config(**{"model.hidden_sizes": (7,), "train.allow_config_change": True})
  with pytest.raises(CheckpointError):
    trainer.train_and_evaluate(changed, wd, show_progress=False)
  summary = trainer.train_and_evaluate(trained["config"], wd, show_progress=False)
  assert summary["step"] == 60


# --- 8. determinism -------------------------------------------------------------------------------------------------


def test_same_seed_same_digest_other_seed_other_digest(trained, tmp_path):
  again = str(tmp_path / "again")
  trainer.train_and_evaluate(_config(), again, show_progress=False)
  assert inspect_checkpoint(again)["params_digest"] == trained["digests"][60]
  assert _stable_rows(again) == _stable_rows(trained["workdir"])
  other = str(tmp_path / "other")
  trainer.train_and_evaluate(_config(seed=1), other, show_progress=False)
  assert inspect_checkpoint(other)["params_digest"] != trained["digests"][60]
