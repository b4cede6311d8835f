"""Training objectives: the supervised C2F-TCN loss, distillation losses and
the unsupervised terms of the domain-adaptation baselines.

All losses take a frame mask and average over valid frames only, so padding
never changes a loss value; the one exception is the published recipe's
smoothing average (`SMOOTH_AVERAGES`), which divides by every step of the
window, padded ones included, as the reference code does.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import optax

from exo2ego_jax.data.constants import IGNORE_LABEL

LOG_EPS = 1e-10
SMOOTH_CLAMP = 16.0
# How the smoothing term is averaged: over valid neighbour pairs (ours), or
# as the published code does ("reference": the clamped squared differences of
# the steps t >= 1 whose frame is valid and not ignored are summed and divided
# by every (window, step t >= 1, class) element, padding included).
SMOOTH_AVERAGES = ("valid_pairs", "reference")


def _masked_mean(values: jax.Array, weights: jax.Array) -> jax.Array:
  return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), 1.0)


def cross_entropy(
  probs: jax.Array, labels: jax.Array, mask: jax.Array
) -> jax.Array:
  """Mean negative log-likelihood of `labels` under `probs` (B, T, C).

  Frames labelled IGNORE_LABEL or outside the mask do not count.
  """
  valid = (labels != IGNORE_LABEL) & (mask > 0)
  log_probs = jnp.log(probs + LOG_EPS)
  safe_labels = jnp.where(valid, labels, 0)
  nll = -jnp.take_along_axis(log_probs, safe_labels[..., None], axis=-1)[..., 0]
  return _masked_mean(nll, valid.astype(nll.dtype))


def smoothing(probs: jax.Array, mask: jax.Array) -> jax.Array:
  """Truncated temporal smoothing: mean over valid neighbour pairs (and
  classes) of clamp((log p_t - stopgrad(log p_{t-1}))^2, 0, 16)."""
  log_probs = jnp.log(probs + LOG_EPS)
  diff = log_probs[:, 1:] - jax.lax.stop_gradient(log_probs[:, :-1])
  per_pair = jnp.mean(jnp.clip(diff**2, 0.0, SMOOTH_CLAMP), axis=-1)
  pair_valid = ((mask[:, 1:] > 0) & (mask[:, :-1] > 0)).astype(per_pair.dtype)
  return _masked_mean(per_pair, pair_valid)


def reference_smoothing(
  probs: jax.Array, labels: jax.Array, mask: jax.Array
) -> jax.Array:
  """The published code's smoothing term: clamp((log p_t - stopgrad(log
  p_{t-1}))^2, 0, 16) weighted by whether step t is valid and not labelled
  IGNORE_LABEL, averaged over all B * (T - 1) * C elements."""
  log_probs = jnp.log(probs + LOG_EPS)
  diff = log_probs[:, 1:] - jax.lax.stop_gradient(log_probs[:, :-1])
  clamped = jnp.clip(diff**2, 0.0, SMOOTH_CLAMP)
  valid = ((mask > 0) & (labels != IGNORE_LABEL))[:, 1:, None]
  return jnp.mean(clamped * valid.astype(clamped.dtype))


def supervised_loss(
  probs: jax.Array,
  labels: jax.Array,
  mask: jax.Array,
  smooth_weight: float = 0.17,
  smooth_average: str = "valid_pairs",
) -> tuple[jax.Array, dict]:
  """C2F-TCN loss on the ensemble probabilities: CE + 0.17 * smoothing,
  the smoothing averaged as `smooth_average` (SMOOTH_AVERAGES) says."""
  ce = cross_entropy(probs, labels, mask)
  if smooth_average == "reference":
    smooth = reference_smoothing(probs, labels, mask)
  else:
    smooth = smoothing(probs, mask)
  return ce + smooth_weight * smooth, {"ce": ce, "smooth": smooth}


def masked_mse(
  prediction: jax.Array, target: jax.Array, mask: jax.Array
) -> jax.Array:
  """Mean squared error over valid frames and channels of (B, T, C) arrays."""
  per_frame = jnp.mean((prediction - target) ** 2, axis=-1)
  return _masked_mean(per_frame, mask.astype(per_frame.dtype))


def head_distillation(
  student_heads: Sequence[jax.Array],
  teacher_heads: Sequence[jax.Array],
  head_masks: Sequence[jax.Array],
  weights: Sequence[float],
) -> jax.Array:
  """Weighted sum over heads of the MSE between student and teacher logits.

  Heads are compared at their own temporal resolution with their own masks.
  """
  terms = [
    w * masked_mse(s, jax.lax.stop_gradient(t), m)
    for s, t, m, w in zip(student_heads, teacher_heads, head_masks, weights)
  ]
  return sum(terms)


def domain_cross_entropy(
  logits: jax.Array, is_target: jax.Array, mask: jax.Array
) -> jax.Array:
  """Binary cross-entropy of domain logits (target = 1) over valid entries."""
  is_target = jnp.broadcast_to(is_target, logits.shape).astype(logits.dtype)
  nll = optax.sigmoid_binary_cross_entropy(logits, is_target)
  return _masked_mean(nll, mask.astype(nll.dtype))


def entropy(probs: jax.Array, mask: jax.Array) -> jax.Array:
  """Mean Shannon entropy (nats) of (B, T, C) class probabilities over valid
  frames: minimised on unlabeled target frames, it pushes decision
  boundaries away from them (Grandvalet & Bengio, NeurIPS 2005)."""
  per_frame = -jnp.sum(probs * jnp.log(probs + LOG_EPS), axis=-1)
  return _masked_mean(per_frame, mask.astype(per_frame.dtype))


def marginal_entropy(probs: jax.Array, mask: jax.Array) -> jax.Array:
  """Entropy of the mean class distribution over valid frames: maximised
  beside `entropy`, it keeps target predictions from collapsing onto one
  class (the diversity term of information maximisation, as in SHOT, Liang
  et al., ICML 2020)."""
  weights = mask.astype(probs.dtype)[..., None]
  mean = jnp.sum(probs * weights, axis=(0, 1)) / jnp.maximum(
    jnp.sum(weights), 1.0
  )
  return -jnp.sum(mean * jnp.log(mean + LOG_EPS))
