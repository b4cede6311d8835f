"""Adversarial domain adaptation baseline (mode uda_adversarial): no
synchronization used.

C2F-TCN from random init, trained with the supervised loss on the labeled exo
`train` split, plus unlabeled ego windows of the `sync_pairs` recordings drawn
independently of the exo windows (their own shuffle: the synchronization is
ignored, no ego label is read). A frame-level domain classifier on the decoder
features sits behind a gradient-reversal layer whose weight ramps as
2 / (1 + exp(-10 p)) - 1 (SSTDA's local adversarial branch, Chen et al.,
CVPR 2020). Exo and ego windows share one batch, so BatchNorm sees both.

  python -m exo2ego_jax.train --config configs/synthetic_uda_adversarial.py \
      --workdir workdirs/synthetic_uda_adversarial

`--config.uda.sequence_weight=1.0` adds a sequence-level classifier (on the
masked mean of each window's features). About 4 minutes on 2 busy CPU cores
(each step runs 8 exo and 8 ego windows). Expected (seed 0), ego test:
F1@25 about 6, Edit about 11, MoF 25-30: barely above exo-only (F1@25 about
5, Edit about 10). Matching the feature distributions does not tell the model
which ego frame is which action; frame_weight 0.1 gives the same.
"""

from configs import synthetic_exo


def get_config():
  config = synthetic_exo.get_config()
  config.mode = "uda_adversarial"
  config.data.train_split = "train"
  config.data.view = "exo"
  config.data.label_key = "labels"
  config.data.eval_view = "ego"
  config.uda.target_split = "sync_pairs"
  config.uda.target_view = "ego"
  config.uda.frame_weight = 1.0
  config.uda.sequence_weight = 0.0
  return config
