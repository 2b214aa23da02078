"""Throughput of the real train step on synthetic batches of a config's shapes: examples/s, tokens/s, MFU.

No dataset files are read: input shapes, label ranges and head sizes come from `DATA_SPECS`. The step is the
trainer's (same mesh, shardings, runtime and donation); batches are placed on the devices before timing, so
the numbers measure the step, not the input pipeline. A suite is a list of `Workload`s (`run_suite`).
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from model_lib import config as config_lib
from model_lib import optim
from model_lib.data.base import DatasetInfo
from model_lib.models import build_model
from model_lib.parallel import flops
from model_lib.parallel.mesh import make_mesh, section
from model_lib.parallel.rules import resolve_rules
from model_lib.parallel.runtime import make_runtime, setup
from model_lib.parallel.sharding import init_sharded_state
from model_lib.train import tasks
from model_lib.train.step import make_train_step, measure_at


@dataclasses.dataclass(frozen=True)
class DataSpec:
  """What a dataset's batches look like: per-example input shape (or token ids), task and head size."""

  task: str  # classification | binary | regression | lm
  x_shape: tuple[int, ...] = ()  # Float inputs per example; unused for token inputs.
  num_outputs: int = 1
  tokens: str = ""  # "seq_len" (language models) or "max_len" (text classification): int ids of that length.
  vocab_size: int = 0  # Token vocabularies; 0 = config.data.vocab_size.


DATA_SPECS: dict[str, DataSpec] = {
    "digits": DataSpec("classification", (8, 8), 10),
    "mnist": DataSpec("classification", (28, 28), 10),
    "fashion_mnist": DataSpec("classification", (28, 28), 10),
    "cifar10": DataSpec("classification", (32, 32, 3), 10),
    "breast_cancer": DataSpec("binary", (30,)),
    "diabetes": DataSpec("regression", (10,)),
    "tiny_shakespeare": DataSpec("lm", num_outputs=66, tokens="seq_len", vocab_size=66),  # Char-level.
    "sst2": DataSpec("binary", tokens="max_len"),
    "glue/sst2": DataSpec("binary", tokens="max_len"),
    "imdb_reviews": DataSpec("binary", tokens="max_len"),
    "sst5": DataSpec("classification", num_outputs=5, tokens="max_len"),
    **{f"uci/{name}": DataSpec("regression", (features,)) for name, features in (
        ("bostonHousing", 13), ("concrete", 8), ("energy", 8), ("kin8nm", 8), ("naval-propulsion-plant", 16),
        ("power-plant", 4), ("wine-quality-red", 11), ("yacht", 6))},
}


@dataclasses.dataclass(frozen=True)
class Workload:
  """One benchmark entry: a name and a full config (a suite is a list of these)."""

  name: str
  config: ml_collections.ConfigDict


def data_spec(config: ml_collections.ConfigDict) -> DataSpec:
  name = config.data.name
  if name not in DATA_SPECS:
    raise ValueError(f"No synthetic input spec for data.name='{name}'; add one to "
                     f"model_lib/parallel/benchmark.py:DATA_SPECS (known: {sorted(DATA_SPECS)}).")
  return DATA_SPECS[name]


def _vocab(config: ml_collections.ConfigDict, spec: DataSpec) -> int:
  return spec.vocab_size or config.data.vocab_size


def dataset_info(config: ml_collections.ConfigDict, spec: DataSpec) -> DatasetInfo:
  """The DatasetInfo the real dataset would have, as far as the model and task need it."""
  classes = {"classification": spec.num_outputs, "binary": 2}.get(spec.task, 0)
  outputs = _vocab(config, spec) if spec.task == "lm" else spec.num_outputs
  return DatasetInfo(name=config.data.name, task=spec.task, num_outputs=outputs, num_classes=classes,
                     vocab_size=_vocab(config, spec) if spec.tokens else 0)


def synthetic_batches(config: ml_collections.ConfigDict, spec: DataSpec, count: int, batch_size: int,
                      seed: int = 0) -> list[dict[str, np.ndarray]]:
  """`count` random batches of `batch_size` rows shaped like the dataset's training batches."""
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(count):
    if spec.tokens:
      length = config.data[spec.tokens]
      x = rng.integers(1, _vocab(config, spec), (batch_size, length + (spec.task == "lm"))).astype(np.int32)
      if spec.task == "lm":
        out.append({"x": x[:, :-1], "y": x[:, 1:], "weights": np.ones((batch_size, length), np.float32)})
        continue
    else:
      x = rng.normal(size=(batch_size,) + spec.x_shape).astype(np.float32)
    if spec.task == "classification":
      y = rng.integers(0, spec.num_outputs, batch_size).astype(np.int32)
    elif spec.task == "binary":
      y = rng.integers(0, 2, batch_size).astype(np.int32)
    else:
      y = rng.normal(size=batch_size).astype(np.float32)
    out.append({"x": x, "y": y})
  return out


def _tokens_per_example(config: ml_collections.ConfigDict, spec: DataSpec) -> int | None:
  """Sequence length the FLOP formula uses: token inputs, or a ViT's patches (+ [CLS])."""
  if spec.tokens:
    return config.data[spec.tokens]
  m = config.model
  if m.name == "vit":
    return (m.get("image_size", 224) // m.get("patch_size", 16)) ** 2 + (m.get("pool", "cls") == "cls")
  return None


@dataclasses.dataclass
class PreparedStep:
  """A compiled train step with its state and two device batches; `run(n)` does n steps and waits for them."""

  config: ml_collections.ConfigDict
  spec: DataSpec
  mesh: Any
  rules: Any
  pmap: bool
  lowered: Any
  compiled: Any
  compile_s: float
  params_shapes: Any
  state: Any
  batches: list[Any]
  key: jax.Array
  metrics: Any = None
  done: int = 0

  @property
  def num_params(self) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(self.params_shapes))

  def run(self, n: int) -> float:
    """Runs `n` steps (dispatching all, then one wait); returns the seconds they took."""
    t = time.perf_counter()
    for _ in range(n):
      self.state, self.metrics = self.compiled(self.state, self.batches[self.done % 2], self.key)
      self.done += 1
    jax.block_until_ready((self.state, self.metrics))
    return time.perf_counter() - t


def prepare(config: ml_collections.ConfigDict, spec: DataSpec | None = None) -> PreparedStep:
  """Builds and compiles the trainer's step for `config` on synthetic batches (spec: default `data_spec`)."""
  config_lib.validate(config)
  setup(config)
  spec = spec or data_spec(config)
  mesh = make_mesh(config)
  rules = resolve_rules(section(config, "mesh").rules, dict(mesh.shape))
  pmap = section(config, "parallel").mode == "pmap"
  info = dataset_info(config, spec)
  task = tasks.build_task(info, label_smoothing=config.train.label_smoothing)
  model = build_model(config.model, num_outputs=info.num_outputs, vocab_size=info.vocab_size or None,
                      batch_norm_axis_name="batch" if pmap else None)
  warmup_steps = config.optimizer.get("schedule", {}).get("warmup_steps", 0)
  tx, _ = optim.build_optimizer(config.optimizer, max(config.train.num_steps, 10 * warmup_steps, 10_000))
  global_batch = config.data.batch_size
  batches = synthetic_batches(config, spec, 2, global_batch // jax.process_count(), seed=jax.process_index())
  state, shardings = init_sharded_state(model, tx, batches[0]["x"], jax.random.key(config.seed), mesh, rules)
  params_shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state.params)
  runtime = make_runtime(config, mesh, shardings, rules)
  step = runtime.jit_train_step(make_train_step(task, config.optimizer.l1, config.optimizer.l2,
                                                guard_nonfinite=config.train.nan_policy == "skip",
                                                measure=measure_at(config.train.log_every),
                                                axis_name=runtime.axis_name))
  device_batches = [runtime.put_batch(b) for b in batches]
  state, key = runtime.from_global(state), jax.random.key(config.seed + 1)
  t0 = time.perf_counter()
  lowered = step.lower(state, device_batches[0], key)
  compiled = lowered.compile()
  compile_s = time.perf_counter() - t0
  return PreparedStep(config, spec, mesh, rules, pmap, lowered, compiled, compile_s, params_shapes, state,
                      device_batches, key)


def benchmark(config: ml_collections.ConfigDict, steps: int = 20, warmup: int = 2, windows: int = 5,
              peak_flops: float = 0.0, name: str = "") -> dict[str, Any]:
  """Times `steps` train steps after `warmup` (median of `windows` timed windows); returns one flat dict."""
  prepared = prepare(config)
  spec, mesh, rules, pmap = prepared.spec, prepared.mesh, prepared.rules, prepared.pmap
  global_batch = config.data.batch_size
  compile_s, lowered, params_shapes = prepared.compile_s, prepared.lowered, prepared.params_shapes
  if warmup:
    prepared.run(warmup)
  per_window = max(1, steps // max(windows, 1))
  times, done = [], 0
  while done < steps:
    n = min(per_window, steps - done)
    times.append(prepared.run(n) / n)
    done += n
  metrics = prepared.metrics
  step_s = statistics.median(times) if times else float("nan")

  seq = _tokens_per_example(config, spec)
  model_flops, formula = flops.model_flops(config.model, params_shapes, global_batch, seq)
  counted = flops.xla_flops(lowered)
  if model_flops is None:
    model_flops, formula = counted, f"XLA cost_analysis of the step ({formula})"
  peak, peak_source = (peak_flops, "--peak_flops") if peak_flops else flops.peak_flops(jax.devices(),
                                                                                          config.model.get("dtype",
                                                                                                           "float32"))
  device = jax.devices()[0]
  return {
      "name": name or config.model.name,
      "model": config.model.name,
      "data": config.data.name,
      "platform": device.platform,
      "device_kind": device.device_kind,
      "devices": jax.device_count(),
      "processes": jax.process_count(),
      "mesh": dict(mesh.shape),
      "rules": rules,
      "mode": "pmap" if pmap else "jit",
      "dtype": config.model.get("dtype", "float32"),
      "batch_size": global_batch,
      "seq_len": seq if spec.tokens else None,
      "steps": done,
      "warmup_steps": warmup,
      "compile_s": round(compile_s, 3),  # A persistent-cache hit makes this small; see compilation_cache.
      "compilation_cache": config.train.get("compilation_cache_dir", "") or None,
      "step_time_ms": round(step_s * 1e3, 3),
      "step_time_ms_windows": [round(t * 1e3, 3) for t in times],
      "examples_per_sec": round(global_batch / step_s, 2),
      "tokens_per_sec": round(global_batch * seq / step_s, 1) if spec.tokens else None,
      "model_flops_per_step": model_flops,
      "flops_formula": formula,
      "xla_flops_per_step": counted,
      "peak_flops_per_sec": peak,
      "peak_source": peak_source,
      "mfu": round(model_flops / step_s / peak, 5) if model_flops and peak else None,
      "final_loss": float(np.asarray(jax.device_get(metrics["loss"])).reshape(-1)[0]) if done or warmup else None,
  }


def run_suite(workloads: list[Workload], **kwargs: Any) -> list[dict[str, Any]]:
  """`benchmark` for each workload, in order."""
  return [benchmark(w.config, name=w.name, **kwargs) for w in workloads]
