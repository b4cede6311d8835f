"""Model distillation on the synthetic benchmark (mode distill_model).

The frozen exo teacher sees the exo frames of the synchronized pairs, the
student (initialised from the teacher) sees the ego frames of the same
instants and matches the teacher's logits of heads y5, y4, y3, y2 (MSE). No
label is read.

  python -m exo2ego_jax.train --config configs/synthetic_distill_model.py \
      --workdir workdirs/synthetic_distill_model \
      --config.teacher_workdir=workdirs/synthetic_exo

About 1 minute on 2 CPU cores after the teacher. Expected (seed 0): ego test
F1@25 about 45-50 (exo-only: below 10; ego oracle: about 50-55).
"""

from configs import synthetic_exo


def get_config():
  config = synthetic_exo.get_config()
  config.mode = "distill_model"
  config.data.train_split = "sync_pairs"
  config.data.view = "ego"
  config.data.eval_view = "ego"
  config.teacher_workdir = "workdirs/synthetic_exo"
  config.optim.learning_rate = 5e-4
  return config
