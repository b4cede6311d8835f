"""Synchronized pseudo-label baseline (mode sync_pseudo_label): the simplest
use of synchronization, an ablation beside model distillation.

Each ego frame of the `sync_pairs` recordings gets the frozen teacher's hard
prediction on the exo frame of the same instant (computed once, saved in
<workdir>/pseudo_labels.npz); an ego model initialised from the teacher is
trained on them with the supervised loss. No label of the pairs is read.

  python -m exo2ego_jax.train --config configs/synthetic_sync_pseudo_label.py \
      --workdir workdirs/synthetic_sync_pseudo_label \
      --config.teacher_workdir=workdirs/synthetic_exo

About 2-3 minutes on 2 busy CPU cores after the teacher. Expected (seed 0),
ego test: F1@25 about 45, Edit about 38.5, MoF about 64 (distill_model: about
46 / 41.5 / 66; the teacher's hard labels agree with the ego labels on about
81% of the frames).
"""

from configs import synthetic_distill_model


def get_config():
  config = synthetic_distill_model.get_config()
  config.mode = "sync_pseudo_label"
  config.data.label_key = "pseudo_labels"
  return config
