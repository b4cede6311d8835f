"""Entropy-minimisation domain adaptation baseline (mode uda_entropy): no
synchronization used.

As uda_adversarial (labeled exo `train` windows, unlabeled ego `sync_pairs`
windows drawn independently, one shared batch), but the unsupervised term is
the mean entropy of the model's ego frame predictions (Grandvalet & Bengio,
"Semi-supervised learning by entropy minimization", NeurIPS 2005; the target
entropy term of domain adaptation, e.g. Vu et al., ADVENT, CVPR 2019), its
weight ramped as 2 / (1 + exp(-10 p)) - 1, minus the entropy of the mean ego
prediction (the diversity term of SHOT, Liang et al., ICML 2020) so that the
predictions do not collapse onto one class.

  python -m exo2ego_jax.train --config configs/synthetic_uda_entropy.py \
      --workdir workdirs/synthetic_uda_entropy

About 4 minutes on 2 busy CPU cores. Expected (seed 0), ego test: F1@25
about 5, Edit about 12, MoF below 10 (no better than exo-only: the exo model's
ego predictions are mostly wrong, and sharpening them locks the errors in).
A weight of 0.1 or more drives ego MoF down to about 5 and F1 to 0-2 (weight
1 without the diversity term: every ego frame background).
"""

from configs import synthetic_uda_adversarial


def get_config():
  config = synthetic_uda_adversarial.get_config()
  config.mode = "uda_entropy"
  config.uda.entropy_weight = 0.01
  config.uda.diversity_weight = 1.0
  return config
