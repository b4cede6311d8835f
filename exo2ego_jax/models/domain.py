"""Adversarial domain adaptation pieces: gradient reversal and domain heads.

As in SSTDA's local adversarial branch (Chen et al., "Action Segmentation
with Joint Self-Supervised Temporal Domain Adaptation", CVPR 2020, after
Ganin & Lempitsky's DANN, ICML 2015): a small classifier learns to tell
source (exo) from target (ego) features, and the gradient-reversal layer
hands the feature extractor the negated gradient, so it learns features the
classifier cannot tell apart.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


@jax.custom_vjp
def gradient_reversal(x: jax.Array, scale: jax.Array) -> jax.Array:
  """Identity forward; backward multiplies the gradient by -scale."""
  del scale
  return x


def _reversal_forward(x, scale):
  return x, scale


def _reversal_backward(scale, g):
  return (jax.tree.map(lambda t: -scale * t, g), jnp.zeros_like(scale))


gradient_reversal.defvjp(_reversal_forward, _reversal_backward)


def reversal_schedule(progress: jax.Array) -> jax.Array:
  """DANN's ramp of the reversal weight: 2 / (1 + exp(-10 p)) - 1, p in
  [0, 1]: 0 at the start (the features are still random), near 1 at the end."""
  return 2.0 / (1.0 + jnp.exp(-10.0 * progress)) - 1.0


class DomainMLP(nn.Module):
  """Per-vector MLP giving the logit that a feature vector is target-domain."""

  hidden_dim: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = nn.relu(nn.Dense(self.hidden_dim, name="hidden0")(x))
    x = nn.relu(nn.Dense(self.hidden_dim, name="hidden1")(x))
    return nn.Dense(1, name="logit")(x)[..., 0]


class DomainClassifier(nn.Module):
  """Domain logits of (B, T, F) features: per frame (B, T) and, with
  `sequence_level`, of each sequence's masked mean (B,)."""

  hidden_dim: int = 64
  sequence_level: bool = False

  @nn.compact
  def __call__(self, features: jax.Array, mask: jax.Array) -> dict:
    logits = {"frame": DomainMLP(self.hidden_dim, name="frame")(features)}
    if self.sequence_level:
      weights = mask[..., None].astype(features.dtype)
      pooled = jnp.sum(features * weights, axis=1) / jnp.maximum(
        jnp.sum(weights, axis=1), 1.0
      )
      logits["sequence"] = DomainMLP(self.hidden_dim, name="sequence")(pooled)
    return logits
