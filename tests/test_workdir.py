"""Workdir lock, config compatibility on resume, and run_info.json."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys

import pytest

from experiments.configs import digits_mlp
from model_lib import workdir as wd

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _dead_pid() -> int:
  proc = subprocess.Popen([sys.executable, "-c", "pass"])
  proc.wait()
  return proc.pid


def _write_lock(directory, **record) -> str:
  path = os.path.join(directory, wd.LOCK_FILE)
  with open(path, "w") as f:
    json.dump(record, f)
  return path


def test_second_process_refuses_live_lock(tmp_path):
  workdir = str(tmp_path / "run")
  with wd.WorkdirLock(workdir) as lock:
    assert json.load(open(lock.path))["pid"] == os.getpid()
    code = f"from model_lib.workdir import WorkdirLock\nWorkdirLock({workdir!r}).acquire()"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert "WorkdirBusyError" in last and f"PID {os.getpid()}" in last and workdir in last
    with pytest.raises(wd.WorkdirBusyError):  # Also within one process.
      wd.WorkdirLock(workdir).acquire()
  assert not os.path.exists(os.path.join(workdir, wd.LOCK_FILE))


def test_stale_lock_is_taken_over_with_warning(tmp_path, caplog):
  dead = _dead_pid()
  _write_lock(tmp_path, pid=dead, hostname=socket.gethostname(), start=None)
  with caplog.at_level(logging.WARNING, logger="model_lib.workdir"):
    with wd.WorkdirLock(str(tmp_path)) as lock:
      assert json.load(open(lock.path))["pid"] == os.getpid()
  assert f"PID {dead}" in caplog.text and "stale" in caplog.text


def test_reused_pid_with_other_start_time_is_stale(tmp_path):
  if wd._process_start(os.getpid()) is None:
    pytest.skip("no /proc start times on this system")
  _write_lock(tmp_path, pid=os.getpid(), hostname=socket.gethostname(), start="1")
  with wd.WorkdirLock(str(tmp_path)) as lock:
    assert json.load(open(lock.path))["start"] == wd._process_start(os.getpid())


def test_lock_from_other_host_or_unreadable(tmp_path):
  _write_lock(tmp_path, pid=_dead_pid(), hostname="elsewhere.example", start=None)
  with pytest.raises(wd.WorkdirBusyError, match="elsewhere.example"):
    wd.WorkdirLock(str(tmp_path)).acquire()
  with open(os.path.join(tmp_path, wd.LOCK_FILE), "w") as f:
    f.write("{half")  # A writer that died mid-write.
  with wd.WorkdirLock(str(tmp_path)):
    pass


def test_release_keeps_a_lock_taken_over_by_another_process(tmp_path):
  lock = wd.WorkdirLock(str(tmp_path))
  lock.acquire()
  path = _write_lock(tmp_path, pid=12345678, hostname=socket.gethostname(), start=None)
  lock.release()
  assert os.path.exists(path)
  assert wd.WorkdirLock(str(tmp_path), enabled=False).__enter__() is not None  # Disabled: never touches the file.


def _save_config(directory, config) -> None:
  with open(os.path.join(directory, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True))


def test_config_change_in_model_is_refused_unless_allowed(tmp_path):
  workdir = str(tmp_path)
  assert wd.check_config_compatible(workdir, digits_mlp.get_config()) == []  # Nothing saved yet.
  _save_config(workdir, digits_mlp.get_config())
  assert wd.check_config_compatible(workdir, digits_mlp.get_config()) == []  # Tuples vs saved lists: equal.
  changed = digits_mlp.get_config()
  changed.model.hidden_sizes = (64,)
  with pytest.raises(ValueError, match=r"model\.hidden_sizes") as err:
    wd.check_config_compatible(workdir, changed, allow_change=False)
  assert "\n" not in str(err.value)
  assert wd.check_config_compatible(workdir, changed, allow_change=True) == ["model.hidden_sizes"]


def test_config_changes_outside_model_data_are_fine(tmp_path):
  _save_config(tmp_path, digits_mlp.get_config())
  config = digits_mlp.get_config()
  config.optimizer.learning_rate = 0.1
  config.train.num_epochs = 100
  config.data.data_dir = "/moved/data"
  assert wd.check_config_compatible(str(tmp_path), config) == []
  config.data.batch_size = 64
  config.model.dropout = 0.0
  with pytest.raises(ValueError, match=r"data\.batch_size.*model\.dropout"):
    wd.check_config_compatible(str(tmp_path), config)


def test_write_run_info(tmp_path):
  config = digits_mlp.get_config()
  config.seed = 7
  info = wd.write_run_info(str(tmp_path), config, ["train.py", "--workdir=x"])
  saved = json.load(open(tmp_path / wd.RUN_INFO_FILE))
  assert saved == info
  assert info["seed"] == 7 and info["command"] == ["train.py", "--workdir=x"]
  assert set(info["packages"]) == {"jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy"}
  assert info["packages"]["jax"] and info["device_count"] >= 1 and info["process_count"] == 1
  assert info["device_kind"] and info["python"] == ".".join(map(str, sys.version_info[:3]))
  head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
  if head.returncode == 0:
    assert info["git"]["commit"] == head.stdout.strip() and isinstance(info["git"]["dirty"], bool)
  assert info["previous"] == []
  again = wd.write_run_info(str(tmp_path), config, ["resume"])
  assert [p["command"] for p in again["previous"]] == [["train.py", "--workdir=x"]]


def test_git_state_outside_a_checkout(tmp_path):
  assert wd.git_state(str(tmp_path)) == {"commit": None, "dirty": None}


def test_keys_added_to_the_schema_after_a_run_do_not_count_as_changes(tmp_path):
  import json

  from experiments.configs import digits_mlp
  from model_lib.workdir import check_config_compatible

  config = digits_mlp.get_config()
  saved = json.loads(config.to_json_best_effort())
  del saved["data"]["text_slice"]  # As written by a version before the key existed.
  (tmp_path / "config.json").write_text(json.dumps(saved))
  assert check_config_compatible(str(tmp_path), config) == []
