"""Synchronized pseudo-labels by the views' vote (docs/multiview.md): each
ego step of the `sync_pairs` recordings gets the majority of the multi-view
teacher's hard predictions on the exo views present there (steps no view
sees: no label). Then as configs/synthetic_sync_pseudo_label.py.

  python -m exo2ego_jax.train \
      --config configs/synthetic_sync_pseudo_label_vote.py \
      --workdir workdirs/synthetic_sync_pseudo_label_vote \
      --config.teacher_workdir=workdirs/synthetic_exo_multiview
"""

import ml_collections

from configs import synthetic_sync_pseudo_label


def get_config():
  config = synthetic_sync_pseudo_label.get_config()
  config.dataset.name = "synthetic_sync/multiview"
  config.teacher_workdir = "workdirs/synthetic_exo_multiview"
  config.multiview = ml_collections.ConfigDict()
  config.multiview.num_views = ml_collections.config_dict.placeholder(int)
  config.multiview.combine = "vote"
  return config
