"""C2F-TCN (coarse-to-fine temporal convolutional network), channels-last.

The architecture follows the design brief (section 3): a six-level
max-pooling encoder, a temporal pyramid pooling (TPP) block on the coarsest
level and a decoder whose six stages each emit a head. Lengths follow the
published PyTorch model exactly (docs/model.md): every pooling floors (600 ->
300 -> 150 -> 75 -> 37 -> 18 -> 9), the TPP pools and interpolates on the
bottleneck's own length, each decoder stage upsamples x2 with aligned corners
and zero-pads on the right to its skip's length, and the ensemble upsamples
each head to the input length with aligned corners.

Every example of a batch runs at its own length L (the count of its mask's
leading valid frames), inside one jitted program: pooled lengths, masks and
interpolation weights are per-example arrays, so a window padded into a batch
gives on its valid frames what it gives alone, and lengths never recompile.
Frames past an example's length are zero at every layer, which is exactly
the zero boundary the published model's convolutions see. A window shorter
than 384 frames (where the published model fails: its kernel-6 pyramid pool
gets no input) runs as if zero-padded to 384 frames with the padding masked:
the published model's 384-frame steps, with every step past the window's
own (ceil(L / 2^level) at each level) held at zero and out of BatchNorm.

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
# The shortest window the published model runs: its bottleneck (L / 64
# steps) must hold one kernel-6 pyramid pool.
MIN_LENGTH = (2**NUM_LEVELS) * max(TPP_POOL_SIZES)
CONV_IMPLS = ("xla", "winograd")
# Interpolation taps around floor(i / factor) that `interpolate` reads.
_TAPS = (-2, -1, 0, 1)
# Present in a model's output dict when its heads already run at the input's
# rate (models/causal_tcn.py): the ensemble then resamples nothing.
HEADS_AT_INPUT_RATE = "heads_at_input_rate"


def run_length(lengths: jax.Array) -> jax.Array:
  """Per-example length whose steps the network runs: L, or 384 below 384
  (the window zero-padded with masked frames)."""
  return jnp.maximum(lengths, MIN_LENGTH)


def level_lengths(
  lengths: jax.Array, level: int
) -> tuple[jax.Array, jax.Array]:
  """(steps, valid) counts of `level` (0: input) per example.

  steps: floor(run length / 2^level), the published model's steps there,
  which fix the pooling and interpolation; valid: the steps that hold data,
  all of them for L >= 384, ceil(L / 2^level) below (a step that sees a
  real frame). Steps past valid are zero at every layer.
  """
  steps = run_length(lengths) >> level
  valid = jnp.minimum((lengths + (1 << level) - 1) >> level, steps)
  return steps, valid


def length_mask(lengths: jax.Array, size: int, dtype=jnp.float32) -> jax.Array:
  """(B, size) mask of each example's first lengths[b] steps."""
  return (jnp.arange(size)[None, :] < lengths[:, None]).astype(dtype)


def interpolate(
  x: jax.Array,
  in_lengths: jax.Array,
  out_lengths: jax.Array,
  factor: int,
  out_size: int,
) -> jax.Array:
  """Per-example linear resampling along axis 1 with aligned corners
  (PyTorch's `align_corners=True`): example b's first in_lengths[b] steps
  become out_lengths[b] steps, and the rest of the out_size steps are zero.

  Needs in_lengths == out_lengths // factor (what floor pooling gives). Then
  output i reads only inputs floor(i / factor) - 2 .. + 1, so the resampling
  is four shifted copies of x repeated `factor` times, weighted per example:
  no gather, and elementwise work in the backward pass too.
  """
  in_size = x.shape[1]
  if out_size > (in_size + 1) * factor:
    raise ValueError(
      f"cannot resample {in_size} steps to {out_size} with factor {factor}"
    )
  n = in_lengths.astype(jnp.float32)[:, None]
  m = out_lengths[:, None]
  # Float32 positions, computed as PyTorch does: i * ((n - 1) / (m - 1)).
  scale = jnp.where(
    m > 1, (n - 1) / jnp.maximum(m - 1, 1).astype(jnp.float32), 0.0
  )
  step = jnp.arange(out_size)
  pos = step.astype(jnp.float32)[None, :] * scale
  lo = jnp.clip(jnp.floor(pos), 0.0, jnp.maximum(n - 2, 0.0))
  frac = pos - lo
  tap = lo.astype(jnp.int32) - (step // factor)[None, :]  # in -2 .. 0
  inside = step[None, :] < m
  padded = jnp.pad(x, ((0, 0), (2, 2), (0, 0)))
  repeated = jnp.repeat(padded, factor, axis=1)
  out = 0.0
  for offset in _TAPS:
    weight = jnp.where(tap == offset, 1.0 - frac, 0.0) + jnp.where(
      tap + 1 == offset, frac, 0.0
    )
    weight = jnp.where(inside, weight, 0.0).astype(x.dtype)[..., None]
    start = (offset + 2) * factor
    out = out + weight * repeated[:, start : start + out_size]
  return out


def max_pool(x: jax.Array, size: int) -> jax.Array:
  """Non-overlapping max pooling along time (kernel = stride = size), floor."""
  return nn.max_pool(x, window_shape=(size,), strides=(size,), padding="VALID")


class BatchNorm(nn.Module):
  """BatchNorm1d whose batch statistics come from valid steps only.

  Same variables as flax's nn.BatchNorm (params scale/bias, batch_stats
  mean/var) and PyTorch's defaults (momentum 0.1, i.e. 0.9 here, eps 1e-5).
  The running variance is updated with the biased batch variance, or with
  PyTorch's unbiased one (n / (n - 1), n the valid steps) if
  `unbiased_var`; normalisation uses the biased one either way, as PyTorch.
  """

  unbiased_var: bool = False
  momentum: float = 0.9
  epsilon: float = 1e-5

  @nn.compact
  def __call__(self, x: jax.Array, valid: jax.Array, train: bool) -> jax.Array:
    features = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (features,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (features,), jnp.float32)
    running_mean = self.variable(
      "batch_stats", "mean", jnp.zeros, (features,), jnp.float32
    )
    running_var = self.variable(
      "batch_stats", "var", jnp.ones, (features,), jnp.float32
    )
    if train:
      weights = valid[..., None].astype(x.dtype)
      count = jnp.sum(weights)
      mean = jnp.sum(x * weights, axis=(0, 1)) / jnp.maximum(count, 1.0)
      var = jnp.sum(
        jnp.square((x - mean) * weights), axis=(0, 1)
      ) / jnp.maximum(count, 1.0)
      if not self.is_initializing():
        update = var * (
          count / jnp.maximum(count - 1.0, 1.0) if self.unbiased_var else 1.0
        )
        running_mean.value = (
          self.momentum * running_mean.value + (1.0 - self.momentum) * mean
        )
        running_var.value = (
          self.momentum * running_var.value + (1.0 - self.momentum) * update
        )
    else:
      mean, var = running_mean.value, running_var.value
    multiplier = scale * jax.lax.rsqrt(var + self.epsilon)
    return (x - mean) * multiplier.astype(x.dtype) + bias.astype(x.dtype)


class DoubleConv(nn.Module):
  """(Conv k5 SAME -> BatchNorm -> ReLU) x 2 on the steps of `mask`: the
  others are zeroed (the zero boundary of an unpadded sequence) and kept out
  of BatchNorm's statistics. The input must be zero outside `mask`."""

  features: int
  conv_impl: str = "xla"
  bn_unbiased_var: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array, train: bool) -> jax.Array:
    frame_mask = mask[..., None].astype(x.dtype)
    for i in range(2):
      if self.conv_impl == "winograd":
        x = winograd.Conv(self.features, 5, name=f"conv{i}")(x)
      else:
        x = nn.Conv(self.features, (5,), padding="SAME", name=f"conv{i}")(x)
      x = BatchNorm(self.bn_unbiased_var, name=f"bn{i}")(x, mask, train)
      x = nn.relu(x) * frame_mask
    return x


class TemporalPyramidPooling(nn.Module):
  """Pools the bottleneck at several scales (on each example's own `steps`)
  into 1-channel maps, interpolated back to that length and masked."""

  @nn.compact
  def __call__(
    self, x: jax.Array, steps: jax.Array, mask: jax.Array
  ) -> jax.Array:
    project = nn.Conv(1, (1,), name="project")  # one conv shared by all scales
    size = x.shape[1]
    maps = [
      interpolate(project(max_pool(x, k)), steps // k, steps, k, size)
      * mask[..., None]
      for k in TPP_POOL_SIZES
    ]
    return jnp.concatenate(maps + [x], axis=-1)


class C2FTCN(nn.Module):
  """C2F-TCN on (B, T, D) features and a (B, T) mask of leading valid frames.

  Returns a dict with
    logits: (B, T, C) the final head y,
    head_logits: the five intermediate heads y1..y5 at their own temporal
      resolution, T' // 32, // 16, // 8, // 4, // 2 steps (T' = max(T, 384)),
    head_masks: their (B, T' // 2^k) float masks of valid steps,
    features: (B, T, 128) the decoder's last features (input of head y),
    lengths: (B,) int32, each example's valid frames (for `upsampled_heads`).
  """

  num_classes: int
  conv_impl: str = "xla"
  # PyTorch's running-variance update (unbiased batch variance).
  bn_unbiased_var: bool = False

  @nn.compact
  def __call__(
    self, x: jax.Array, mask: jax.Array | None = None, train: bool = False
  ) -> dict:
    if self.conv_impl not in CONV_IMPLS:
      raise ValueError(
        f"conv_impl={self.conv_impl!r} is unknown: use one of "
        f"{', '.join(CONV_IMPLS)}"
      )
    batch, length, _ = x.shape
    if mask is None:
      lengths = jnp.full((batch,), length, jnp.int32)
    else:
      lengths = jnp.sum(mask > 0, axis=1).astype(jnp.int32)
    size = max(length, MIN_LENGTH)
    # Frames past L, and the padding to 384 frames, are zeros.
    x = jnp.pad(
      x * length_mask(lengths, length, x.dtype)[..., None],
      ((0, 0), (0, size - length), (0, 0)),
    )

    skips, level_masks = [], []
    for level, features in enumerate(ENCODER_FEATURES):
      level_mask = length_mask(
        level_lengths(lengths, level)[1], size >> level, x.dtype
      )
      if level:
        x = max_pool(x, 2) * level_mask[..., None]
      x = DoubleConv(
        features, self.conv_impl, self.bn_unbiased_var, name=f"x{level + 1}"
      )(x, level_mask, train)
      skips.append(x)
      level_masks.append(level_mask)

    x = TemporalPyramidPooling(name="tpp")(
      x, level_lengths(lengths, NUM_LEVELS)[0], level_masks[-1]
    )
    head_logits, head_masks = [], []
    # Decoder: up with x6, x5, ..., x1; every stage but the last feeds a head.
    for stage, level in enumerate(range(NUM_LEVELS - 1, -1, -1)):
      below, _ = level_lengths(lengths, level + 1)
      skip, level_mask = skips[level], level_masks[level]
      # x2 with aligned corners, then zeros up to the skip's length.
      up = interpolate(x, below, 2 * below, 2, skip.shape[1])
      x = jnp.concatenate([skip, up * level_mask[..., None]], axis=-1)
      x = DoubleConv(
        DECODER_FEATURES,
        self.conv_impl,
        self.bn_unbiased_var,
        name=f"up{stage + 1}",
      )(x, level_mask, train)
      if stage < len(HEAD_NAMES):
        head = nn.Conv(self.num_classes, (1,), name=HEAD_NAMES[stage])
        head_logits.append(head(nn.relu(x)))
        head_masks.append(level_mask)
    logits = nn.Conv(self.num_classes, (1,), name="y")(x)
    return {
      "logits": logits[:, :length],
      "head_logits": tuple(head_logits),
      "head_masks": tuple(head_masks),
      "features": x[:, :length],
      "lengths": lengths,
    }


def upsampled_heads(outputs: dict) -> list[jax.Array]:
  """All six heads' logits at full resolution (B, T, C), ordered y1..y5, y:
  each head linearly upsampled with aligned corners from its level's length
  to the example's run length, as the published ensemble does (heads that
  already run at T, HEADS_AT_INPUT_RATE, are returned as they are)."""
  if HEADS_AT_INPUT_RATE in outputs:
    return list(outputs["head_logits"]) + [outputs["logits"]]
  length = outputs["logits"].shape[1]
  lengths = outputs["lengths"]
  heads = []
  for level, head in zip(range(NUM_LEVELS - 1, 0, -1), outputs["head_logits"]):
    up = interpolate(
      head,
      level_lengths(lengths, level)[0],
      run_length(lengths),
      1 << level,
      max(length, MIN_LENGTH),
    )
    heads.append(up[:, :length])
  return heads + [outputs["logits"]]


def ensemble_probs(
  outputs: dict, weights: Sequence[float] | None = None
) -> jax.Array:
  """Weighted mean of the softmax of the six heads, each upsampled to T.

  `weights` are ordered (y1, y2, y3, y4, y5, y); default uniform.
  """
  count = len(HEAD_NAMES) + 1
  if weights is None:
    weights = (1.0,) * count
  if len(weights) != count:
    raise ValueError(
      f"ensemble weights need {count} values "
      f"(y1..y5, y), got {len(weights)}: {tuple(weights)}"
    )
  heads = upsampled_heads(outputs)
  total = float(sum(weights))
  return sum(
    w / total * jax.nn.softmax(h, axis=-1) for w, h in zip(weights, heads)
  )
