"""Multi-view exo teacher (mode exo_multiview, docs/multiview.md).

One C2F-TCN trained on the labelled exo recordings of all four views of
`synthetic_sync/multiview` (each recording-view pair a recording; frames a
view misses are not trained on), for as many passes over each view as the
single-view teacher makes over its one (configs/synthetic_exo.py: 20
epochs): 20 epochs of 4 x 60 recordings, 600 steps. With the single
teacher's 150 steps (5 epochs), the first setting, it learnt the 4
renderings badly (validation F1@25 37 on view 0 against 59 at 600 steps,
seed 0) and its students trailed the one-view student (docs/multiview.md).

  python -m exo2ego_jax.train --config configs/synthetic_exo_multiview.py \
      --workdir workdirs/synthetic_exo_multiview
"""

import ml_collections

from configs import synthetic_exo


def get_config():
  config = synthetic_exo.get_config()
  config.mode = "exo_multiview"
  config.dataset.name = "synthetic_sync/multiview"
  config.num_epochs = 20
  config.eval_every_epochs = 1
  config.multiview = ml_collections.ConfigDict()
  # The first num_views exo views of the dataset (None: every view).
  config.multiview.num_views = ml_collections.config_dict.placeholder(int)
  # View k alone (None: the num_views above): one teacher per view
  # (configs/synthetic_exo_view.py).
  config.multiview.view = ml_collections.config_dict.placeholder(int)
  return config
