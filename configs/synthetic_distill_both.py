"""Feature + model distillation on the synthetic benchmark (distill_both).

Ego features first go through the adapter of a distill_feature run (frozen),
then a student initialised from the teacher is distilled on them as in
distill_model. No label is read.

  python -m exo2ego_jax.train --config configs/synthetic_distill_both.py \
      --workdir workdirs/synthetic_distill_both \
      --config.teacher_workdir=workdirs/synthetic_exo \
      --config.adapter_workdir=workdirs/synthetic_distill_feature

About 1 minute on 2 CPU cores. Expected (seed 0): ego test F1@25 about 45-50.
"""

from configs import synthetic_distill_model


def get_config():
  config = synthetic_distill_model.get_config()
  config.mode = "distill_both"
  config.adapter_workdir = "workdirs/synthetic_distill_feature"
  return config
