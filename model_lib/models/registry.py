"""Model registry: `config.model.name` -> a Linen module built from the rest of `config.model`."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import ml_collections

from model_lib.registry import Registry

MODELS = Registry("model")


def build_model(model_config: ml_collections.ConfigDict, num_outputs: int | None = None, **extra: Any) -> nn.Module:
  """Builds the module named by `model_config.name`; every other key is a constructor argument."""
  kwargs = dict(model_config.to_dict())
  name = kwargs.pop("name")
  factory = MODELS.get(name, key="model.name")
  if num_outputs is not None and "num_outputs" not in kwargs:
    kwargs["num_outputs"] = num_outputs
  kwargs.update(extra)
  try:
    return factory(**kwargs)
  except TypeError as e:  # An unknown keyword: say which key is wrong.
    raise ValueError(f"config.model has a key that model '{name}' does not accept: {e}") from None
