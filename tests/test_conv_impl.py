"""conv.conv2d / conv.max_pool / CNN(conv_impl=...): every path gives XLA's values and gradients."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax import lax

from model_lib.models import build_model, conv
from model_lib.models.mlp import Conv as MlpConv

IMPLS = ("xla", "explicit")


def _normal(seed, shape, dtype=jnp.float32):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), dtype)  # NumPy: no per-shape compile.


def _reference_conv(x, kernel, padding):
  return lax.conv_general_dilated(x, kernel, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _value_and_grads(f, x, kernel, cotangent):
  y, vjp = jax.vjp(f, x, kernel)
  return (y, *vjp(cotangent))


@pytest.mark.parametrize("shape,k,padding", [
    ((2, 9, 9, 1, 4), 3, "VALID"),  # Cin=1: direct forward, patches kernel gradient.
    ((2, 8, 7, 3, 5), 3, "SAME"),  # Odd width, SAME.
    ((3, 7, 9, 4, 3), 5, "SAME"),  # Cin = THIN_MAX_IN_FEATURES.
    ((2, 11, 10, 6, 4), 5, "VALID"),  # Cin > THIN_MAX_IN_FEATURES: XLA's convolution.
    ((2, 6, 8, 1, 3), 3, ((1, 0), (2, 1))),  # Explicit (asymmetric) pads.
])
def test_conv2d_value_and_grads_equal_lax(shape, k, padding):
  b, h, w, cin, cout = shape
  x, kernel = _normal(0, (b, h, w, cin)), _normal(1, (k, k, cin, cout))
  cotangent = _normal(2, jax.eval_shape(lambda: _reference_conv(x, kernel, padding)).shape)
  got, want = jax.jit(lambda x, kk, c: (
      {impl: _value_and_grads(lambda x, kk: conv.conv2d(x, kk, padding, impl=impl), x, kk, c) for impl in IMPLS},
      _value_and_grads(lambda x, kk: _reference_conv(x, kk, padding), x, kk, c)))(x, kernel, cotangent)
  thin = "custom_vjp_call" in str(jax.make_jaxpr(lambda x, kk: conv.conv2d(x, kk, padding, impl="explicit"))(x, kernel))
  assert thin == (cin <= conv.THIN_MAX_IN_FEATURES)  # So the checks below cover the thin path.
  for impl in IMPLS:
    for g, r, name in zip(got[impl], want, ("value", "d_input", "d_kernel")):
      assert g.shape == r.shape and g.dtype == r.dtype, (impl, name)
      np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-4, err_msg=f"{impl} {name}")


def test_conv2d_weight_grad_equals_numpy_sum_over_shifts():
  x, kernel = _normal(0, (2, 6, 7, 1)), _normal(1, (3, 3, 1, 2))
  cotangent = _normal(2, (2, 4, 5, 2))
  dw = jax.jit(jax.grad(lambda kk: jnp.sum(conv.conv2d(x, kk, "VALID", impl="explicit") * cotangent)))(kernel)
  xs, cs = np.asarray(x, np.float64), np.asarray(cotangent, np.float64)
  want = np.stack([np.einsum("bhwc,bhwo->co", xs[:, i:i + 4, j:j + 5], cs) for i in range(3) for j in range(3)])
  np.testing.assert_allclose(dw, want.reshape(3, 3, 1, 2), rtol=1e-5, atol=1e-5)


def test_conv2d_bfloat16_computes_in_bfloat16():
  x, kernel = _normal(0, (2, 8, 8, 1), jnp.bfloat16), _normal(1, (3, 3, 1, 4), jnp.bfloat16)
  cotangent = _normal(2, (2, 6, 6, 4), jnp.bfloat16)
  f32 = lambda t: t.astype(jnp.float32)
  got, want = jax.jit(lambda x, kk, c: (
      _value_and_grads(lambda x, kk: conv.conv2d(x, kk, "VALID", impl="explicit"), x, kk, c),
      _value_and_grads(lambda x, kk: _reference_conv(x, kk, "VALID"), f32(x), f32(kk), f32(c))))(x, kernel, cotangent)
  for g, r in zip(got, want):
    assert g.dtype == jnp.bfloat16
    np.testing.assert_allclose(f32(g), r, rtol=5e-2, atol=5e-2)


@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (2, 7, 9, 4), (1, 5, 5, 1)])
def test_max_pool_value_and_grad_equal_nn_max_pool(shape):
  x = _normal(0, shape)
  cotangent = _normal(1, (shape[0], shape[1] // 2, shape[2] // 2, shape[3]))

  def value_and_grad(pool, x, c):
    y, vjp = jax.vjp(pool, x)
    return y, vjp(c)[0]

  got, want = jax.jit(lambda x, c: (
      {impl: value_and_grad(lambda x: conv.max_pool(x, 2, impl=impl), x, c) for impl in IMPLS},
      value_and_grad(lambda x: nn.max_pool(x, (2, 2), strides=(2, 2)), x, c)))(x, cotangent)
  for impl in IMPLS:
    np.testing.assert_array_equal(got[impl][0], want[0], err_msg=impl)
    np.testing.assert_array_equal(got[impl][1], want[1], err_msg=impl)


@pytest.mark.parametrize("window", [2, 3])
def test_max_pool_ties_route_the_whole_gradient_to_the_first_max(window):
  # Few distinct values: most windows have tied maxima; jnp.max's gradient would split them, nn.max_pool's does not.
  x = np.random.default_rng(0).integers(0, 3, (2, 7, 8, 3)).astype(np.float32)
  x[0, 0, 0, 0] = np.nan
  x = jnp.asarray(x)
  h, w = 7 // window, 8 // window
  cotangent = _normal(1, (2, h, w, 3))
  grad = lambda pool: jax.vjp(pool, x)[1](cotangent)[0]
  got, want, split = jax.jit(lambda: (
      grad(lambda x: conv.max_pool(x, window, impl="explicit")),
      grad(lambda x: nn.max_pool(x, (window, window), strides=(window, window))),
      grad(lambda x: x[:, :h * window, :w * window].reshape(2, h, window, w, window, 3).max((2, 4)))))()
  np.testing.assert_array_equal(got, want)
  assert not np.allclose(split, want)  # The check has teeth: an even split of ties differs.


def _cnn(conv_impl, **kw):
  config = dict(name="cnn", features=(4, 6), dense_sizes=(16,), conv_impl=conv_impl, **kw)
  return build_model(ml_collections.ConfigDict(config), num_outputs=5)


@pytest.mark.parametrize("kw", [{}, {"padding": "SAME", "kernel_size": 5, "batch_norm": True}, {"dtype": "bfloat16"}])
def test_cnn_explicit_equals_xla_logits_and_grads(kw):
  x = jnp.asarray(np.random.default_rng(0).uniform(size=(4, 17, 15)), jnp.float32)
  labels = np.arange(4) % 5
  models = {impl: _cnn(impl, **kw) for impl in IMPLS}
  # Same tree, names, shapes and logical axes: checkpoints move between the paths.
  shapes = {impl: jax.eval_shape(m.init, jax.random.key(1), x) for impl, m in models.items()}
  assert jax.tree.structure(shapes["explicit"]) == jax.tree.structure(shapes["xla"])
  assert jax.tree.leaves(shapes["explicit"]) == jax.tree.leaves(shapes["xla"])
  assert shapes["explicit"]["params_axes"] == shapes["xla"]["params_axes"]

  rng = np.random.default_rng(1)  # Random variables from NumPy: compiling `init` would dominate the test's time.
  params = jax.tree.map(lambda a: jnp.asarray(0.3 * rng.standard_normal(a.shape), a.dtype), shapes["xla"]["params"])
  others = jax.tree.map(lambda a: jnp.asarray(rng.uniform(0.5, 1.5, a.shape), a.dtype),
                        {k: v for k, v in shapes["xla"].items() if k not in ("params", "params_axes")})

  def loss(params, impl):
    logits = models[impl].apply({"params": params, **others}, x, train=False)
    return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(4), labels]), logits

  grad = jax.value_and_grad(loss, has_aux=True)
  (want, want_grads), (got, got_grads) = jax.jit(lambda p: (grad(p, "xla"), grad(p, "explicit")))(params)
  # bfloat16 paths round differently (XLA's conv in bfloat16, the thin path accumulates in float32).
  rtol, scale = (5e-2, 2e-2) if kw.get("dtype") == "bfloat16" else (1e-4, 1e-6)
  close = lambda g, w: np.testing.assert_allclose(g, w, rtol=rtol, atol=scale * float(np.abs(w).max()))
  close(got[1], want[1])
  jax.tree.map(close, got_grads, want_grads)


def _primitives(model, x):
  params = jax.eval_shape(model.init, jax.random.key(0), x)["params"]
  return str(jax.make_jaxpr(jax.grad(lambda p: model.apply({"params": p}, x).sum()))(params))


def test_auto_picks_explicit_on_cpu_and_xla_on_gpu(monkeypatch):
  x = jnp.zeros((2, 12, 12))
  monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
  assert conv.resolve_conv_impl("auto") == "explicit"
  cpu = _primitives(_cnn("auto"), x)
  assert "custom_vjp_call" in cpu and "select_and_scatter" not in cpu
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  assert conv.resolve_conv_impl("auto") == "xla"
  gpu = _primitives(_cnn("auto"), x)
  assert "custom_vjp_call" not in gpu and "select_and_scatter" in gpu
  assert conv.resolve_conv_impl("explicit") == "explicit"  # An explicit choice is kept on any backend.


def test_unknown_conv_impl_names_the_config_key():
  with pytest.raises(ValueError, match=r"model\.conv_impl.*'xla'.*'explicit'"):
    _cnn("patchez").init(jax.random.key(0), jnp.zeros((1, 8, 8)))


def test_conv_layer_falls_back_to_mlp_conv_where_unsupported():
  x = _normal(0, (2, 9, 9, 2))
  layers = [(MlpConv(3, (3, 3), **kw), conv.Conv(3, (3, 3), impl="explicit", **kw))
            for kw in [{"strides": 2}, {"padding": "CIRCULAR"}, {"kernel_dilation": 2}]]

  def outputs(key):
    variables = [ref.init(key, x) for ref, _ in layers]
    return [(fast.apply(v, x), ref.apply(v, x)) for (ref, fast), v in zip(layers, variables)]

  for got, want in jax.jit(outputs)(jax.random.key(1)):
    np.testing.assert_array_equal(got, want)
