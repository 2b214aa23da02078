"""Transformers over tokens: a GPT decoder (pre-LN, causal) and a BERT encoder (post- or pre-LN, padding mask)."""

from __future__ import annotations

import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from model_lib.models import attention_kernels
from model_lib.models.attention import MultiHeadAttention
from model_lib.models.dropout import Dropout
from model_lib.models.layers import resolve_impl
from model_lib.models.registry import MODELS

Init = Callable[..., Any]
BERT_HEADS = ("classifier", "pooler", "mlm", "none")
LAYER_IMPLS = ("auto", "explicit", "flax")


def resolve_layer_impl(impl: str) -> str:
  """The concrete LayerNorm/GELU path: "auto" is "explicit" on CPU, "flax" (nn.LayerNorm, jax.nn.gelu) elsewhere."""
  return resolve_impl("layer_impl", impl, LAYER_IMPLS, {"cpu": "explicit"}, "flax")


def dense(features: int, names: tuple[str | None, str | None], dtype: Any, init: Init = nn.initializers.normal(0.02),
          name: str | None = None) -> nn.Dense:
  """nn.Dense with float32 params whose kernel/bias carry logical axis names (kernel names: (in, out))."""
  return nn.Dense(features, dtype=dtype, param_dtype=jnp.float32, name=name,
                  kernel_init=nn.with_logical_partitioning(init, names),
                  bias_init=nn.with_logical_partitioning(nn.initializers.zeros, names[1:]))


class ExplicitLayerNorm(nn.Module):
  """nn.LayerNorm's computation and parameters ('scale', 'bias') via `attention_kernels.layer_norm`'s backward."""

  epsilon: float = 1e-6
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    d = x.shape[-1]
    scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones, ("embed",)), (d,), jnp.float32)
    bias = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)), (d,), jnp.float32)
    return attention_kernels.layer_norm(x, scale, bias, self.epsilon).astype(self.dtype)


def gelu(x: jax.Array, approximate: bool, impl: str = "auto") -> jax.Array:
  """nn.gelu, or (impl "explicit") attention_kernels.gelu: the same function, cheaper on XLA:CPU."""
  if resolve_layer_impl(impl) == "explicit":
    return attention_kernels.gelu(x, approximate)
  return nn.gelu(x, approximate=approximate)


def layer_norm(epsilon: float, dtype: Any, name: str | None = None, impl: str = "auto") -> nn.Module:
  """LayerNorm over the 'embed' axis with float32 params: nn.LayerNorm or (impl "explicit") ExplicitLayerNorm."""
  if resolve_layer_impl(impl) == "explicit":
    return ExplicitLayerNorm(epsilon, dtype, name=name)
  return nn.LayerNorm(epsilon=epsilon, dtype=dtype, param_dtype=jnp.float32, name=name,
                      scale_init=nn.with_logical_partitioning(nn.initializers.ones, ("embed",)),
                      bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)))


def embed(num: int, features: int, names: tuple[str | None, str], dtype: Any, name: str,
          init: Init = nn.initializers.normal(0.02)) -> nn.Embed:
  """nn.Embed with a float32 (num, features) table carrying logical axis names."""
  return nn.Embed(num, features, dtype=dtype, param_dtype=jnp.float32, name=name,
                  embedding_init=nn.with_logical_partitioning(init, names))


class MlpBlock(nn.Module):
  """Dense(mlp_dim) -> GELU -> Dense(D)."""

  mlp_dim: int
  approximate_gelu: bool = True
  dtype: str = "float32"
  kernel_init: Init = nn.initializers.normal(0.02)
  out_kernel_init: Init | None = None
  layer_impl: str = "auto"  # See `gelu`.

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    dtype = jnp.dtype(self.dtype)
    h = dense(self.mlp_dim, ("embed", "mlp"), dtype, self.kernel_init, name="fc1")(x)  # (B, T, F)
    h = gelu(h, self.approximate_gelu, self.layer_impl)
    return dense(x.shape[-1], ("mlp", "embed"), dtype, self.out_kernel_init or self.kernel_init, name="fc2")(h)


class TransformerBlock(nn.Module):
  """Self-attention + MLP, each with a residual; pre-LN (x + f(LN(x))) or post-LN (LN(x + f(x))).

  `attention_impl` picks the attention path (see MultiHeadAttention) and `layer_impl` the LayerNorm/GELU one:
  "explicit" (attention_kernels' hand-written backward and erf GELU), "flax" (nn.LayerNorm, nn.gelu) or "auto"
  (explicit on CPU, where it trains faster, flax elsewhere); every choice has the same parameters and math.
  """

  num_heads: int
  mlp_dim: int
  dropout: float = 0.0  # On each branch's output, before the residual add.
  post_ln: bool = False
  layer_norm_eps: float = 1e-6
  approximate_gelu: bool = True
  attention_impl: str = "auto"
  implementation: str | None = None
  layer_impl: str = "auto"
  dtype: str = "float32"
  kernel_init: Init = nn.initializers.normal(0.02)
  out_kernel_init: Init | None = None  # Residual-branch output projections.

  # Positional-or-keyword: `stack_blocks` passes causal/train/decode positionally so nn.remat can hold them static.
  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array | None = None, causal: bool = False, train: bool = False,
               decode: bool = False, cache_index: jax.Array | None = None) -> jax.Array:
    dtype = jnp.dtype(self.dtype)
    attn = MultiHeadAttention(self.num_heads, attention_impl=self.attention_impl, implementation=self.implementation,
                              dtype=self.dtype, kernel_init=self.kernel_init, out_kernel_init=self.out_kernel_init,
                              name="attn")
    mlp = MlpBlock(self.mlp_dim, self.approximate_gelu, self.dtype, self.kernel_init, self.out_kernel_init,
                   self.layer_impl, name="mlp")
    drop = Dropout(self.dropout, deterministic=not train)
    ln1 = layer_norm(self.layer_norm_eps, dtype, name="ln1", impl=self.layer_impl)
    ln2 = layer_norm(self.layer_norm_eps, dtype, name="ln2", impl=self.layer_impl)
    attend = functools.partial(attn, mask=mask, causal=causal, decode=decode, cache_index=cache_index)
    if self.post_ln:
      x = ln1(x + drop(attend(x)))
      return ln2(x + drop(mlp(x)))
    x = x + drop(attend(ln1(x)))  # (B, T, D)
    return x + drop(mlp(ln2(x)))


REMAT_POLICIES: dict[str, Callable[..., bool] | None] = {
    "none": None,  # Keep every activation the backward pass needs.
    "full": jax.checkpoint_policies.nothing_saveable,  # Keep only each block's input; recompute the block.
    "dots": jax.checkpoint_policies.dots_saveable,  # Keep matmul outputs; recompute norms, GELU, softmax.
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,  # Keep weight matmuls only.
}
LAYERS_AXIS = "layers"  # Logical name of the stacked-layer axis (scan_layers); the sharding rules never shard it.
SCANNED_BLOCKS = "blocks"  # Name of the one scanned block module (its params are stacked on LAYERS_AXIS).
_BLOCK_STATIC_ARGS = (3, 4, 5)  # causal, train, decode in TransformerBlock.__call__ (self is 0).


def stack_blocks(h: jax.Array, num_layers: int, block: dict[str, Any], *, scan: bool = False, remat: str = "none",
                 mask: jax.Array | None = None, causal: bool = False, train: bool = False, decode: bool = False,
                 cache_index: jax.Array | None = None) -> jax.Array:
  """Runs `num_layers` TransformerBlock(**block) on h (B, T, D); call from a parent's compact method.

  Unrolled, the blocks are 'block_0'..'block_{L-1}'; with `scan` they are one module 'blocks' run by `nn.scan`,
  every parameter (and KV-cache entry) stacked on a leading 'layers' axis, so the step compiles one block
  instead of L (`stack_layers`/`unstack_layers` convert checkpoints between the two layouts). `remat` names a
  `REMAT_POLICIES` entry: which activations the backward pass keeps rather than recomputes. Neither changes
  the math (tested against the unrolled, non-remat model).
  """
  if remat not in REMAT_POLICIES:
    raise ValueError(f"Unknown remat '{remat}' (config key model.remat); choose one of {list(REMAT_POLICIES)}.")
  cls = TransformerBlock
  if remat != "none":  # Under scan, the loop already keeps XLA from merging recomputation into the forward pass.
    cls = nn.remat(TransformerBlock, policy=REMAT_POLICIES[remat], static_argnums=_BLOCK_STATIC_ARGS,
                   prevent_cse=not scan)
  if not scan:
    for i in range(num_layers):
      h = cls(**block, name=f"block_{i}")(h, mask, causal, train, decode, cache_index)
    return h

  def body(layer: nn.Module, carry: jax.Array, mask: jax.Array | None, cache_index: jax.Array | None):
    return layer(carry, mask, causal, train, decode, cache_index), None

  scanned = nn.scan(body, variable_axes={"params": 0, "cache": 0, "intermediates": 0},
                    split_rngs={"params": True, "dropout": True}, in_axes=(nn.broadcast, nn.broadcast),
                    length=num_layers, metadata_params={nn.PARTITION_NAME: LAYERS_AXIS})
  h, _ = scanned(cls(**block, name=SCANNED_BLOCKS), h, mask, cache_index)
  return h


def stack_layers(tree: dict[str, Any], num_layers: int) -> dict[str, Any]:
  """An unrolled tree ('block_0'.. at its top level) -> the scanned layout ('blocks', leaves stacked on axis 0)."""
  names = [f"block_{i}" for i in range(num_layers)]
  rest = {k: v for k, v in tree.items() if k not in names}
  return {**rest, SCANNED_BLOCKS: jax.tree.map(lambda *xs: jnp.stack(xs), *(tree[n] for n in names))}


def unstack_layers(tree: dict[str, Any]) -> dict[str, Any]:
  """The scanned layout ('blocks' with stacked leaves) -> the unrolled one ('block_0'..'block_{L-1}')."""
  blocks = tree[SCANNED_BLOCKS]
  num_layers = jax.tree.leaves(blocks)[0].shape[0]
  rest = {k: v for k, v in tree.items() if k != SCANNED_BLOCKS}
  return {**rest, **{f"block_{i}": jax.tree.map(lambda x, i=i: x[i], blocks) for i in range(num_layers)}}


def _check_length(t: int, max_len: int) -> None:
  if t > max_len:
    raise ValueError(f"Sequence length {t} exceeds max_len={max_len} (config key model.max_len).")


@MODELS.register("gpt")
class GPT(nn.Module):
  """GPT-2-style decoder: token + learned position embeddings, pre-LN causal blocks, final LN, LM head.

  Dropout acts on the embedding sum and on each residual branch. `tie_embeddings` reuses the token table as the
  (bias-free) output layer, as GPT-2 does. With `decode=True` the blocks keep a KV cache (collection 'cache')
  sized by the sequence length at init; see `model_lib.generate`.
  """

  num_outputs: int
  vocab_size: int
  num_layers: int = 2
  num_heads: int = 4
  embed_dim: int = 128
  mlp_dim: int = 512
  max_len: int = 256
  dropout: float = 0.0
  tie_embeddings: bool = True
  attention_impl: str = "auto"
  implementation: str | None = None
  layer_impl: str = "auto"
  scan_layers: bool = False  # See `stack_blocks`.
  remat: str = "none"  # A REMAT_POLICIES key.
  dtype: str = "float32"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False, decode: bool = False) -> jax.Array:
    if self.tie_embeddings and self.num_outputs != self.vocab_size:
      raise ValueError(f"tie_embeddings needs num_outputs == vocab_size, got {self.num_outputs} != "
                       f"{self.vocab_size}; set model.tie_embeddings=False.")
    dtype = jnp.dtype(self.dtype)
    t = x.shape[1]
    _check_length(t, self.max_len)
    cache_index = None
    positions = jnp.arange(t)[None, :]  # (1, T)
    if decode:
      initialized = self.has_variable("cache", "index")
      index = self.variable("cache", "index", lambda: jnp.zeros((), jnp.int32))
      if initialized:
        cache_index = index.value
        positions = positions + cache_index
        index.value = cache_index + t
    wte = embed(self.vocab_size, self.embed_dim, ("vocab", "embed"), dtype, "token_embed")
    wpe = embed(self.max_len, self.embed_dim, (None, "embed"), dtype, "pos_embed", nn.initializers.normal(0.01))
    h = wte(x) + wpe(positions)  # (B, T, D)
    h = Dropout(self.dropout, deterministic=not train)(h)
    # GPT-2 scales residual output projections by 1/sqrt(2 * num_layers).
    out_init = nn.initializers.normal(0.02 / (2 * self.num_layers) ** 0.5)
    block = dict(num_heads=self.num_heads, mlp_dim=self.mlp_dim, dropout=self.dropout, post_ln=False,
                 layer_norm_eps=1e-5, approximate_gelu=True, attention_impl=self.attention_impl,
                 implementation=self.implementation, layer_impl=self.layer_impl, dtype=self.dtype,
                 out_kernel_init=out_init)
    h = stack_blocks(h, self.num_layers, block, scan=self.scan_layers, remat=self.remat, causal=True, train=train,
                     decode=decode, cache_index=cache_index)
    h = layer_norm(1e-5, dtype, name="final_norm", impl=self.layer_impl)(h)
    if self.tie_embeddings:
      logits = wte.attend(h)  # (B, T, V)
    else:
      logits = dense(self.num_outputs, ("embed", "vocab"), dtype, name="head")(h)
    return logits.astype(jnp.float32)


@MODELS.register("bert")
class BERT(nn.Module):
  """BERT encoder: token + position + segment embeddings -> LN -> blocks with a padding mask (`x != 0`) -> head.

  `head`: "classifier" (tanh pooler on [CLS] -> Dense(num_outputs)), "pooler" (the pooled [CLS] vector (B, D),
  i.e. BertModel's pooler output), "mlm" (dense -> GELU -> LN -> logits tied to the token table, plus a bias;
  needs num_outputs == vocab_size) or "none" (hidden states (B, T, D)). `post_ln=False` gives pre-LN blocks with
  a final LN.
  """

  num_outputs: int
  vocab_size: int
  num_layers: int = 2
  num_heads: int = 4
  embed_dim: int = 128
  mlp_dim: int = 512
  max_len: int = 512
  num_segments: int = 2
  dropout: float = 0.1
  post_ln: bool = True
  head: str = "classifier"
  attention_impl: str = "auto"
  implementation: str | None = None
  layer_impl: str = "auto"
  scan_layers: bool = False  # See `stack_blocks`.
  remat: str = "none"  # A REMAT_POLICIES key.
  dtype: str = "float32"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False, segments: jax.Array | None = None) -> jax.Array:
    if self.head not in BERT_HEADS:
      raise ValueError(f"Unknown BERT head '{self.head}' (config key model.head); choose one of {list(BERT_HEADS)}.")
    if self.head == "mlm" and self.num_outputs != self.vocab_size:
      raise ValueError(f"head='mlm' ties the output to the token table: needs num_outputs == vocab_size, got "
                       f"{self.num_outputs} != {self.vocab_size}.")
    dtype = jnp.dtype(self.dtype)
    t = x.shape[1]
    _check_length(t, self.max_len)
    segments = jnp.zeros_like(x) if segments is None else segments
    drop = Dropout(self.dropout, deterministic=not train)
    wte = embed(self.vocab_size, self.embed_dim, ("vocab", "embed"), dtype, "token_embed")
    h = (wte(x) + embed(self.max_len, self.embed_dim, (None, "embed"), dtype, "pos_embed")(jnp.arange(t)[None, :])
         + embed(self.num_segments, self.embed_dim, (None, "embed"), dtype, "segment_embed")(segments))  # (B, T, D)
    h = drop(layer_norm(1e-12, dtype, name="embed_norm", impl=self.layer_impl)(h))
    mask = (x != 0)[:, None, None, :]  # (B, 1, 1, T): every query attends to real keys only.
    block = dict(num_heads=self.num_heads, mlp_dim=self.mlp_dim, dropout=self.dropout, post_ln=self.post_ln,
                 layer_norm_eps=1e-12, approximate_gelu=False, attention_impl=self.attention_impl,
                 implementation=self.implementation, layer_impl=self.layer_impl, dtype=self.dtype)
    h = stack_blocks(h, self.num_layers, block, scan=self.scan_layers, remat=self.remat, mask=mask, train=train)
    if not self.post_ln:
      h = layer_norm(1e-12, dtype, name="final_norm", impl=self.layer_impl)(h)
    if self.head == "none":
      return h.astype(jnp.float32)
    if self.head == "mlm":
      z = gelu(dense(self.embed_dim, ("embed", "mlp"), dtype, name="mlm_dense")(h), False, self.layer_impl)
      z = layer_norm(1e-12, dtype, name="mlm_norm", impl=self.layer_impl)(z)
      bias = self.param("mlm_bias", nn.with_logical_partitioning(nn.initializers.zeros, ("vocab",)),
                        (self.vocab_size,), jnp.float32)
      return (wte.attend(z) + bias.astype(dtype)[None, None]).astype(jnp.float32)  # (B, T, V)
    pooled = jnp.tanh(dense(self.embed_dim, ("embed", "mlp"), dtype, name="pooler")(h[:, 0]))  # (B, D)
    if self.head == "pooler":
      return pooled.astype(jnp.float32)
    return dense(self.num_outputs, ("embed", None), dtype, name="classifier")(drop(pooled)).astype(jnp.float32)
