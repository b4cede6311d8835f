"""Multi-view model distillation (mode distill_multiview, docs/multiview.md).

The ego student matches, on heads y5..y2, the mean of the frozen multi-view
teacher's logits over the exo views present at each step of the
`sync_pairs` recordings; steps no view sees are not trained on. No label is
read.

  python -m exo2ego_jax.train --config configs/synthetic_distill_multiview.py \
      --workdir workdirs/synthetic_distill_multiview \
      --config.teacher_workdir=workdirs/synthetic_exo_multiview
"""

import ml_collections

from configs import synthetic_distill_model


def get_config():
  config = synthetic_distill_model.get_config()
  config.mode = "distill_multiview"
  config.dataset.name = "synthetic_sync/multiview"
  config.teacher_workdir = "workdirs/synthetic_exo_multiview"
  config.multiview = ml_collections.ConfigDict()
  # The first num_views exo views of the dataset (None: every view).
  config.multiview.num_views = ml_collections.config_dict.placeholder(int)
  # View k alone (None: the num_views above), e.g. the published method on
  # view k with the multi-view teacher.
  config.multiview.view = ml_collections.config_dict.placeholder(int)
  # One teacher workdir per view used, in view order (None: the teacher of
  # config.teacher_workdir on every view); the first must be
  # config.teacher_workdir (configs/synthetic_distill_multiview_per_view.py).
  config.multiview.teachers = ml_collections.config_dict.placeholder(tuple)
  # "mean" of the present views' logits, or "confidence": weighted by each
  # view's 1 - entropy / log(classes) per step.
  config.multiview.combine = "mean"
  return config
