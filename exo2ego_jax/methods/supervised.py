"""Supervised C2F-TCN on one view's labels: the exo teacher
(exo_supervised) and the ego upper bound (ego_oracle). The two are the same
function; only the config's view and label field differ."""

from __future__ import annotations

import jax

from exo2ego_jax.methods import base
from exo2ego_jax.methods import registry
from exo2ego_jax.training import losses


class Supervised(base.Method):
  """Cross-entropy plus temporal smoothing on the ensemble probabilities."""

  is_teacher = True

  def loss(
    self, params: dict, state: dict, batch: dict
  ) -> tuple[jax.Array, tuple[dict, dict]]:
    mask = batch["mask"]
    outputs, updates, probs = self.train_forward(params, state, batch)
    loss, logs = losses.supervised_loss(
      probs, batch["labels"], mask, self.smooth_weight, self.smooth_average
    )
    return loss, (updates["batch_stats"], logs)


@registry.register("exo_supervised")
class ExoSupervised(Supervised):
  """The exo teacher: exo features, exo labels."""


@registry.register("ego_oracle")
class EgoOracle(Supervised):
  """The upper bound: ego features, ego labels."""
