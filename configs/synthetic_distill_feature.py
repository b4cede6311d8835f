"""Feature distillation on the synthetic benchmark (mode distill_feature).

A windowed temporal-attention adapter learns to map ego feature sequences to
the synchronized exo sequences (MSE, residual); at test time ego features go
through the adapter into the frozen exo teacher. No label is read.

  python -m exo2ego_jax.train --config configs/synthetic_distill_feature.py \
      --workdir workdirs/synthetic_distill_feature \
      --config.teacher_workdir=workdirs/synthetic_exo

`--config.adapter.kind=mlp` swaps in the cheaper per-frame MLP adapter.
About 1 minute on 2 CPU cores. Expected (seed 0): ego test F1@25 about 30-35.
"""

from configs import synthetic_exo


def get_config():
  config = synthetic_exo.get_config()
  config.mode = "distill_feature"
  config.data.train_split = "sync_pairs"
  config.data.view = "ego"
  config.data.eval_view = "ego"
  config.teacher_workdir = "workdirs/synthetic_exo"
  config.adapter.kind = "attention"
  return config
