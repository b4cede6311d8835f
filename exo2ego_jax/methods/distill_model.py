"""distill_model: the ego student learns to reproduce the exo teacher's
head logits on synchronized frames (the paper's model distillation)."""

from exo2ego_jax.methods import distillation
from exo2ego_jax.methods import registry


@registry.register("distill_model")
class DistillModel(distillation.Distillation):
  """Head distillation on the raw ego features."""
