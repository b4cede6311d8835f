"""C2F-TCN (coarse-to-fine temporal convolutional network), channels-last.

The architecture follows the design brief (section 3) exactly: a six-level
max-pooling encoder, a temporal pyramid pooling (TPP) block on the coarsest
level and a decoder whose six stages each emit a head. Sequences of any length
work: the input is zero-padded to a multiple of 64 frames (and at least 384,
so the coarsest level is long enough for the TPP pools) and a frame mask keeps
padded frames out of the BatchNorm statistics and out of every convolution's
context, so valid frames see the same zero boundary an unpadded sequence has.

`conv_impl` picks how the 5-tap convolutions are computed, with identical
parameters: "xla" (XLA's convolution, the default) or "winograd" (Winograd
minimal filtering F(4, 5), 2.5x fewer matmul FLOPs; faster on CPUs, equal to
float32 rounding; see models/winograd.py).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from exo2ego_jax.models import winograd

# Encoder channels of x1..x7 and the decoder's channels, as in the brief.
ENCODER_FEATURES = (256, 256, 256, 128, 128, 128, 128)
DECODER_FEATURES = 128
TPP_POOL_SIZES = (2, 3, 5, 6)
# Head names from coarse to fine; "y" is the final (full resolution) head.
HEAD_NAMES = ("y1", "y2", "y3", "y4", "y5")
NUM_LEVELS = len(ENCODER_FEATURES) - 1  # six 2x poolings
MIN_PADDED_LENGTH = (2**NUM_LEVELS) * max(TPP_POOL_SIZES)
CONV_IMPLS = ("xla", "winograd")


def padded_length(length: int) -> int:
  """Length the model runs at internally for a window of `length` frames."""
  step = 2**NUM_LEVELS
  return max(-(-length // step) * step, MIN_PADDED_LENGTH)


def upsample_linear(x: jax.Array, length: int) -> jax.Array:
  """Linear interpolation along axis 1 with aligned corners (PyTorch's
  `align_corners=True`): the first and last samples map onto each other."""
  in_length = x.shape[1]
  if in_length == length:
    return x
  if in_length == 1 or length == 1:
    return jnp.repeat(x[:, :1], length, axis=1)
  pos = jnp.arange(length, dtype=jnp.float32) * ((in_length - 1) / (length - 1))
  lo = jnp.clip(jnp.floor(pos).astype(jnp.int32), 0, in_length - 2)
  frac = (pos - lo)[None, :, None].astype(x.dtype)
  return x[:, lo] * (1 - frac) + x[:, lo + 1] * frac


def max_pool(x: jax.Array, size: int) -> jax.Array:
  """Non-overlapping max pooling along time (kernel = stride = size), floor."""
  return nn.max_pool(x, window_shape=(size,), strides=(size,), padding="VALID")


class DoubleConv(nn.Module):
  """(Conv k5 SAME -> BatchNorm -> ReLU) x 2, with padded frames zeroed."""

  features: int
  conv_impl: str = "xla"

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array, train: bool) -> jax.Array:
    frame_mask = mask[..., None]
    for i in range(2):
      if self.conv_impl == "winograd":
        x = winograd.Conv(self.features, 5, name=f"conv{i}")(x)
      else:
        x = nn.Conv(self.features, (5,), padding="SAME", name=f"conv{i}")(x)
      # PyTorch BatchNorm1d defaults: momentum 0.1 (= flax 0.9), eps 1e-5.
      x = nn.BatchNorm(
          use_running_average=not train, momentum=0.9, epsilon=1e-5,
          name=f"bn{i}")(x, mask=frame_mask)
      x = nn.relu(x) * frame_mask
    return x


class TemporalPyramidPooling(nn.Module):
  """Pools the coarsest features at several scales into 1-channel maps."""

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    project = nn.Conv(1, (1,), name="project")  # one conv shared by all scales
    maps = [upsample_linear(project(max_pool(x, k)), x.shape[1])
            for k in TPP_POOL_SIZES]
    return jnp.concatenate(maps + [x], axis=-1)


class C2FTCN(nn.Module):
  """C2F-TCN on (B, T, D) features.

  Returns a dict with
    logits: (B, T, C) the final head y,
    head_logits: the five intermediate heads y1..y5 at their own temporal
      resolution (padded length / 32, /16, /8, /4, /2),
    head_masks: their frame masks (B, T_k) float,
    features: (B, T, 128) the decoder's last features (input of head y),
  and `padded_length`, the internal length, for upsampling the heads.
  """

  num_classes: int
  conv_impl: str = "xla"

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array | None = None,
               train: bool = False) -> dict:
    if self.conv_impl not in CONV_IMPLS:
      raise ValueError(f"conv_impl={self.conv_impl!r} is unknown: use one of "
                       f"{', '.join(CONV_IMPLS)}")
    batch, length, _ = x.shape
    if mask is None:
      mask = jnp.ones((batch, length), x.dtype)
    mask = mask.astype(x.dtype)
    full = padded_length(length)
    pad = full - length
    x = jnp.pad(x * mask[..., None], ((0, 0), (0, pad), (0, 0)))
    mask = jnp.pad(mask, ((0, 0), (0, pad)))

    skips, masks = [], []
    for level, features in enumerate(ENCODER_FEATURES):
      if level:
        x = max_pool(x, 2)
        mask = max_pool(mask[..., None], 2)[..., 0]
      x = DoubleConv(features, self.conv_impl, name=f"x{level + 1}")(
          x, mask, train)
      skips.append(x)
      masks.append(mask)

    x = TemporalPyramidPooling(name="tpp")(x)
    head_logits, head_masks = [], []
    # Decoder: up with x6, x5, ..., x1; every stage but the last feeds a head.
    for stage, level in enumerate(range(NUM_LEVELS - 1, -1, -1)):
      skip, skip_mask = skips[level], masks[level]
      up = upsample_linear(x, 2 * x.shape[1])
      up = jnp.pad(up, ((0, 0), (0, skip.shape[1] - up.shape[1]), (0, 0)))
      x = jnp.concatenate([skip, up], axis=-1)
      x = DoubleConv(DECODER_FEATURES, self.conv_impl, name=f"up{stage + 1}")(
          x, skip_mask, train)
      if stage < len(HEAD_NAMES):
        name = HEAD_NAMES[stage]
        head_logits.append(nn.Conv(self.num_classes, (1,), name=name)(nn.relu(x)))
        head_masks.append(skip_mask)
    logits = nn.Conv(self.num_classes, (1,), name="y")(x)
    return {
        "logits": logits[:, :length],
        "head_logits": tuple(head_logits),
        "head_masks": tuple(head_masks),
        "features": x[:, :length],
        "padded_length": full,
    }


def upsampled_heads(outputs: dict) -> list[jax.Array]:
  """All six heads' logits at full resolution, ordered y1..y5, y."""
  length = outputs["logits"].shape[1]
  heads = [upsample_linear(h, outputs["padded_length"])[:, :length]
           for h in outputs["head_logits"]]
  return heads + [outputs["logits"]]


def ensemble_probs(outputs: dict, weights: Sequence[float] | None = None
                   ) -> jax.Array:
  """Weighted mean of the softmax of the six heads, each upsampled to T.

  `weights` are ordered (y1, y2, y3, y4, y5, y); default uniform.
  """
  heads = upsampled_heads(outputs)
  if weights is None:
    weights = (1.0,) * len(heads)
  if len(weights) != len(heads):
    raise ValueError(f"ensemble weights need {len(heads)} values "
                     f"(y1..y5, y), got {len(weights)}: {tuple(weights)}")
  total = float(sum(weights))
  return sum(w / total * jax.nn.softmax(h, axis=-1)
             for w, h in zip(weights, heads))
