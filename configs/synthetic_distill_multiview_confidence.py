"""Multi-view distillation, confidence-weighted (docs/multiview.md): each
view's teacher logits weigh 1 - H(p) / log C at each step (H: the entropy
of its ensemble prediction), so an unsure view counts less.

  python -m exo2ego_jax.train \
      --config configs/synthetic_distill_multiview_confidence.py \
      --workdir workdirs/synthetic_distill_multiview_confidence \
      --config.teacher_workdir=workdirs/synthetic_exo_multiview
"""

from configs import synthetic_distill_multiview


def get_config():
  config = synthetic_distill_multiview.get_config()
  config.multiview.combine = "confidence"
  return config
