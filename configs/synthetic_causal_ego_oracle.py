"""Causal (live) model trained on ego labels: the upper row of the causal
study, the best a causal ego model of this size gets.

  python -m exo2ego_jax.train --config configs/synthetic_causal_ego_oracle.py \
      --workdir workdirs/synthetic_causal_ego_oracle
"""

from configs import synthetic_causal_exo
from configs import synthetic_ego_oracle


def get_config():
  return synthetic_causal_exo.causal_model(synthetic_ego_oracle.get_config())
