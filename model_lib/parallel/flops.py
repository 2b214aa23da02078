"""FLOPs of a train step (analytic formulas where they are standard, XLA's count otherwise) and device peaks.

Model FLOPs per train step (forward + backward = 3x forward, 2 FLOPs per multiply-add):
  - dense layers, LSTMs: 6 * N * T_total, N = weights that multiply every token/example (kernels; a token table
    only when it doubles as the output layer), T_total = examples (MLP) or tokens (sequence models);
  - transformers (GPT, BERT, ViT): 6 * N * T_total + 12 * L * T * d * T_total (attention scores and the weighted
    sum, PaLM appendix B; causal masking not discounted), T = sequence length (ViT: patches + [CLS]);
  - convolutions (weights reused at every position) and anything else: XLA's `cost_analysis` of the step.
"""

from __future__ import annotations

import os
import re
from typing import Any

import jax
import numpy as np

TRANSFORMERS = ("gpt", "bert", "vit")
DENSE_FORMULA = ("mlp", "lstm_classifier", "lstm_lm")

# Dense (no sparsity) peak FLOP/s per JAX device: (bf16, float32 matmuls). NVIDIA Ampere and later run float32
# matmuls on TF32 tensor cores at JAX's default precision, so their float32 column is the TF32 peak; TPUs run
# them as single-pass bf16. V100/T4 have no bf16: their first column is the fp16 tensor-core peak. Datasheets;
# first matching substring of `device_kind` wins.
PEAK_FLOPS: tuple[tuple[str, float, float], ...] = (
    ("H100 PCIe", 756e12, 378e12),
    ("H100 NVL", 835e12, 418e12),
    ("H100", 989e12, 495e12),  # SXM
    ("H200", 989e12, 495e12),
    ("H800", 989e12, 495e12),
    ("B200", 2250e12, 1100e12),
    ("A100", 312e12, 156e12),
    ("A800", 312e12, 156e12),
    ("L40S", 362e12, 183e12),
    ("L4", 121e12, 60e12),
    ("V100", 125e12, 15.7e12),
    ("T4", 65e12, 8.1e12),
    ("TPU v6", 918e12, 918e12),  # v6e (Trillium), per chip.
    ("TPU v5 lite", 197e12, 197e12),  # v5e.
    ("TPU v5e", 197e12, 197e12),
    ("TPU v5p", 459e12, 459e12),
    ("TPU v5", 459e12, 459e12),
    ("TPU v4", 275e12, 275e12),  # One JAX device per chip (megacore).
    ("TPU v3", 61.5e12, 61.5e12),  # One JAX device per core (2 per chip).
    ("TPU v2", 22.5e12, 22.5e12),
)


def _paths(tree: Any) -> list[tuple[tuple[str, ...], Any]]:
  return [(tuple(str(getattr(k, "key", k)) for k in path), leaf)
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]]


def matmul_params(params: Any, tied_embedding: bool = False) -> int:
  """Weights that multiply every token: kernels (ndim >= 2), not biases, position/segment tables or [CLS]."""
  total = 0
  for path, leaf in _paths(params):
    if len(leaf.shape) < 2 or path[-1] in ("pos_embed", "cls") or path[-1].endswith("bias"):
      continue
    if path[-1] == "embedding" and not (tied_embedding and "token" in path[-2]):
      continue  # A lookup, not a matmul (unless the table is also the output layer).
    total += int(np.prod(leaf.shape))
  return total


def model_flops(model_cfg: Any, params: Any, batch_size: int, seq_len: int | None) -> tuple[float | None, str]:
  """(FLOPs per train step, formula) by the analytic rules above; (None, reason) where XLA must count."""
  name = model_cfg.name
  tokens = batch_size * (seq_len or 1)
  if name in TRANSFORMERS:
    tied = model_cfg.get("tie_embeddings", True) if name == "gpt" else name == "bert" and model_cfg.get("head") == "mlm"
    n = matmul_params(params, tied)
    layers, width = model_cfg.get("num_layers", 0), model_cfg.get("embed_dim", 0)
    flops = 6 * n * tokens + 12 * layers * seq_len * width * tokens
    return float(flops), f"6*N*tokens + 12*L*T*d*tokens (N={n}, L={layers}, T={seq_len}, d={width}, tokens={tokens})"
  if name in DENSE_FORMULA:
    n = matmul_params(params, tied_embedding=False)
    unit = "tokens" if seq_len else "examples"
    return float(6 * n * tokens), f"6*N*{unit} (N={n}, {unit}={tokens})"
  return None, f"no analytic formula for model '{name}' (weights reused across positions)"


def xla_flops(lowered: Any) -> float | None:
  """FLOPs of the whole (global) step by XLA's cost analysis of the lowered program, if the backend reports it."""
  try:
    cost = lowered.cost_analysis()
  except Exception:  # noqa: BLE001 - not every backend implements it.
    return None
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  flops = (cost or {}).get("flops")
  return float(flops) if flops is not None and flops > 0 else None


def cpu_peak_flops() -> tuple[float, str]:
  """Cores x clock x float32 FLOPs per cycle (2 FMA units x SIMD lanes x 2), read from /proc/cpuinfo."""
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
  text = ""
  try:
    with open("/proc/cpuinfo") as f:
      text = f.read()
  except OSError:
    pass
  flags = set(re.search(r"^flags\s*:(.*)$", text, re.M).group(1).split()) if "flags" in text else set()
  model = re.search(r"^model name\s*:(.*)$", text, re.M)
  ghz_in_name = re.search(r"@\s*([\d.]+)\s*GHz", model.group(1)) if model else None
  mhz = [float(v) for v in re.findall(r"^cpu MHz\s*:\s*([\d.]+)", text, re.M)]
  ghz = float(ghz_in_name.group(1)) if ghz_in_name else (max(mhz) / 1000 if mhz else 2.0)
  if "avx512f" in flags:
    per_cycle, isa = 64, "AVX-512: 2 FMA x 16 lanes x 2"
  elif "avx2" in flags and "fma" in flags:
    per_cycle, isa = 32, "AVX2+FMA: 2 FMA x 8 lanes x 2"
  elif "avx" in flags:
    per_cycle, isa = 16, "AVX: 8-lane add + mul"
  else:
    per_cycle, isa = 8, "SSE: 4-lane add + mul"
  peak = cores * ghz * 1e9 * per_cycle
  return peak, f"CPU: {cores} cores x {ghz:.2f} GHz x {per_cycle} FLOP/cycle ({isa}) from /proc/cpuinfo"


def peak_flops(devices: list[Any], dtype: str = "float32") -> tuple[float | None, str]:
  """(peak FLOP/s of `devices` together, where it comes from); None for an unknown accelerator."""
  d = devices[0]
  if d.platform == "cpu":
    return cpu_peak_flops()  # Fake host devices share the same cores.
  low_precision = dtype in ("bfloat16", "float16")
  for key, bf16, fp32 in PEAK_FLOPS:
    if key.lower() in d.device_kind.lower():
      per_device = bf16 if low_precision else fp32
      column = "bf16" if low_precision else "float32 matmul (TF32 on NVIDIA Ampere+, bf16 pass on TPU)"
      return per_device * len(devices), f"{d.device_kind}: {per_device / 1e12:g} TFLOP/s {column} x {len(devices)}"
  return None, f"unknown device kind '{d.device_kind}': pass --peak_flops"
