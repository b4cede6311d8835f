"""One exo view's own teacher (mode exo_multiview with multiview.view = k,
docs/multiview.md): the single-view teacher (configs/synthetic_exo.py: 20
epochs, 150 steps) trained, validated and tested on exo view k of
`synthetic_sync/multiview` alone (frames the view misses are not trained
on). One per view are the per-view teachers of
configs/synthetic_distill_multiview_per_view.py; view 0's is
configs/synthetic_exo.py on that dataset.

  python -m exo2ego_jax.train --config configs/synthetic_exo_view.py \
      --workdir workdirs/synthetic_exo_view1 --config.multiview.view=1
"""

import ml_collections

from configs import synthetic_exo


def get_config():
  config = synthetic_exo.get_config()
  config.mode = "exo_multiview"
  config.dataset.name = "synthetic_sync/multiview"
  config.multiview = ml_collections.ConfigDict()
  config.multiview.num_views = ml_collections.config_dict.placeholder(int)
  config.multiview.view = 1  # the exo view this teacher learns
  return config
