"""The shared config schema (every experiment config starts from `base_config()`) and its validation.

Validation runs before anything is compiled or loaded and raises `ConfigError` with one line that
names the key and the fix. `model.*` is free-form (checked by the model's constructor).
"""

from __future__ import annotations

import difflib
import os
from typing import Any

import ml_collections

from model_lib.data.base import default_data_dir

FREE_FORM = ("model",)  # Sections whose keys depend on the chosen entry.


class ConfigError(ValueError):
  """A config problem, stated in one line with the fix."""


def base_config() -> ml_collections.ConfigDict:
  """Every shared key with its default; experiment configs override what they need."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.model = ml_collections.ConfigDict({"name": "mlp"})
  c.data = ml_collections.ConfigDict({
      "name": "digits",
      "data_dir": default_data_dir(),  # Local files and prepared TFDS data; '' = env MODEL_LIB_DATA_DIR.
      "batch_size": 32,
      "eval_batch_size": 512,
      "val_fraction": 0.1,  # Embedded (scikit-learn) datasets: fractions of a fixed, seeded split.
      "test_fraction": 0.2,
      "split_seed": 0,
      "val_size": 5000,  # MNIST: the last `val_size` training images form the validation split.
      "source": "auto",  # auto | tfds | local | embedded
      "seq_len": 64,  # Language models: tokens per training window (context length).
      "max_len": 64,  # Text classification: sequences are truncated/padded to this many tokens.
      "vocab_size": 10000,  # Word/subword vocabularies: size limit (incl. PAD and OOV).
      "tokenizer": "word",  # char | word | subword
      "tokenizer_path": "",  # Reuse a saved tokenizer.json instead of building one (fine-tuning).
      "lowercase": True,  # Applies to every tokenizer (set False for char-level Shakespeare).
      "uci_split": 0,
      "text_slice": (0.0, 1.0),  # tiny_shakespeare: the fraction [a, b) of the corpus to use.  # UCI regression sets: which of the standard splits (0-4).
      "augment": ml_collections.ConfigDict({
          "random_crop": 0,  # Pixels of zero padding before a random crop back to size (0 = off).
          "flip": False,  # Random horizontal flips.
          "normalize": False,  # Per-channel normalisation with the dataset's statistics.
          "mixup_alpha": 0.0,  # Beta(alpha, alpha) mixup (0 = off).
      }),
  })
  c.optimizer = ml_collections.ConfigDict({
      "name": "adam",
      "learning_rate": 1e-3,
      "schedule": ml_collections.ConfigDict({
          "name": "constant", "warmup_steps": 0, "decay_steps": 0, "end_factor": 0.0,
          "step_size": 1000, "decay_rate": 0.1}),
      "momentum": 0.9,
      "nesterov": False,
      "b1": 0.9,
      "b2": 0.999,
      "eps": 1e-8,
      "decay": 0.9,  # RMSprop's second-moment decay.
      "weight_decay": 0.0,  # Decoupled (AdamW-style) on kernels.
      "l1": 0.0,  # Loss penalties on kernels: l1 * sum|w| + l2 * sum w².
      "l2": 0.0,
      "grad_clip_norm": 0.0,  # 0 = no clipping.
      "accumulate_steps": 1,
      "freeze": "",  # Regex over parameter paths ('Encoder/.*'): matching parameters are not updated.
      "lr_multipliers": (),  # ("regex=mult", ...): learning-rate multiplier of matching parameters (first wins).
      "layer_decay": 0.0,  # Layer-wise LR decay: layer i of L gets decay ** (L + 1 - i) (0 = off).
      "prune": ml_collections.ConfigDict({  # Magnitude pruning (model_lib/compress/prune.py); sparsity 0 = off.
          "sparsity": 0.0, "scope": "global", "schedule": "gradual", "begin_step": 0, "end_step": 0,
          "frequency": 100}),
  })
  c.quant = ml_collections.ConfigDict({"qat": False})  # Quantization-aware training: int8 fake-quant kernels.
  c.distill = ml_collections.ConfigDict({  # Knowledge distillation from a trained teacher run ('' = off).
      "teacher_workdir": "", "alpha": 0.5, "temperature": 4.0})
  c.init_from = ""  # Workdir (or checkpoint dir) whose matching parameters initialise this run (fine-tuning).
  c.init_from_step = -1  # -1 = its best checkpoint, else its latest.
  c.federated = ml_collections.ConfigDict({  # experiments.fedavg only (model_lib/federated.py).
      "num_clients": 10, "rounds": 20, "local_steps": 5, "client_batch_size": 32,
      "partitions": ("iid", "label_skew"), "classes_per_client": 2, "eval_every": 1,
  })
  c.train = ml_collections.ConfigDict({
      "num_steps": 0,  # Exactly one of num_steps / num_epochs is > 0.
      "num_epochs": 0,
      "log_every": 50,
      "eval_every": 0,  # 0 = once per epoch.
      "eval_split": "val",  # Split used for periodic evaluation and early stopping ('test' if no 'val').
      "checkpoint_every": 0,  # 0 = at every evaluation.
      "keep_checkpoints": 3,
      "async_checkpointing": True,
      "label_smoothing": 0.0,
      "allow_config_change": False,
      "nan_policy": "raise",  # raise | skip (drop the update, count it) | rollback (restore last checkpoint).
      "rollback_lr_factor": 0.5,  # rollback: multiply the learning rate by this after each rollback.
      "max_rollbacks": 3,
      "sample_tokens": 0,  # Language models: tokens to sample into DIR/samples.txt at the end (0 = none).
      "sample_prompt": "\n",  # Resume a workdir whose saved model/data config differs.
      "early_stopping": ml_collections.ConfigDict({"metric": "", "mode": "max", "patience": 0}),
      # jax.transfer_guard_device_to_host level between logging steps: allow | log | disallow |
      # disallow_explicit (the step loop must never read device values there; "disallow" proves it).
      "transfer_guard": "allow",
      "profile_steps": "",  # "a,b": jax.profiler trace of train steps a..b into DIR/profile ("" = off).
      # Persistent XLA compilation cache ("" = off); default env MODEL_LIB_CACHE_DIR or ~/.cache/model_lib/jax.
      # glibc malloc: allocations below this many MiB are reused instead of mmap'ed and page-faulted in again
      # every step (XLA:CPU's per-step scratch buffers). Process-wide; 0 = leave glibc's default (32 MiB, dynamic).
      "malloc_mmap_threshold_mb": 256,
      "compilation_cache_dir": os.environ.get("MODEL_LIB_CACHE_DIR",
                                              os.path.join(os.path.expanduser("~"), ".cache", "model_lib", "jax")),
  })
  # Device mesh over all devices of all processes: data x fsdp x tensor must equal the device count.
  c.mesh = ml_collections.ConfigDict({
      "data": -1,  # Data-parallel replicas (-1 = the devices left over by the other axes).
      "fsdp": 1,  # Params and optimizer state sharded (ZeRO-3 style); the batch is split over data x fsdp.
      "tensor": 1,  # Megatron tensor parallelism: attention heads and MLP hidden units split.
      "rules": "auto",  # auto | dp | fsdp | tp | fsdp_tp: logical-axis -> mesh-axis rules (auto: from the sizes).
  })
  c.parallel = ml_collections.ConfigDict({
      "mode": "jit",  # jit (GSPMD over config.mesh) | pmap (data parallelism with jax.pmap, mesh.data only).
  })
  # Multi-host: jax.distributed.initialize before anything touches a device.
  c.distributed = ml_collections.ConfigDict({
      "enabled": False,
      "coordinator_address": "",  # host:port of process 0; "" = auto-detect (TPU pod, SLURM, GKE/Kubernetes).
      "num_processes": 0,  # 0 = auto-detect.
      "process_id": -1,  # -1 = auto-detect.
      "local_device_ids": "",  # Comma-separated ids of this process's devices ("" = all visible).
  })
  return c


def _flatten(cfg: ml_collections.ConfigDict, prefix: str = "") -> dict[str, Any]:
  out = {}
  for k, v in cfg.items():
    path = f"{prefix}{k}"
    if isinstance(v, ml_collections.ConfigDict):
      out.update(_flatten(v, path + "."))
    else:
      out[path] = v
  return out


def _fail(msg: str) -> None:
  raise ConfigError(msg)


def check_keys(config: ml_collections.ConfigDict) -> None:
  """Every key outside `model` must exist in the schema, with a compatible type."""
  schema = _flatten(base_config())
  for path, value in _flatten(config).items():
    if path.split(".")[0] in FREE_FORM:
      continue
    if path not in schema:
      close = difflib.get_close_matches(path, schema, n=1)
      _fail(f"Unknown config key '{path}'." + (f" Did you mean '{close[0]}'?" if close else "")
            + " See model_lib/config.py:base_config for the keys.")
    expected = type(schema[path])
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
      continue
    if not isinstance(value, expected):
      _fail(f"Config key '{path}' must be {expected.__name__}, got {type(value).__name__} {value!r}.")


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError on unknown keys, wrong types and impossible values."""
  from model_lib.data import DATASETS  # Local imports: registries fill on import.
  from model_lib.models import MODELS
  from model_lib.optim import OPTIMIZERS, SCHEDULES

  check_keys(config)
  for section in ("model", "data", "optimizer", "train"):
    if section not in config:
      _fail(f"Config has no '{section}' section; start from model_lib.config.base_config().")
  for value, registry, key in ((config.model.name, MODELS, "model.name"), (config.data.name, DATASETS, "data.name"),
                               (config.optimizer.name, OPTIMIZERS, "optimizer.name"),
                               (config.optimizer.schedule.name, SCHEDULES, "optimizer.schedule.name")):
    if value not in registry:
      _fail(f"Unknown {registry.kind} '{value}' (config key {key}); choose one of {registry.names()}.")
  d, o, t = config.data, config.optimizer, config.train
  if d.batch_size <= 0:
    _fail(f"data.batch_size must be > 0, got {d.batch_size}.")
  if d.eval_batch_size <= 0:
    _fail(f"data.eval_batch_size must be > 0, got {d.eval_batch_size}.")
  if o.learning_rate <= 0:
    _fail(f"optimizer.learning_rate must be > 0, got {o.learning_rate}.")
  for key in ("weight_decay", "l1", "l2", "grad_clip_norm"):
    if o[key] < 0:
      _fail(f"optimizer.{key} must be >= 0, got {o[key]}.")
  if not 0 <= o.prune.sparsity < 1:
    _fail(f"optimizer.prune.sparsity must be in [0, 1), got {o.prune.sparsity}.")
  if o.accumulate_steps < 1:
    _fail(f"optimizer.accumulate_steps must be >= 1, got {o.accumulate_steps}.")
  if (t.num_steps > 0) == (t.num_epochs > 0):
    _fail(f"Set exactly one of train.num_steps / train.num_epochs > 0 (got {t.num_steps} / {t.num_epochs}).")
  if t.num_steps < 0 or t.num_epochs < 0:
    _fail("train.num_steps and train.num_epochs must be >= 0.")
  for key in ("log_every", "keep_checkpoints"):
    if t[key] <= 0:
      _fail(f"train.{key} must be > 0, got {t[key]}.")
  for key in ("eval_every", "checkpoint_every"):
    if t[key] < 0:
      _fail(f"train.{key} must be >= 0 (0 = default), got {t[key]}.")
  if t.early_stopping.mode not in ("min", "max"):
    _fail(f"train.early_stopping.mode must be 'min' or 'max', got '{t.early_stopping.mode}'.")
  if t.early_stopping.patience < 0:
    _fail(f"train.early_stopping.patience must be >= 0, got {t.early_stopping.patience}.")
  if not 0 <= t.label_smoothing < 1:
    _fail(f"train.label_smoothing must be in [0, 1), got {t.label_smoothing}.")
  if t.nan_policy not in ("raise", "skip", "rollback"):
    _fail(f"train.nan_policy must be 'raise', 'skip' or 'rollback', got '{t.nan_policy}'.")
  if not 0 < t.rollback_lr_factor <= 1:
    _fail(f"train.rollback_lr_factor must be in (0, 1], got {t.rollback_lr_factor}.")
  if d.source not in ("auto", "tfds", "local", "embedded"):
    _fail(f"data.source must be one of auto, tfds, local, embedded; got '{d.source}'.")
  if d.tokenizer not in ("char", "word", "subword"):
    _fail(f"data.tokenizer must be one of char, word, subword; got '{d.tokenizer}'.")
  if d.seq_len <= 0 or d.max_len <= 0:
    _fail(f"data.seq_len and data.max_len must be > 0 (got {d.seq_len}, {d.max_len}).")
  if t.eval_split not in ("val", "test", "train"):
    _fail(f"train.eval_split must be 'val', 'test' or 'train', got '{t.eval_split}'.")
  _validate_parallel(config)


MESH_RULES = ("auto", "dp", "fsdp", "tp", "fsdp_tp")
PARALLEL_MODES = ("jit", "pmap")


def _validate_parallel(config: ml_collections.ConfigDict) -> None:
  """Static checks of mesh/parallel/distributed/profiling keys (the device count is checked by parallel.mesh)."""
  m, t = config.get("mesh"), config.train
  if m is not None:
    for key in ("data", "fsdp", "tensor"):
      if m[key] == 0 or m[key] < -1:
        _fail(f"mesh.{key} must be -1 (the rest of the devices) or >= 1, got {m[key]}.")
    if [m.data, m.fsdp, m.tensor].count(-1) > 1:
      _fail(f"At most one of mesh.data/fsdp/tensor may be -1, got {m.data}/{m.fsdp}/{m.tensor}; set the others.")
    if m.rules not in MESH_RULES:
      _fail(f"mesh.rules must be one of {', '.join(MESH_RULES)}; got '{m.rules}'.")
  p = config.get("parallel")
  if p is not None:
    if p.mode not in PARALLEL_MODES:
      _fail(f"parallel.mode must be 'jit' or 'pmap', got '{p.mode}'.")
    if p.mode == "pmap" and m is not None and (m.fsdp != 1 or m.tensor != 1):
      _fail(f"parallel.mode=pmap is data parallelism only: set mesh.fsdp=1 and mesh.tensor=1 (got {m.fsdp}, "
            f"{m.tensor}), or use parallel.mode=jit.")
  d = config.get("distributed")
  if d is not None and d.enabled:
    if d.num_processes < 0 or d.process_id < -1:
      _fail("distributed.num_processes must be >= 0 and distributed.process_id >= -1 (0 / -1 = auto-detect).")
    if d.process_id >= 0 and d.num_processes and d.process_id >= d.num_processes:
      _fail(f"distributed.process_id={d.process_id} must be < distributed.num_processes={d.num_processes}.")
    if d.local_device_ids and not all(s.strip().isdigit() for s in d.local_device_ids.split(",")):
      _fail(f"distributed.local_device_ids must be comma-separated integers, got '{d.local_device_ids}'.")
  guards = ("allow", "log", "disallow", "log_explicit", "disallow_explicit")
  if t.get("transfer_guard", "allow") not in guards:
    _fail(f"train.transfer_guard must be one of {list(guards)}, got '{t.transfer_guard}'.")
  if t.get("profile_steps"):
    parse_profile_steps(t.profile_steps)


def set_path(config: ml_collections.ConfigDict, key: str, value: Any, label: str = "Config key") -> None:
  """Sets dotted `key` (e.g. "optimizer.learning_rate") to `value`; a key outside the schema is a ValueError.

  New keys are accepted only under the free-form `model` section.
  """
  *parents, leaf = key.split(".")
  node = config
  for p in parents:
    if p not in node:
      raise ValueError(f"{label} '{key}' is not in the config (no section '{p}').")
    node = node[p]
  if leaf not in node and parents[:1] != ["model"]:
    raise ValueError(f"{label} '{key}' is not in the config.")
  node[leaf] = value


def parse_profile_steps(value: str) -> tuple[int, int] | None:
  """train.profile_steps "a,b" -> (a, b) with 1 <= a <= b; "" -> None."""
  if not value:
    return None
  parts = value.split(",")
  try:
    first, last = (int(parts[0]), int(parts[-1])) if len(parts) in (1, 2) else (0, -1)
  except ValueError:
    first, last = 0, -1
  if not 1 <= first <= last:
    _fail(f"train.profile_steps must be 'a,b' with 1 <= a <= b (train steps to trace), got '{value}'.")
  return first, last


def _tuples(value: Any) -> Any:
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  if isinstance(value, list):
    return tuple(_tuples(v) for v in value)
  return value


def load_run_config(workdir: str) -> ml_collections.ConfigDict:
  """The resolved config a run saved in `<workdir>/config.json` (JSON lists back to tuples)."""
  import json
  import os

  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(f"No config.json in '{workdir}'; pass the --workdir of a training run.")
  with open(path) as f:
    saved = _tuples(json.load(f))

  def merge(default: dict, override: dict) -> dict:  # Keys added since the run was written keep their defaults.
    out = dict(default)
    for k, v in override.items():
      out[k] = merge(default[k], v) if isinstance(v, dict) and isinstance(default.get(k), dict) and k not in FREE_FORM \
          else v
    return out

  return ml_collections.ConfigDict(merge(base_config().to_dict(), saved))
