"""Hinton-style KL distillation on the synthetic benchmark (mode distill_kl).

As configs/synthetic_distill_model.py, but the student matches the teacher's
temperature-softened class distributions (KL times T^2) instead of its
logits. Its own settings are the section config.distill_kl. No label is read.

  python -m exo2ego_jax.train --config configs/synthetic_distill_kl.py \
      --workdir workdirs/synthetic_distill_kl \
      --config.teacher_workdir=workdirs/synthetic_exo
"""

import ml_collections

from configs import synthetic_distill_model


def get_config():
  config = synthetic_distill_model.get_config()
  config.mode = "distill_kl"
  config.distill_kl = ml_collections.ConfigDict()
  config.distill_kl.temperature = 2.0  # softmax(logits / temperature)
  # Heads compared (C2F-TCN y1..y5, y), one weight each.
  config.distill_kl.heads = ("y5", "y4", "y3", "y2")
  config.distill_kl.weights = (1.0, 1.0, 1.0, 1.0)
  return config
