"""Vision Transformer: strided-conv patches -> [CLS] + learned positions -> pre-LN blocks -> LN -> pool -> head."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from model_lib.models.dropout import Dropout
from model_lib.models.registry import MODELS
from model_lib.models.transformer import layer_norm, stack_blocks

POOLS = ("cls", "gap")
_WIDTHS = {  # name: (embed_dim, num_layers, num_heads, mlp_dim), from "An Image is Worth 16x16 Words" / DeiT.
    "Ti": (192, 12, 3, 768),
    "S": (384, 12, 6, 1536),
    "B": (768, 12, 12, 3072),
    "L": (1024, 24, 16, 4096),
    "H": (1280, 32, 16, 5120),
}
_PRESETS = {  # CIFAR-sized (32x32) models that train on a CPU.
    "cifar_tiny": {"image_size": 32, "patch_size": 4, "embed_dim": 192, "num_layers": 6, "num_heads": 3,
                   "mlp_dim": 768},
    "cifar_small": {"image_size": 32, "patch_size": 4, "embed_dim": 384, "num_layers": 6, "num_heads": 6,
                    "mlp_dim": 1536},
}


def vit_variant(name: str, image_size: int = 224) -> dict[str, Any]:
  """ViT kwargs for "Ti/16", "S/16", "B/16", "B/32", "L/16", "H/14", ... or a preset ("cifar_tiny", "cifar_small")."""
  if name in _PRESETS:
    return dict(_PRESETS[name])
  width, _, patch = name.partition("/")
  if width not in _WIDTHS or not patch.isdigit():
    raise ValueError(f"Unknown ViT variant '{name}'; use '<size>/<patch>' with size in {list(_WIDTHS)} "
                     f"(e.g. 'B/16') or a preset in {list(_PRESETS)}.")
  d, depth, heads, mlp = _WIDTHS[width]
  return {"image_size": image_size, "patch_size": int(patch), "embed_dim": d, "num_layers": depth,
          "num_heads": heads, "mlp_dim": mlp}


class PatchEmbed(nn.Module):
  """(B, H, W, C) -> (B, (H/p)(W/p), D): a p x p conv with stride p, i.e. one matmul per flattened patch."""

  patch_size: int
  embed_dim: int
  dtype: str = "float32"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    p = self.patch_size
    y = nn.Conv(self.embed_dim, (p, p), strides=(p, p), padding="VALID", dtype=jnp.dtype(self.dtype),
                param_dtype=jnp.float32, name="conv",
                kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(),
                                                         ("height", "width", "conv_in", "embed")),
                bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed",)))(x)  # (B, H/p, W/p, D)
    return y.reshape(y.shape[0], -1, y.shape[-1])


@MODELS.register("vit")
class ViT(nn.Module):
  """ViT on NHWC images (B, H, W[, C]); `pool="cls"` reads the [CLS] token, "gap" averages the patch tokens.

  Defaults are ViT-B/16 at 224x224 (see `vit_variant`). `image_size` fixes the number of position embeddings.
  """

  num_outputs: int
  image_size: int = 224
  patch_size: int = 16
  embed_dim: int = 768
  num_layers: int = 12
  num_heads: int = 12
  mlp_dim: int = 3072
  pool: str = "cls"
  dropout: float = 0.0
  attention_impl: str = "auto"
  implementation: str | None = None
  layer_impl: str = "auto"
  scan_layers: bool = False  # See transformer.stack_blocks.
  remat: str = "none"  # A transformer.REMAT_POLICIES key.
  dtype: str = "float32"

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    if self.pool not in POOLS:
      raise ValueError(f"Unknown pool '{self.pool}' (config key model.pool); choose one of {list(POOLS)}.")
    if self.image_size % self.patch_size:
      raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}.")
    if x.ndim == 3:
      x = x[..., None]  # (B, H, W) -> (B, H, W, 1)
    if x.shape[1:3] != (self.image_size, self.image_size):
      raise ValueError(f"ViT expects {self.image_size}x{self.image_size} images (config key model.image_size), "
                       f"got {x.shape[1]}x{x.shape[2]}.")
    dtype = jnp.dtype(self.dtype)
    h = PatchEmbed(self.patch_size, self.embed_dim, self.dtype, name="patch_embed")(x.astype(dtype))  # (B, N, D)
    b, _, d = h.shape
    if self.pool == "cls":
      cls = self.param("cls", nn.with_logical_partitioning(nn.initializers.zeros, (None, None, "embed")), (1, 1, d),
                       jnp.float32)
      h = jnp.concatenate([jnp.broadcast_to(cls.astype(dtype), (b, 1, d)), h], axis=1)  # (B, 1 + N, D)
    pos = self.param("pos_embed", nn.with_logical_partitioning(nn.initializers.normal(0.02), (None, None, "embed")),
                     (1, h.shape[1], d), jnp.float32)
    h = Dropout(self.dropout, deterministic=not train)(h + pos.astype(dtype))
    block = dict(num_heads=self.num_heads, mlp_dim=self.mlp_dim, dropout=self.dropout, post_ln=False,
                 layer_norm_eps=1e-6, approximate_gelu=False, attention_impl=self.attention_impl,
                 implementation=self.implementation, layer_impl=self.layer_impl, dtype=self.dtype)
    h = stack_blocks(h, self.num_layers, block, scan=self.scan_layers, remat=self.remat, train=train)
    h = layer_norm(1e-6, dtype, name="final_norm", impl=self.layer_impl)(h)
    pooled = h[:, 0] if self.pool == "cls" else h.mean(axis=1)  # (B, D)
    head = nn.Dense(self.num_outputs, dtype=dtype, param_dtype=jnp.float32, name="head",
                    kernel_init=nn.with_logical_partitioning(nn.initializers.zeros, ("embed", None)),
                    bias_init=nn.with_logical_partitioning(nn.initializers.zeros, (None,)))
    return head(pooled).astype(jnp.float32)  # (B, num_outputs)
