"""Feature adapters for feature distillation: ego features -> exo-like features.

Both adapters are residual (output = input + correction) with a zero-initialised
last projection, so an untrained adapter is the identity map.

`MLPAdapter` is the faithful counterpart of the paper's adapter: a
torch.nn.Transformer (d_model 1024, 16 heads, 12 encoder and 6 decoder
layers) plus a skip connection, called on (1, 600, 1024) batches with
PyTorch's default batch_first=False, so its sequence is the batch axis, of
length 1: every frame attends only to itself, a per-frame map
(docs/model.md). `TemporalAttentionAdapter` is our extension: it attends
across time inside a local window, on the (B, T, D) layout with time as the
sequence axis, so it does mix frames (which `tests/test_adapters.py` checks).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


def local_attention_mask(mask: jax.Array, window: int) -> jax.Array:
  """(B, 1, T, T) mask: frame i attends to valid frames j with |i-j| <= window//2."""
  length = mask.shape[1]
  pos = jnp.arange(length)
  near = jnp.abs(pos[:, None] - pos[None, :]) <= window // 2
  valid = (mask[:, None, :] > 0) & near[None]
  return valid[:, None]


class MLPAdapter(nn.Module):
  """Per-frame residual MLP: cheap, no temporal context."""

  hidden_dim: int = 256
  num_layers: int = 2

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
    h = x
    for i in range(self.num_layers):
      h = nn.gelu(nn.Dense(self.hidden_dim, name=f"hidden{i}")(h))
    delta = nn.Dense(
      x.shape[-1], kernel_init=nn.initializers.zeros, name="out"
    )(h)
    return (x + delta) * mask[..., None]


class TemporalAttentionAdapter(nn.Module):
  """Residual transformer over time with windowed self-attention."""

  hidden_dim: int = 256
  num_layers: int = 2
  num_heads: int = 4
  window: int = 32

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
    attend = local_attention_mask(mask, self.window)
    h = nn.Dense(self.hidden_dim, name="embed")(x)
    for i in range(self.num_layers):
      y = nn.LayerNorm(name=f"block{i}_ln_attn")(h)
      h = h + nn.MultiHeadDotProductAttention(
        num_heads=self.num_heads, name=f"block{i}_attn"
      )(y, y, mask=attend, deterministic=True)
      y = nn.LayerNorm(name=f"block{i}_ln_mlp")(h)
      y = nn.Dense(2 * self.hidden_dim, name=f"block{i}_mlp_in")(y)
      h = h + nn.Dense(self.hidden_dim, name=f"block{i}_mlp_out")(nn.gelu(y))
    h = nn.LayerNorm(name="ln_out")(h)
    delta = nn.Dense(
      x.shape[-1], kernel_init=nn.initializers.zeros, name="out"
    )(h)
    return (x + delta) * mask[..., None]


def make_adapter(kind: str, **kwargs) -> nn.Module:
  """`kind` is "attention" (windowed temporal attention) or "mlp"."""
  if kind == "attention":
    return TemporalAttentionAdapter(**kwargs)
  if kind == "mlp":
    return MLPAdapter(
      hidden_dim=kwargs.get("hidden_dim", 256),
      num_layers=kwargs.get("num_layers", 2),
    )
  raise ValueError(f"unknown adapter kind {kind!r}: use 'attention' or 'mlp'")
