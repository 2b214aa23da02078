"""Counts a config's model parameters without allocating them (`jax.eval_shape`).

python -m tools.param_count --config=experiments/configs/gpt2_small.py
prints {"params": N, "by_module": {top-level module: N, ...}}.

The sample input follows the model: images of `image_size` for vit, `max_len` tokens for gpt/bert, `data.max_len`
tokens for the LSTMs, `--input_shape` when given, else the first training example of the config's dataset
(which is also where `num_outputs` comes from when `config.model` does not set it).
"""

from __future__ import annotations

import json
import re
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from absl import app, flags

from model_lib.cli import config_from_flag, define_config_flag, parse_flags, run_cli
from model_lib.models import build_model

TOKEN_MODELS = ("gpt", "bert", "lstm_classifier", "lstm_lm")


def _natural_key(name: str) -> list[Any]:
  """'block_10' sorts after 'block_2'."""
  return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _dataset_sample(config: ml_collections.ConfigDict) -> tuple[jax.ShapeDtypeStruct, int]:
  from model_lib.data import load_dataset  # Only configs without a model rule pay for loading data.

  dataset = load_dataset(config.data)
  x = dataset.split("train")["x"][:1]
  return jax.ShapeDtypeStruct(x.shape, x.dtype), dataset.info.num_outputs


def sample_input(model: Any, config: ml_collections.ConfigDict,
                 input_shape: tuple[int, ...] | None = None) -> jax.ShapeDtypeStruct:
  """The abstract sample batch that `model.init` is traced on."""
  name = config.model.name
  dtype = jnp.int32 if name in TOKEN_MODELS else jnp.float32
  if input_shape is not None:
    return jax.ShapeDtypeStruct(tuple(input_shape), dtype)
  if name == "vit":
    return jax.ShapeDtypeStruct((1, model.image_size, model.image_size, 3), dtype)
  if name in ("gpt", "bert"):
    return jax.ShapeDtypeStruct((1, model.max_len), dtype)
  if name in ("lstm_classifier", "lstm_lm"):
    return jax.ShapeDtypeStruct((1, config.data.max_len), dtype)
  return _dataset_sample(config)[0]


def count_params(config: ml_collections.ConfigDict, input_shape: tuple[int, ...] | None = None) -> dict[str, Any]:
  """{'params': total, 'by_module': {top-level module name: count}} for `config.model`."""
  num_outputs = None
  if "num_outputs" not in config.model:
    num_outputs = _dataset_sample(config)[1]
  model = build_model(config.model, num_outputs=num_outputs)
  x = sample_input(model, config, input_shape)
  shapes = jax.eval_shape(lambda k, xs: model.init(k, xs, train=False), jax.random.key(0), x)["params"]
  by_module = {name: int(sum(leaf.size for leaf in jax.tree.leaves(sub)))
               for name, sub in sorted(shapes.items(), key=lambda kv: _natural_key(kv[0]))}
  return {"params": sum(by_module.values()), "by_module": by_module}


def main(argv: list[str]) -> None:
  del argv
  config = config_from_flag(_CONFIG)
  shape = tuple(int(s) for s in _INPUT_SHAPE.value) if _INPUT_SHAPE.value else None
  print(json.dumps(run_cli(lambda: count_params(config, shape)), indent=2))


if __name__ == "__main__":
  # Flags exist only when run as a program: importing `count_params` must not claim the global --config flag.
  _CONFIG = define_config_flag(None)
  _INPUT_SHAPE = flags.DEFINE_list("input_shape", None, "Sample input shape, e.g. 1,28,28 (default: from the model).")
  flags.mark_flag_as_required("config")
  app.run(main, flags_parser=parse_flags)
