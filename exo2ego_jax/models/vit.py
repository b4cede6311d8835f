"""DINOv2 vision transformer (Oquab et al. 2023) in flax.linen, channels-last.

The network reproduces the public DINOv2 release exactly so converted
weights (`exo2ego_jax.import_weights`) give the same features as PyTorch:
14x14 patches, a CLS token, optional register tokens (Darcet et al. 2024,
inserted after the position embedding, so they carry none), pre-norm blocks
with LayerScale, exact-erf GELU MLP or the fused SwiGLU FFN of ViT-g, and a
final LayerNorm (eps 1e-6 everywhere).

Position embeddings are learned for one square grid (37x37 for the released
518-pixel models) and resampled for other image sizes with PyTorch's bicubic
`interpolate`, whose two variants the releases use:
  * plain bicubic (a=-0.75, clamped borders), with the "+0.1" scale-factor
    offset of the original release (`interpolate_offset=0.1`) or sized
    exactly (`0.0`, as Hugging Face's `Dinov2Model` does now);
  * antialiased bicubic (a=-0.5, PIL-style support), used by the models with
    registers (`interpolate_antialias=True`, offset 0).
Both are computed as small resampling matrices on the host at trace time, so
the resize costs two tiny matmuls and matches PyTorch to float precision.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

PATCH_SIZE = 14

# Released sizes (dinov2/models/vision_transformer.py: vit_small ... vit_giant2).
# All use 64-dimensional heads; ViT-g uses the fused SwiGLU FFN.
VIT_SIZES = {
  "vit_small": dict(embed_dim=384, depth=12, num_heads=6),
  "vit_base": dict(embed_dim=768, depth=12, num_heads=12),
  "vit_large": dict(embed_dim=1024, depth=24, num_heads=16),
  "vit_giant2": dict(embed_dim=1536, depth=40, num_heads=24, ffn="swiglu"),
}

# The module fields that define a backbone; saved next to converted weights.
CONFIG_FIELDS = (
  "embed_dim",
  "depth",
  "num_heads",
  "mlp_ratio",
  "ffn",
  "patch_size",
  "pos_embed_grid",
  "num_register_tokens",
  "layerscale_init",
  "interpolate_offset",
  "interpolate_antialias",
)


def _cubic(x: np.ndarray, a: float) -> np.ndarray:
  """Keys' cubic convolution kernel with parameter `a`."""
  x = np.abs(x)
  near = ((a + 2) * x - (a + 3)) * x * x + 1
  far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
  return np.where(x < 1, near, np.where(x < 2, far, 0.0))


def bicubic_matrix(
  in_size: int,
  out_size: int,
  scale: float | None = None,
  antialias: bool = False,
) -> np.ndarray:
  """(out_size, in_size) matrix of PyTorch's 1-D bicubic resampling
  (`align_corners=False`). `scale` is the `scale_factor` PyTorch was given
  (the source step is then 1/scale), else in_size/out_size is used."""
  step = 1.0 / scale if scale else in_size / out_size
  weights = np.zeros((out_size, in_size))
  rows = np.arange(out_size)
  if not antialias:
    # aten upsample_bicubic2d: 4 taps at clamped indices around the source.
    real = step * (rows + 0.5) - 0.5
    index = np.minimum(np.floor(real), in_size - 1).astype(int)
    t = np.clip(real - index, 0.0, 1.0)
    for tap in range(4):
      w = _cubic(t - (tap - 1), -0.75)
      cols = np.clip(index - 1 + tap, 0, in_size - 1)
      np.add.at(weights, (rows, cols), w)
    return weights
  # aten _upsample_bicubic2d_aa: a=-0.5 kernel stretched by the downscale
  # factor, truncated at the borders and renormalised (PIL's convention).
  support = 2.0 * max(step, 1.0)
  inv = 1.0 / step if step >= 1.0 else 1.0
  for row in rows:
    center = step * (row + 0.5)
    lo = max(int(center - support + 0.5), 0)
    hi = min(int(center + support + 0.5), in_size)
    cols = np.arange(lo, hi)
    w = _cubic((cols - center + 0.5) * inv, -0.5)
    total = w.sum()
    weights[row, lo:hi] = w / total if total != 0 else w
  return weights


def resize_pos_embed(
  patch_pos_embed: jax.Array,
  grid: tuple[int, int],
  offset: float = 0.0,
  antialias: bool = False,
) -> jax.Array:
  """Resamples (1, M*M, D) patch position embeddings to a (gh, gw) grid, as
  DINOv2's `interpolate_pos_encoding` does (computed in float32)."""
  _, n, dim = patch_pos_embed.shape
  m = int(round(math.sqrt(n)))
  if m * m != n:
    raise ValueError(f"position embeddings hold {n} patches, not a square grid")
  gh, gw = grid
  scales = ((gh + offset) / m, (gw + offset) / m) if offset else (None, None)
  rows = jnp.asarray(bicubic_matrix(m, gh, scales[0], antialias), jnp.float32)
  cols = jnp.asarray(bicubic_matrix(m, gw, scales[1], antialias), jnp.float32)
  table = patch_pos_embed.astype(jnp.float32).reshape(m, m, dim)
  table = jnp.einsum(
    "ai,bj,ijd->abd", rows, cols, table, precision=jax.lax.Precision.HIGHEST
  )
  return table.reshape(1, gh * gw, dim).astype(patch_pos_embed.dtype)


def _dense(features: int, name: str, dtype) -> nn.Dense:
  # DINOv2 (timm) initialises every Linear with trunc_normal(std=0.02).
  return nn.Dense(
    features,
    dtype=dtype,
    name=name,
    kernel_init=nn.initializers.truncated_normal(0.02),
  )


def _layer_norm(name: str, dtype) -> nn.LayerNorm:
  # Two-pass variance as in PyTorch, for parity with converted weights.
  return nn.LayerNorm(
    epsilon=1e-6, use_fast_variance=False, dtype=dtype, name=name
  )


class Attention(nn.Module):
  """Multi-head self-attention with one fused qkv projection (as released)."""

  num_heads: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    batch, tokens, dim = x.shape
    head_dim = dim // self.num_heads
    qkv = _dense(3 * dim, "qkv", self.dtype)(x)
    qkv = qkv.reshape(batch, tokens, 3, self.num_heads, head_dim)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    out = jax.nn.dot_product_attention(q, k, v)
    return _dense(dim, "proj", self.dtype)(out.reshape(batch, tokens, dim))


class Mlp(nn.Module):
  hidden_dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    h = _dense(self.hidden_dim, "fc1", self.dtype)(x)
    h = nn.gelu(h, approximate=False)  # torch nn.GELU default: exact erf
    return _dense(x.shape[-1], "fc2", self.dtype)(h)


class SwiGLU(nn.Module):
  """DINOv2's SwiGLUFFNFused: silu(gate) * up from one fused projection."""

  hidden_dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    # Two thirds of the MLP width, rounded up to a multiple of 8.
    hidden = (int(self.hidden_dim * 2 / 3) + 7) // 8 * 8
    gate, up = jnp.split(_dense(2 * hidden, "w12", self.dtype)(x), 2, axis=-1)
    return _dense(x.shape[-1], "w3", self.dtype)(nn.silu(gate) * up)


class LayerScale(nn.Module):
  init_value: float

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    gamma = self.param(
      "gamma", nn.initializers.constant(self.init_value), (x.shape[-1],)
    )
    return x * gamma.astype(x.dtype)


class Block(nn.Module):
  """Pre-norm transformer block with LayerScale on both residual branches."""

  num_heads: int
  mlp_ratio: float
  ffn: str
  layerscale_init: float
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    hidden = int(x.shape[-1] * self.mlp_ratio)
    y = Attention(self.num_heads, self.dtype, name="attn")(
      _layer_norm("norm1", self.dtype)(x)
    )
    x = x + LayerScale(self.layerscale_init, name="ls1")(y)
    ffn = {"mlp": Mlp, "swiglu": SwiGLU}[self.ffn]
    y = ffn(hidden, self.dtype, name="mlp")(_layer_norm("norm2", self.dtype)(x))
    return x + LayerScale(self.layerscale_init, name="ls2")(y)


class ViT(nn.Module):
  """DINOv2 backbone on (B, H, W, 3) normalised images.

  Returns a dict with
    cls: (B, D) the CLS token after the final LayerNorm (DINOv2's feature),
    patch_tokens: (B, H/14 * W/14, D) patch tokens after the final LayerNorm,
      row-major over the patch grid,
    register_tokens: (B, R, D) (R may be 0).
  """

  embed_dim: int
  depth: int
  num_heads: int
  mlp_ratio: float = 4.0
  ffn: str = "mlp"  # or "swiglu" (ViT-g)
  patch_size: int = PATCH_SIZE
  pos_embed_grid: int = 37  # 518 / 14: the released models' grid
  num_register_tokens: int = 0
  layerscale_init: float = 1e-5
  interpolate_offset: float = 0.1  # original release; Hugging Face: 0.0
  interpolate_antialias: bool = False
  dtype: Any = jnp.float32  # compute dtype; parameters stay float32

  @nn.compact
  def __call__(self, images: jax.Array) -> dict:
    if self.ffn not in ("mlp", "swiglu"):
      raise ValueError(f"ffn={self.ffn!r}: use 'mlp' or 'swiglu'")
    batch, height, width, _ = images.shape
    grid = (height // self.patch_size, width // self.patch_size)
    if min(grid) < 1:
      raise ValueError(
        f"images of {height}x{width} pixels are smaller than "
        f"one {self.patch_size}x{self.patch_size} patch"
      )
    x = nn.Conv(
      self.embed_dim,
      (self.patch_size,) * 2,
      strides=(self.patch_size,) * 2,
      padding="VALID",
      dtype=self.dtype,
      name="patch_embed",
    )(images.astype(self.dtype))
    x = x.reshape(batch, grid[0] * grid[1], self.embed_dim)

    # DINOv2's init: tiny CLS/register tokens, truncated-normal positions.
    cls_token = self.param(
      "cls_token", nn.initializers.normal(1e-6), (1, 1, self.embed_dim)
    )
    pos_embed = self.param(
      "pos_embed",
      nn.initializers.truncated_normal(0.02),
      (1, 1 + self.pos_embed_grid**2, self.embed_dim),
    )
    patch_pos = pos_embed[:, 1:]
    if grid != (self.pos_embed_grid, self.pos_embed_grid):
      patch_pos = resize_pos_embed(
        patch_pos, grid, self.interpolate_offset, self.interpolate_antialias
      )
    pos_embed = jnp.concatenate([pos_embed[:, :1], patch_pos], axis=1)
    x = jnp.concatenate(
      [
        jnp.broadcast_to(cls_token, (batch, 1, self.embed_dim)).astype(x.dtype),
        x,
      ],
      axis=1,
    ) + pos_embed.astype(x.dtype)
    if self.num_register_tokens:
      registers = self.param(
        "register_tokens",
        nn.initializers.normal(1e-6),
        (1, self.num_register_tokens, self.embed_dim),
      )
      registers = jnp.broadcast_to(
        registers, (batch,) + registers.shape[1:]
      ).astype(x.dtype)
      x = jnp.concatenate([x[:, :1], registers, x[:, 1:]], axis=1)

    for i in range(self.depth):
      x = Block(
        self.num_heads,
        self.mlp_ratio,
        self.ffn,
        self.layerscale_init,
        self.dtype,
        name=f"block{i}",
      )(x)
    x = _layer_norm("norm", self.dtype)(x)
    first_patch = 1 + self.num_register_tokens
    return {
      "cls": x[:, 0],
      "patch_tokens": x[:, first_patch:],
      "register_tokens": x[:, 1:first_patch],
    }


def random_params(model: ViT, seed: int = 0) -> dict:
  """Random parameters drawn on the host with DINOv2's init scheme: no XLA
  compilation, so a test or demo backbone is ready in milliseconds (jitting
  `model.init` compiles a random-number program per parameter).

  Linear/conv kernels and positions ~ N(0, 0.02^2), biases 0, LayerNorm
  scales 1, LayerScale `layerscale_init`, CLS/register tokens with std 1e-6.
  """
  size = model.patch_size * model.pos_embed_grid
  shapes = jax.eval_shape(
    model.init, jax.random.key(0), jnp.zeros((1, size, size, 3))
  )["params"]
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name = path[-1].key
    if name == "bias":
      return np.zeros(leaf.shape, np.float32)
    if name == "scale":
      return np.ones(leaf.shape, np.float32)
    if name == "gamma":
      return np.full(leaf.shape, model.layerscale_init, np.float32)
    std = 1e-6 if name in ("cls_token", "register_tokens") else 0.02
    return (rng.standard_normal(leaf.shape) * std).astype(np.float32)

  return jax.tree_util.tree_map_with_path(draw, shapes)


def config_of(model: ViT) -> dict:
  """The fields that rebuild `model` with `ViT(**config)` (JSON-friendly)."""
  return {name: getattr(model, name) for name in CONFIG_FIELDS}


def vit_from_name(name: str, **overrides) -> ViT:
  """A released size by name (vit_small, vit_base, vit_large, vit_giant2),
  with any field overridden, e.g. `num_register_tokens=4`."""
  if name not in VIT_SIZES:
    raise ValueError(
      f"unknown ViT size {name!r}: use one of {', '.join(VIT_SIZES)}"
    )
  return ViT(**dict(VIT_SIZES[name], **overrides))
