"""tools.benchmark: one JSON object with throughput, compile time, FLOPs and MFU, on synthetic batches."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import ml_collections

from experiments.configs import shakespeare_char_gpt
from model_lib.parallel import benchmark as bench
from model_lib.parallel import flops

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYS = {"examples_per_sec", "tokens_per_sec", "step_time_ms", "compile_s", "model_flops_per_step", "mfu",
        "peak_flops_per_sec", "flops_formula", "peak_source"}


def test_cli_prints_one_json_object_for_a_tiny_config():
  proc = subprocess.run([sys.executable, "-m", "tools.benchmark", "--config=experiments/configs/digits_mlp.py",
                         "--steps=4", "--warmup=1", "--windows=2", "--config.data.batch_size=16"], cwd=REPO,
                        capture_output=True, text=True, timeout=300, env={**os.environ, "MODEL_LIB_CACHE_DIR": ""})
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = proc.stdout.strip().splitlines()
  assert len(lines) == 1
  result = json.loads(lines[0])
  assert KEYS <= set(result)
  assert result["steps"] == 4 and result["batch_size"] == 16 and result["tokens_per_sec"] is None
  assert result["examples_per_sec"] > 0 and result["step_time_ms"] > 0 and 0 < result["mfu"] < 1
  assert result["model_flops_per_step"] == 6 * (64 * 256 + 256 * 128 + 128 * 10) * 16  # 6 * N * examples.


def test_transformer_reports_tokens_and_the_analytic_flops_close_to_xla():
  c = shakespeare_char_gpt.get_config()
  c.model.num_layers, c.model.embed_dim, c.model.mlp_dim, c.data.batch_size = 1, 32, 64, 4
  c.train.compilation_cache_dir = ""
  result = bench.benchmark(c, steps=2, warmup=1, windows=1)
  assert abs(result["tokens_per_sec"] / (result["examples_per_sec"] * 64) - 1) < 1e-3  # 64 tokens per example.
  assert result["flops_formula"].startswith("6*N*tokens + 12*L*T*d*tokens")
  assert 0.9 < result["xla_flops_per_step"] / result["model_flops_per_step"] < 1.2


def test_peaks_come_from_the_table_or_the_cpu():
  peak, source = flops.cpu_peak_flops()
  assert peak > 1e9 and "cores" in source
  fake = ml_collections.ConfigDict({"platform": "gpu", "device_kind": "NVIDIA H100 80GB HBM3"})
  assert flops.peak_flops([fake, fake], "bfloat16")[0] == 2 * 989e12
  assert flops.peak_flops([fake], "float32")[0] == 495e12
  unknown = ml_collections.ConfigDict({"platform": "gpu", "device_kind": "Some New GPU"})
  assert flops.peak_flops([unknown])[0] is None
  assert flops.peak_flops(jax.devices())[0] > 0


def test_every_synthetic_spec_builds_batches():
  from model_lib.config import base_config

  for name, spec in bench.DATA_SPECS.items():
    c = base_config()
    c.data.name = name
    batch = bench.synthetic_batches(c, spec, 1, 4)[0]
    assert batch["x"].shape[0] == 4 and batch["y"].shape[0] == 4
