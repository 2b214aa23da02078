"""Model registry: `config.model.name` -> a Linen module built from the rest of `config.model`."""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import ml_collections

from model_lib.registry import Registry

MODELS = Registry("model")


def build_model(model_config: ml_collections.ConfigDict, num_outputs: int | None = None, **defaults: Any) -> nn.Module:
  """Builds the module named by `model_config.name`; every other key is a constructor argument.

  `num_outputs` and `defaults` (dataset facts such as `vocab_size`) fill fields the config leaves unset,
  and only fields the model has.
  """
  kwargs = dict(model_config.to_dict())
  name = kwargs.pop("name")
  factory = MODELS.get(name, key="model.name")
  fields = {f.name for f in dataclasses.fields(factory)} if dataclasses.is_dataclass(factory) else set()
  for key, value in {"num_outputs": num_outputs, **defaults}.items():
    if value is not None and key not in kwargs and key in fields:
      kwargs[key] = value
  try:
    return factory(**kwargs)
  except TypeError as e:  # An unknown keyword: say which key is wrong.
    raise ValueError(f"config.model has a key that model '{name}' does not accept: {e}") from None
