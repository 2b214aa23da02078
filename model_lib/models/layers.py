"""Small building blocks shared by several models."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "gelu": jax.nn.gelu,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "silu": jax.nn.silu,
    "elu": jax.nn.elu,
    "leaky_relu": jax.nn.leaky_relu,
    "identity": lambda x: x,
}


def resolve_impl(field: str, impl: str, choices: tuple[str, ...], auto: dict[str, str], fallback: str,
                 backend: str | None = None) -> str:
  """The concrete path `model.<field>=impl` names: "auto" maps `backend` (default: JAX's) through `auto`, else
  `fallback`; a value outside `choices` is a ValueError naming the config key."""
  if impl not in choices:
    raise ValueError(f"Unknown {field} '{impl}' (config key model.{field}); choose one of {list(choices)}.")
  if impl != "auto":
    return impl
  return auto.get(backend or jax.default_backend(), fallback)


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
  """Looks up an activation function by name with a clear error."""
  if name not in ACTIVATIONS:
    raise ValueError(f"Unknown activation '{name}' (config key model.activation); choose one of {sorted(ACTIVATIONS)}.")
  return ACTIVATIONS[name]
