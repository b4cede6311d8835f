"""A causal (live) ego student distilled from the offline exo teacher.

The frozen C2F-TCN exo teacher (full context, its own model config from its
run) sees the exo frames of the synchronized pairs; the causal student,
freshly initialised, sees only the past of the ego frames and matches the
teacher's heads y5, y4, y3, y2, upsampled to every step (MSE). No label is
read.

  python -m exo2ego_jax.train \
      --config configs/synthetic_causal_distill_model.py \
      --workdir workdirs/synthetic_causal_distill_model \
      --config.teacher_workdir=workdirs/synthetic_exo
"""

from configs import synthetic_causal_exo
from configs import synthetic_distill_model


def get_config():
  return synthetic_causal_exo.causal_model(synthetic_distill_model.get_config())
