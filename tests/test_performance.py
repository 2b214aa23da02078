"""Performance plumbing: the loop never reads the device between logging steps; the peer benchmark is comparable."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from benchmarks import peers
from experiments.configs import digits_mlp
from model_lib.config import ConfigError, validate
from model_lib.parallel import benchmark as bench
from model_lib.train import loop, trainer


def _digits(steps: int = 24, **train):
  c = digits_mlp.get_config()
  c.train.update(num_epochs=0, num_steps=steps, log_every=8, eval_every=12, **train)
  c.train.compilation_cache_dir = ""
  return c


@pytest.fixture
def guard_on_cpu(monkeypatch):
  """Makes jax.transfer_guard_device_to_host bite on CPU too, where device memory is host memory and JAX lets
  every read through: reading an array's value (float(), bool(), .tolist(), f-strings, device_get) raises
  under 'disallow'. (NumPy's zero-copy buffer path, np.asarray, has no Python hook to catch.)"""
  from jax._src import array, config

  value, to_numpy = array.ArrayImpl._value, array.ArrayImpl.__array__

  def check():
    if (config.transfer_guard_device_to_host.value or "allow").startswith("disallow"):
      raise RuntimeError("Disallowed device-to-host transfer (emulated on CPU by tests/test_performance.py).")

  monkeypatch.setattr(array.ArrayImpl, "_value", property(lambda self: (check(), value.fget(self))[1]))
  monkeypatch.setattr(array.ArrayImpl, "__array__", lambda self, *a, **k: (check(), to_numpy(self, *a, **k))[1])


def test_the_loop_does_no_device_to_host_transfer_between_logging_steps(tmp_path, guard_on_cpu):
  summary = trainer.train_and_evaluate(_digits(transfer_guard="disallow_explicit"), str(tmp_path), show_progress=False)
  assert summary["step"] == 24


def test_the_transfer_guard_catches_a_read_between_logging_steps(tmp_path, monkeypatch, guard_on_cpu):
  done = loop.StepProfiler.done

  def reads_the_loss(self, step, outputs):  # A per-step host read, as a careless log line would do.
    float(outputs["loss"])
    return done(self, step, outputs)

  monkeypatch.setattr(loop.StepProfiler, "done", reads_the_loss)
  with pytest.raises(Exception, match="[Dd]isallowed device-to-host transfer"):
    trainer.train_and_evaluate(_digits(transfer_guard="disallow"), str(tmp_path), show_progress=False)
  trainer.train_and_evaluate(_digits(), str(tmp_path / "allowed"), show_progress=False)  # The default allows it.


def test_an_unknown_transfer_guard_level_is_a_config_error():
  with pytest.raises(ConfigError, match="train.transfer_guard"):
    validate(_digits(transfer_guard="forbid"))


def test_peer_configs_match_the_stated_workloads_in_parameter_count():
  # Closed-form counts of the workload definitions in the issue / benchmarks/peers.py.
  d, v, t = 128, 65, 64
  gpt_block = 4 * d * d + 4 * d + 2 * (d * 4 * d) + 4 * d + d + 4 * d  # qkv+out, fc1+fc2, two LNs.
  expected = {
      "mlp": 784 * 512 + 512 + 512 * 512 + 512 + 512 * 10 + 10,
      "cnn": 9 * 32 + 32 + 9 * 32 * 64 + 64 + 1600 * 128 + 128 + 128 * 10 + 10,
      "lstm": 10000 * 128 + (128 + 128) * 512 + 512 + 128 + 1,
      "gpt": v * d + t * d + 4 * gpt_block + 2 * d,
  }
  for name, count in expected.items():
    prepared = bench.prepare(peers.peer_config(name, {"train.compilation_cache_dir": ""}), peers.PEERS[name].spec)
    assert prepared.num_params == count, name


def test_peer_suite_runs_model_lib_and_the_minimal_flax_step_on_the_same_batches():
  rows = peers.run_peers(["mlp"], rounds=2, steps=2, warmup=1, torch=False,
                         overrides={"train.compilation_cache_dir": ""})
  (row,) = rows
  assert row["model_lib"]["params"] == row["flax_minimal"]["params"] == 669_706
  assert len(row["model_lib"]["step_ms_rounds"]) == 2 and row["model_lib"]["step_ms"] > 0
  assert row["flax_minimal_over_model_lib"] > 0
  assert "| mlp (128) |" in peers.table(rows)


def test_pytorch_peers_have_the_same_parameter_counts():
  pytest.importorskip("torch")
  from benchmarks import torch_peers

  for name in peers.PEERS:
    config = peers.peer_config(name, {"train.compilation_cache_dir": ""})
    batches = bench.synthetic_batches(config, peers.PEERS[name].spec, 2, 2)
    ours = bench.prepare(config, peers.PEERS[name].spec).num_params
    theirs = torch_peers.TorchStep(name, batches, 1e-3, 0.01, threads=1)
    theirs.run(1)
    assert np.isfinite(theirs.loss)
    # torch.nn.LSTM keeps two bias vectors (input and recurrent); model_lib keeps their sum.
    assert theirs.num_params - ours == (4 * 128 if name == "lstm" else 0), name


def test_setup_malloc_stops_large_buffers_from_being_page_faulted_in_every_time():
  import subprocess
  import sys

  script = """
import ctypes, resource
from model_lib.parallel.runtime import setup_malloc
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
def faults_per_buffer():
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  for _ in range(5):  # 64 MiB written and freed, as XLA:CPU's scratch buffers are each step.
    p = libc.malloc(64 << 20)
    ctypes.memset(p, 1, 64 << 20)
    libc.free(p)
  return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5
default = faults_per_buffer()
assert setup_malloc(256)
faults_per_buffer()  # The first buffer after the change is faulted in once.
print(default, faults_per_buffer())
"""
  out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  default, tuned = map(float, out.stdout.split())
  assert default > 10_000  # A fresh mmap each time: 64 MiB / 4 KiB = 16,384 page faults.
  assert tuned < 0.1 * default
