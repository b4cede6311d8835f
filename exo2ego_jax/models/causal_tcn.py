"""A causal temporal convolutional network for live (online) segmentation.

C2F-TCN pools and interpolates over the whole window, so every prediction
mixes in future frames. This model is its causal counterpart for a wearable
that must name the step while it happens: an input projection, a per-step
BatchNorm (running statistics at inference, so nothing normalises across
time), then residual layers of causal dilated convolutions (kernel
`kernel_size`, dilations 1, 2, 4, ... doubling until the receptive field
reaches `receptive_field` steps). Output t reads inputs t - R + 1 .. t only;
steps before the recording are zeros at every layer, which is what
models/online.py's ring buffers start with, so the frame-by-frame and the
whole-recording outputs agree.

It returns the dict C2F-TCN returns (logits, five head_logits y1..y5,
head_masks, features, lengths), so every mode that reads heads or ensemble
probabilities trains it. Its six heads are linear maps of the last layer's
features and all run at the input rate; `HEADS_AT_INPUT_RATE` in the dict
tells `c2f_tcn.upsampled_heads` not to resample them.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from exo2ego_jax.models import c2f_tcn

NAME = "causal_tcn"
# Key of the output dict: heads are already at the input's rate.
HEADS_AT_INPUT_RATE = c2f_tcn.HEADS_AT_INPUT_RATE


def dilations(receptive_field: int, kernel_size: int) -> tuple[int, ...]:
  """Doubling dilations 1, 2, 4, ... until the causal receptive field
  (`span`) is at least `receptive_field` steps."""
  if receptive_field < 1 or kernel_size < 2:
    raise ValueError(
      f"causal_tcn needs receptive_field >= 1 and kernel_size >= 2, got "
      f"{receptive_field} and {kernel_size}"
    )
  out = [1]
  while span(tuple(out), kernel_size) < receptive_field:
    out.append(2 * out[-1])
  return tuple(out)


HEADS = c2f_tcn.HEAD_NAMES + ("y",)


def head_stages(stages: int) -> tuple[int, ...]:
  """Which stage (0-based) each head y1..y5, y reads: the last stage gives
  y, the one before y5, and so on; the first stage gives the rest."""
  return tuple(max(0, stages - len(HEADS) + i) for i in range(len(HEADS)))


def span(layer_dilations: tuple[int, ...], kernel_size: int) -> int:
  """Receptive field in steps: the current one plus (k - 1) * d per layer."""
  return 1 + (kernel_size - 1) * sum(layer_dilations)


class CausalConv(nn.Module):
  """Dilated convolution along time that reads steps t - (k-1)d .. t."""

  features: int
  kernel_size: int
  dilation: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    history = (self.kernel_size - 1) * self.dilation
    x = jnp.pad(x, ((0, 0), (history, 0), (0, 0)))
    return nn.Conv(
      self.features,
      (self.kernel_size,),
      kernel_dilation=(self.dilation,),
      padding="VALID",
      name="conv",
    )(x)


class CausalTCN(nn.Module):
  """Causal TCN on (B, T, D) features and a (B, T) mask of leading valid
  steps; outputs as C2FTCN's, every head at T steps."""

  num_classes: int
  receptive_field: int = 256
  kernel_size: int = 3
  features: int = 128
  # Refinement stages (MS-TCN's idea, causal): stage s > 1 reads the
  # softmax of the previous stage's last head and smooths it.
  stages: int = 1
  bn_unbiased_var: bool = False

  @property
  def layer_dilations(self) -> tuple[int, ...]:
    """Each stage's dilations (`receptive_field` is per stage)."""
    return dilations(self.receptive_field, self.kernel_size)

  @property
  def span(self) -> int:
    """The whole network's receptive field in steps (stages chained)."""
    return self.stages * (span(self.layer_dilations, self.kernel_size) - 1) + 1

  @nn.compact
  def __call__(
    self, x: jax.Array, mask: jax.Array | None = None, train: bool = False
  ) -> dict:
    batch, length, _ = x.shape
    if mask is None:
      mask = jnp.ones((batch, length), x.dtype)
    lengths = jnp.sum(mask > 0, axis=1).astype(jnp.int32)
    step_mask = c2f_tcn.length_mask(lengths, length, x.dtype)
    keep = step_mask[..., None]
    owners = head_stages(self.stages)
    heads = []
    for stage in range(self.stages):
      prefix = f"s{stage}_" if stage else ""
      if stage:  # the previous stage's last head, as probabilities
        x = nn.Dense(self.features, name=f"{prefix}project")(
          jax.nn.softmax(heads[-1])
        )
      else:
        x = nn.Dense(self.features, name="project")(x)
        x = c2f_tcn.BatchNorm(self.bn_unbiased_var, name="bn")(
          x, step_mask, train
        )
        x = nn.relu(x)
      x = x * keep
      for i, dilation in enumerate(self.layer_dilations):
        h = CausalConv(
          self.features, self.kernel_size, dilation, name=f"{prefix}c{i}"
        )(x)
        h = nn.Dense(self.features, name=f"{prefix}mix{i}")(nn.relu(h))
        x = (x + h) * keep
      features = nn.relu(x)
      heads += [
        nn.Dense(self.num_classes, name=name)(features)
        for name, owner in zip(HEADS, owners)
        if owner == stage
      ]
    return {
      "logits": heads[-1],
      "head_logits": tuple(heads[:-1]),
      "head_masks": (step_mask,) * len(c2f_tcn.HEAD_NAMES),
      "features": features,
      "lengths": lengths,
      HEADS_AT_INPUT_RATE: (),
    }
