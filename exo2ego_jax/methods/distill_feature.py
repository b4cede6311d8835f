"""distill_feature: a feature adapter learns to map ego features onto the
synchronized exo features (MSE); the frozen exo teacher then predicts on
adapted ego features. What trains is the adapter (params), not the
C2F-TCN."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from exo2ego_jax.methods import distillation
from exo2ego_jax.methods import registry
from exo2ego_jax.models import adapters
from exo2ego_jax.training import losses


@registry.register("distill_feature")
class DistillFeature(distillation.Distillation):
  """Ego -> exo feature regression; predicts with teacher(adapter(ego))."""

  trains_adapter = True

  @classmethod
  def settings(cls, config: ml_collections.ConfigDict, info) -> dict:
    return dict(
      super().settings(config, info),
      adapter=adapters.make_adapter(**config.adapter.to_dict()),
    )

  def init_params(
    self, rng: jax.Array, frozen: dict, feature_dim: int
  ) -> tuple[dict, dict]:
    del frozen
    x = jnp.zeros((1, 8, feature_dim))
    mask = jnp.ones((1, 8))
    return self.adapter.init(rng, x, mask)["params"], {}

  def model_variables(self, state: dict) -> dict:
    return state["frozen"]["teacher"]

  def adapt(
    self, state: dict, features: jax.Array, mask: jax.Array
  ) -> jax.Array:
    return self.adapter.apply({"params": state["params"]}, features, mask)

  def loss(
    self, params: dict, state: dict, batch: dict
  ) -> tuple[jax.Array, tuple[dict, dict]]:
    mask = batch["mask"]
    adapted = self.adapter.apply(
      {"params": params}, batch[self.train_view], mask
    )
    loss = losses.masked_mse(adapted, batch["exo"], mask)
    return loss, (state["batch_stats"], {"feature_mse": loss})
