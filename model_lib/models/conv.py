"""2D convolution and max-pooling with hand-written backward passes for XLA:CPU ("explicit"), or XLA's own ("xla").

Both paths compute the same function; gradients agree up to float summation order (max-pool's exactly). Why
"explicit" (MNIST CNN train step, batch 128, 2 CPU cores, interleaved A/B in one process):
- max-pool: `nn.max_pool`'s gradient is a `select_and_scatter`, which XLA:CPU runs slowly (~40 ms for a
  (128, 26, 26, 32) input). `max_pool` takes the block max as reshape + reduce and routes the gradient with one
  elementwise select (~5 ms). This alone halves the step.
- thin convolutions (Cin <= THIN_MAX_IN_FEATURES, e.g. the image layer): the kernel gradient as one im2col
  matmul patches^T @ dy (XLA computes it as a convolution whose batch is Cin, ~4x slower for Cin=1) and the
  forward as a sum of kh*kw*Cin scaled shifted copies, one elementwise fusion with bias and ReLU (XLA's
  convolution and a patches matmul with its 9-long contraction are memory-bound, several ms for the 1->32 layer).
  Another ~25% off the step on top of the pool.
- wider convolutions stay XLA's (YNNPACK / Eigen), forward and both gradients: XLA:CPU materialises the kh*kw
  shifted slices and their concatenation at ~2 ns/element, so for Cin=32 every patches variant tried (forward,
  kernel gradient as patches^T @ dy in either layout, input gradient as dy @ W^T + col2im, per-tap matmuls) tied
  or lost (up to 40%) in the train step. NCHW convs (slower in isolation) and Eigen instead of YNNPACK (padding
  tricks) did not help either.
"""

from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from model_lib.models.mlp import Conv as XlaConv
from model_lib.models.layers import resolve_impl
from model_lib.models.mlp import sow_axes

CONV_IMPLS = ("auto", "xla", "explicit")
_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")
# Most input channels of a "thin" conv: its patches kernel gradient wins ~4x at Cin=1..3 and loses from Cin=8 on
# XLA:CPU; the direct forward's work grows as kh*kw*Cin elementwise terms.
THIN_MAX_IN_FEATURES = 4

Pads = tuple[tuple[int, int], tuple[int, int]]


def resolve_conv_impl(impl: str, backend: str | None = None) -> str:
  """The conv/pool path `impl` names on `backend` (default: JAX's): "auto" is "explicit" on CPU, else "xla"."""
  # cuDNN / the TPU compiler handle conv and select_and_scatter gradients well; only XLA:CPU needs the rewrite.
  return resolve_impl("conv_impl", impl, CONV_IMPLS, {"cpu": "explicit"}, "xla", backend)


def _explicit_pads(padding: str | Sequence[tuple[int, int]], spatial: Sequence[int],
                   kernel: Sequence[int]) -> Pads | None:
  """`padding` as ((top, bottom), (left, right)), or None when it is not SAME, VALID or explicit pairs."""
  if isinstance(padding, str):
    if padding.upper() not in ("SAME", "VALID"):
      return None
    return tuple(lax.padtype_to_pads(tuple(spatial), tuple(kernel), (1, 1), padding.upper()))
  pads = tuple(tuple(int(v) for v in p) for p in padding)
  return pads if len(pads) == 2 and all(len(p) == 2 for p in pads) else None


def _xla_conv(x: jax.Array, kernel: jax.Array, pads: Pads | str, precision: lax.PrecisionLike) -> jax.Array:
  return lax.conv_general_dilated(x, kernel, (1, 1), pads, dimension_numbers=_DIMENSION_NUMBERS, precision=precision)


def _pad(x: jax.Array, pads: Pads) -> jax.Array:
  return lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (*pads[0], 0), (*pads[1], 0), (0, 0, 0)))


def _conv_direct(x: jax.Array, kernel: jax.Array, pads: Pads) -> jax.Array:
  """The convolution as a sum of kh*kw*Cin shifted input channels times kernel rows, accumulated in float32.

  One elementwise loop that XLA fuses with its consumers (bias, activation); for a handful of input channels it
  beats both XLA's convolution and a patches matmul, whose contraction (kh*kw*Cin) is too short to pay off.
  """
  kh, kw, cin, _ = kernel.shape
  x = _pad(x, pads)
  ho, wo = x.shape[1] - kh + 1, x.shape[2] - kw + 1
  x32, k32 = x.astype(jnp.float32), kernel.astype(jnp.float32)
  terms = (x32[:, i:i + ho, j:j + wo, c:c + 1] * k32[i, j, c] for i in range(kh) for j in range(kw) for c in range(cin))
  return functools.reduce(jnp.add, terms).astype(x.dtype)


def _weight_grad_patches(x: jax.Array, dy: jax.Array, kernel_hw: tuple[int, int], pads: Pads,
                         precision: lax.PrecisionLike) -> jax.Array:
  """d loss / d kernel = patches(x)^T @ dy as one matmul, patches laid out (kh*kw*Cin, B*H'*W') so it is row-major."""
  kh, kw = kernel_hw
  x = _pad(x, pads)
  _, ho, wo, cout = dy.shape
  cin = x.shape[-1]
  xt = x.transpose(3, 0, 1, 2)  # (Cin, B, H, W): each tap's slice is then a block of rows.
  patches = jnp.stack([xt[:, :, i:i + ho, j:j + wo] for i in range(kh) for j in range(kw)])  # (taps, Cin, B, H', W')
  dw = lax.dot(patches.reshape(kh * kw * cin, -1), dy.reshape(-1, cout), precision=precision,
               preferred_element_type=jnp.float32)  # (kh*kw*Cin, Cout)
  return dw.reshape(kh, kw, cin, cout)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_thin(x: jax.Array, kernel: jax.Array, pads: Pads, precision: lax.PrecisionLike) -> jax.Array:
  return _conv_direct(x, kernel, pads)


def _conv_thin_fwd(x, kernel, pads, precision):
  return _conv_direct(x, kernel, pads), (x, kernel)


def _conv_thin_bwd(pads, precision, res, dy):
  x, kernel = res
  _, vjp = jax.vjp(lambda x: _xla_conv(x, kernel, pads, precision), x)
  (dx,) = vjp(dy)  # Unused (and dropped by XLA) when x is the data, as for a first layer.
  return dx, _weight_grad_patches(x, dy, kernel.shape[:2], pads, precision).astype(kernel.dtype)


_conv_thin.defvjp(_conv_thin_fwd, _conv_thin_bwd)


def conv2d(x: jax.Array, kernel: jax.Array, padding: str | Sequence[tuple[int, int]] = "VALID", *,
           impl: str = "explicit", precision: lax.PrecisionLike = None) -> jax.Array:
  """Stride-1 2D convolution of `x` (B, H, W, Cin) with `kernel` (kh, kw, Cin, Cout) -> (B, H', W', Cout).

  `padding`: "SAME", "VALID" or ((top, bottom), (left, right)). `impl`: "xla" is `lax.conv_general_dilated` with
  autodiff; "explicit" runs inputs of at most THIN_MAX_IN_FEATURES channels with a direct (elementwise) forward,
  a patches-matmul kernel gradient and XLA's input gradient, anything else (other paddings too) as "xla". See the
  module docstring.
  """
  impl = resolve_conv_impl(impl)
  pads = _explicit_pads(padding, x.shape[1:3], kernel.shape[:2])
  if impl == "xla" or pads is None or x.shape[-1] > THIN_MAX_IN_FEATURES:
    return _xla_conv(x, kernel, padding if pads is None else pads, precision)
  return _conv_thin(x, kernel, pads, precision)


def _window_taps(x: jax.Array, window: int) -> list[jax.Array]:
  """The window*window strided views x[:, i::window, j::window] of `x` (B, H, W, C), row-major over (i, j)."""
  b, h, w, c = x.shape
  blocks = x.reshape(b, h // window, window, w // window, window, c)
  return [blocks[:, :, i, :, j] for i in range(window) for j in range(window)]


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _block_max(x: jax.Array, window: int) -> jax.Array:
  # A reduce (not a max of the strided views, which XLA fuses into every consumer) materialises the pooled map:
  # else the next conv's weight-gradient transpose re-derives it from the 4x larger input (~15% slower step).
  b, h, w, c = x.shape
  return x.reshape(b, h // window, window, w // window, window, c).max((2, 4))


def _block_max_fwd(x, window):
  return _block_max(x, window), x


def _block_max_bwd(window, x, g):
  # Replays select_and_scatter's GE selection over the window in row-major order, so the whole gradient goes to
  # the first maximum (ties, NaNs) exactly as `nn.max_pool`'s gradient; jnp.max's would split ties evenly.
  taps = _window_taps(x, window)
  best, chosen = taps[0], jnp.zeros(g.shape, jnp.int32)
  for t, candidate in enumerate(taps[1:], start=1):
    keep = best >= candidate
    best, chosen = jnp.where(keep, best, candidate), jnp.where(keep, chosen, t)
  b, h, w, c = x.shape
  shape = (1, 1, window, 1, window, 1)
  tap = lax.broadcasted_iota(jnp.int32, shape, 2) * window + lax.broadcasted_iota(jnp.int32, shape, 4)
  # Broadcast and select, no concatenation: XLA:CPU emits one cheap elementwise loop.
  dx = jnp.where(chosen[:, :, None, :, None] == tap, g[:, :, None, :, None], jnp.zeros((), g.dtype))
  return (dx.reshape(b, h, w, c),)


_block_max.defvjp(_block_max_fwd, _block_max_bwd)


def max_pool(x: jax.Array, window: int = 2, *, impl: str = "explicit") -> jax.Array:
  """`nn.max_pool(x, (window, window), strides=(window, window))` (VALID) on NHWC `x`, same value and gradient.

  `impl`: "xla" calls `nn.max_pool` (reduce_window, select_and_scatter gradient); "explicit" takes the max of the
  window x window blocks of `x` cropped to a multiple of `window`, with the replayed first-max backward.
  """
  impl = resolve_conv_impl(impl)
  if impl == "xla":
    return nn.max_pool(x, (window, window), strides=(window, window))
  h, w = (x.shape[1] // window) * window, (x.shape[2] // window) * window
  return _block_max(x[:, :h, :w], window)


class Conv(XlaConv):
  """`mlp.Conv` (same params, names, initializers and logical axes) whose stride-1 2D case runs `conv2d(impl=...)`.

  Anything else (strides, dilation, groups, masks, CIRCULAR/REFLECT/CAUSAL padding, non-2D) is `mlp.Conv` itself.
  """

  impl: str = "explicit"

  @nn.compact
  def __call__(self, inputs: jax.Array) -> jax.Array:
    impl = resolve_conv_impl(self.impl)
    kernel_size = (self.kernel_size,) if isinstance(self.kernel_size, int) else tuple(self.kernel_size)
    ones = lambda v: v is None or v == 1 or (not isinstance(v, int) and all(s == 1 for s in v))
    padding = nn.linear.canonicalize_padding(self.padding, len(kernel_size))
    pads = _explicit_pads(padding, inputs.shape[-3:-1], kernel_size) if len(kernel_size) == 2 else None
    simple = (ones(self.strides) and ones(self.input_dilation) and ones(self.kernel_dilation)
              and self.feature_group_count == 1 and self.mask is None and self.shared_weights)
    if impl == "xla" or pads is None or not simple or inputs.ndim < 3:
      return super().__call__(inputs)
    batch_shape = inputs.shape[:-3]
    x = inputs.reshape((-1,) + inputs.shape[-3:])  # One batch axis, as nn.Conv.
    kernel = self.param("kernel", self.kernel_init, kernel_size + (x.shape[-1], self.features), self.param_dtype)
    bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype) if self.use_bias else None
    x, kernel, bias = self.promote_dtype(x, kernel, bias, dtype=self.dtype)
    y = conv2d(x, kernel, pads, impl=impl, precision=self.precision)
    if bias is not None:
      y = y + bias
    sow_axes(self, kernel=("conv_h", "conv_w", "conv_in", "conv_out"), **({"bias": ("conv_out",)} if self.use_bias
                                                                          else {}))
    return y.reshape(batch_shape + y.shape[1:])
