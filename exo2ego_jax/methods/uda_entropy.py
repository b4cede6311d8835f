"""uda_entropy: entropy minimisation of the target predictions with a
diversity term against collapse (config.uda.entropy_weight,
diversity_weight)."""

from __future__ import annotations

import ml_collections

from exo2ego_jax.methods import registry
from exo2ego_jax.methods import uda


@registry.register("uda_entropy")
class UdaEntropy(uda.DomainAdaptation):
  """Entropy-based domain adaptation."""

  @classmethod
  def settings(cls, config: ml_collections.ConfigDict, info) -> dict:
    return dict(
      super().settings(config, info),
      entropy_weight=config.uda.entropy_weight,
      diversity_weight=config.uda.diversity_weight,
    )
