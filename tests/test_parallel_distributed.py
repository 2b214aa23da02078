"""Two processes on localhost (jax.distributed + gloo, 2 CPU devices each) train like one process with 4 devices."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import numpy as np
import portpicker
import pytest

from model_lib.checkpoint_inspect import restore_raw

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Full-batch training (398 = the whole train split), so one process's order of examples equals the other's;
# the (data=2, tensor=2) mesh puts half the batch on each process and splits the hidden layer across devices.
ARGS = ["-m", "experiments.train", "--config=experiments/configs/breast_cancer_logreg.py",
        "--config.data.batch_size=398", "--config.train.num_epochs=3", "--config.train.log_every=1",
        "--config.model.hidden_sizes=(16,)", "--config.mesh.data=2", "--config.mesh.tensor=2"]


def _env(devices: int) -> dict[str, str]:
  return {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}", "MODEL_LIB_CACHE_DIR": "",
          "PYTHONUNBUFFERED": "1"}


def _rows(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


@pytest.mark.slow
def test_two_processes_train_like_one_process_and_only_process_0_writes_logs(tmp_path):
  multi, single = str(tmp_path / "multi"), str(tmp_path / "single")
  port = portpicker.pick_unused_port()
  procs = [subprocess.Popen([sys.executable, *ARGS, f"--workdir={multi}", "--config.distributed.enabled=true",
                             f"--config.distributed.coordinator_address=127.0.0.1:{port}",
                             "--config.distributed.num_processes=2", f"--config.distributed.process_id={i}"],
                            cwd=REPO, env=_env(2), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  try:
    outputs = [p.communicate(timeout=240) for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  for p, (out, err) in zip(procs, outputs):
    assert p.returncode == 0, err[-3000:]
    assert "step 3: test" in out
  ref = subprocess.run([sys.executable, *ARGS, f"--workdir={single}"], cwd=REPO, env=_env(4), capture_output=True,
                       text=True, timeout=240)
  assert ref.returncode == 0, ref.stderr[-3000:]

  rows_multi, rows_single = _rows(multi), _rows(single)
  assert [(r["step"], r["split"]) for r in rows_multi] == [(r["step"], r["split"]) for r in rows_single]
  for a, b in zip(rows_multi, rows_single):
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=0, atol=1e-5)
  assert len([f for f in os.listdir(multi) if f.startswith("events.out.tfevents")]) == 1  # Process 1 wrote none.
  params_multi = restore_raw(os.path.join(multi, "checkpoints"), 3)["params"]
  params_single = restore_raw(os.path.join(single, "checkpoints"), 3)["params"]
  for x, y in zip(jax.tree.leaves(params_multi), jax.tree.leaves(params_single)):
    np.testing.assert_allclose(x, y, rtol=0, atol=1e-5)
