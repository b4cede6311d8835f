"""Multi-view distillation from one teacher per view (docs/multiview.md):
teacher k (configs/synthetic_exo_view.py with multiview.view = k; view 0's
is configs/synthetic_exo.py) runs on exo view k, and the ego student
matches the mean of their logits over the views present at each step. It
starts from view 0's teacher (config.teacher_workdir, which must be the
first of config.multiview.teachers).

  python -m exo2ego_jax.train \
      --config configs/synthetic_distill_multiview_per_view.py \
      --workdir workdirs/synthetic_distill_multiview_per_view \
      --config.teacher_workdir=workdirs/synthetic_exo \
      --config.multiview.teachers="('workdirs/synthetic_exo', \
'workdirs/synthetic_exo_view1', 'workdirs/synthetic_exo_view2', \
'workdirs/synthetic_exo_view3')"
"""

from configs import synthetic_distill_multiview


def get_config():
  config = synthetic_distill_multiview.get_config()
  config.teacher_workdir = "workdirs/synthetic_exo"
  config.multiview.teachers = (
    "workdirs/synthetic_exo",
    "workdirs/synthetic_exo_view1",
    "workdirs/synthetic_exo_view2",
    "workdirs/synthetic_exo_view3",
  )
  return config
