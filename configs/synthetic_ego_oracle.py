"""Ego oracle (upper bound) on the synthetic benchmark: C2F-TCN trained with
EGO labels of the synchronized-pairs recordings (mode ego_oracle).

  python -m exo2ego_jax.train --config configs/synthetic_ego_oracle.py \
      --workdir workdirs/synthetic_ego_oracle

About 1 minute on 2 CPU cores. Expected (seed 0): ego test F1@25 about 50-55,
Edit about 45. The method never has these labels; this run only tells how far
an ego model could go.
"""

from configs import synthetic_exo


def get_config():
  config = synthetic_exo.get_config()
  config.mode = "ego_oracle"
  config.data.train_split = "sync_pairs"
  config.data.view = "ego"
  config.data.label_key = "ego_labels"
  config.data.eval_view = "ego"
  return config
