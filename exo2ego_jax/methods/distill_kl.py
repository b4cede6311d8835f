"""distill_kl: Hinton-style distillation. The ego student matches the exo
teacher's temperature-softened class distributions on synchronized frames:
KL(softmax(t / T) || softmax(s / T)) * T^2 per frame, averaged over the
valid frames of each configured head, heads weighted. The T^2 keeps the
gradient's scale independent of the temperature.

Settings (config.distill_kl, added by configs/synthetic_distill_kl.py; the
defaults apply when the section is absent): temperature (2.0), heads and
weights (y5, y4, y3, y2, weight 1 each, as distill_model). The student starts
from the teacher; no label is read.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections

from exo2ego_jax.methods import distillation
from exo2ego_jax.methods import registry

DEFAULTS = {
  "temperature": 2.0,
  "heads": ("y5", "y4", "y3", "y2"),
  "weights": (1.0, 1.0, 1.0, 1.0),
}


def softened_kl(
  student: jax.Array, teacher: jax.Array, mask: jax.Array, temperature: float
) -> jax.Array:
  """T^2 * KL(teacher || student) of softened (B, T, C) logits, averaged
  over the valid frames of `mask` (B, T)."""
  log_student = jax.nn.log_softmax(student / temperature, axis=-1)
  log_teacher = jax.nn.log_softmax(teacher / temperature, axis=-1)
  per_frame = jnp.sum(
    jnp.exp(log_teacher) * (log_teacher - log_student), axis=-1
  )
  mask = mask.astype(per_frame.dtype)
  mean = jnp.sum(per_frame * mask) / jnp.maximum(jnp.sum(mask), 1.0)
  return temperature**2 * mean


@registry.register("distill_kl")
@dataclasses.dataclass(frozen=True, kw_only=True)
class DistillKL(distillation.Distillation):
  """Head distillation with the softened KL instead of the logit MSE."""

  temperature: float = DEFAULTS["temperature"]

  @classmethod
  def section(cls, config: ml_collections.ConfigDict) -> dict:
    """config.distill_kl over the defaults."""
    own = config.get("distill_kl")
    return dict(DEFAULTS, **(own.to_dict() if own is not None else {}))

  @classmethod
  def check_config(cls, config: ml_collections.ConfigDict, info) -> None:
    settings = cls.section(config)
    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
      raise ValueError(
        f"config.distill_kl.{unknown[0]} is unknown: use {', '.join(DEFAULTS)}"
      )
    distillation.check_heads(
      settings["heads"], settings["weights"], "distill_kl."
    )
    if not settings["temperature"] > 0:
      raise ValueError(
        f"config.distill_kl.temperature="
        f"{settings['temperature']} must be positive"
      )
    super().check_config(config, info)

  @classmethod
  def settings(cls, config: ml_collections.ConfigDict, info) -> dict:
    own = cls.section(config)
    return dict(
      super().settings(config, info),
      distill_heads=tuple(own["heads"]),
      distill_weights=tuple(own["weights"]),
      temperature=float(own["temperature"]),
    )

  def head_loss(
    self, outputs: dict, teacher: dict, mask: jax.Array
  ) -> tuple[jax.Array, dict]:
    student_heads, head_masks = distillation.selected_heads(
      outputs, self.distill_heads
    )
    teacher_heads, _ = distillation.selected_heads(teacher, self.distill_heads)
    loss = sum(
      w
      * softened_kl(
        s, jax.lax.stop_gradient(t), mask if m is None else m, self.temperature
      )
      for s, t, m, w in zip(
        student_heads, teacher_heads, head_masks, self.distill_weights
      )
    )
    return loss, {"head_kl": loss}
