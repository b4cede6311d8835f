"""uda_adversarial: a frame- (and optionally sequence-) level domain
classifier on the decoder features, trained through gradient reversal
(config.uda.frame_weight, sequence_weight, hidden_dim).
params = {"model": C2F-TCN params, "domain": classifier params}."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from exo2ego_jax.methods import registry
from exo2ego_jax.methods import uda
from exo2ego_jax.models import c2f_tcn
from exo2ego_jax.models import domain


@registry.register("uda_adversarial")
class UdaAdversarial(uda.DomainAdaptation):
  """Adversarial domain adaptation (DANN-style)."""

  @classmethod
  def settings(cls, config: ml_collections.ConfigDict, info) -> dict:
    return dict(
      super().settings(config, info),
      domain_classifier=domain.DomainClassifier(
        config.uda.hidden_dim, sequence_level=config.uda.sequence_weight > 0
      ),
      frame_domain_weight=config.uda.frame_weight,
      sequence_domain_weight=config.uda.sequence_weight,
    )

  def init_params(
    self, rng: jax.Array, frozen: dict, feature_dim: int
  ) -> tuple[dict, dict]:
    params, batch_stats = super().init_params(rng, frozen, feature_dim)
    mask = jnp.ones((1, 8))
    features = jnp.zeros((1, 8, c2f_tcn.DECODER_FEATURES))
    params = {
      "model": params,
      "domain": self.domain_classifier.init(
        jax.random.fold_in(rng, 1), features, mask
      )["params"],
    }
    return params, batch_stats

  def model_variables(self, state: dict) -> dict:
    return {
      "params": state["params"]["model"],
      "batch_stats": state["batch_stats"],
    }
