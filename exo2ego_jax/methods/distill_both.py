"""distill_both: model distillation on ego features first mapped towards the
exo feature space by the frozen adapter of a distill_feature run
(config.adapter_workdir)."""

from __future__ import annotations

import jax
import ml_collections

from exo2ego_jax.methods import distillation
from exo2ego_jax.methods import registry
from exo2ego_jax.models import adapters


@registry.register("distill_both")
class DistillBoth(distillation.Distillation):
  """Head distillation through a trained, frozen feature adapter."""

  loads_adapter = True

  @classmethod
  def settings(cls, config: ml_collections.ConfigDict, info) -> dict:
    return dict(
      super().settings(config, info),
      adapter=adapters.make_adapter(**config.adapter.to_dict()),
    )

  def adapt(
    self, state: dict, features: jax.Array, mask: jax.Array
  ) -> jax.Array:
    return self.adapter.apply(
      {"params": state["frozen"]["adapter"]}, features, mask
    )
