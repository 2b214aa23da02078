"""int8 quantization: round-trip error bound, logits close to float, straight-through QAT gradient, sizes."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from model_lib.compress.quantize import (dequantize, dequantize_params, fake_quant, quantize, quantize_params,
                                         serialized_bytes)
from model_lib.models import build_model


def test_round_trip_error_is_bounded_by_half_a_scale_per_element():
  rng = np.random.default_rng(0)
  w = jnp.asarray(rng.normal(size=(3, 3, 16, 8)) * rng.uniform(0.1, 5, size=8), jnp.float32)
  q, s = quantize(w)
  assert q.dtype == jnp.int8 and s.shape == (1, 1, 1, 8)
  err = np.abs(np.asarray(dequantize(q, s)) - np.asarray(w))
  assert np.all(err <= np.asarray(s) / 2 + 1e-7)
  np.testing.assert_allclose(np.abs(np.asarray(q)).max(axis=(0, 1, 2)), 127)  # Each channel uses the full range.
  np.testing.assert_allclose(s.ravel(), np.abs(np.asarray(w)).max(axis=(0, 1, 2)) / 127, rtol=1e-6)


def test_quantized_cnn_logits_within_tolerance_of_float():
  model = build_model(ml_collections.ConfigDict({"name": "cnn", "features": (8, 16), "dense_sizes": (32,)}), 10)
  x = jax.random.uniform(jax.random.key(0), (16, 28, 28))
  params = model.init(jax.random.key(1), x)["params"]
  ref = model.apply({"params": params}, x)
  qp = quantize_params(params)
  assert qp["Conv_0"]["kernel"]["int8"].dtype == jnp.int8
  got = model.apply({"params": dequantize_params(qp)}, x)
  # int8 weights (relative error <= 1/254 per weight) move logits by well under 2% of their range.
  assert float(jnp.abs(got - ref).max()) < 0.02 * float(jnp.abs(ref).max())
  assert serialized_bytes(qp) < 0.3 * serialized_bytes(params)


def test_fake_quant_forward_is_dequantized_and_gradient_is_straight_through():
  w = jnp.asarray(np.random.default_rng(1).normal(size=(5, 4)), jnp.float32)
  np.testing.assert_array_equal(fake_quant(w), dequantize(*quantize(w)))
  g = jax.grad(lambda v: (fake_quant(v) * jnp.arange(20.0).reshape(5, 4)).sum())(w)
  np.testing.assert_array_equal(g, jnp.arange(20.0).reshape(5, 4))  # d/dw of fake_quant is the identity.
