"""The synthetic study with the baselines that show what synchronization buys.

  python -m exo2ego_jax.benchmark --config configs/synthetic_benchmark_baselines.py

The five methods of configs/synthetic_benchmark.py (same workdir root, so
their finished runs are reused) plus four baselines: adversarial domain
adaptation and entropy minimisation (labeled exo + unlabeled ego drawn
independently: no synchronization), DTW-aligned teacher pseudo-labels
(timestamps not trusted) and synchronized teacher pseudo-labels (the simplest
use of synchronization), and distill_kl (Hinton's softened-KL distillation,
the worked example of docs/methods.md). Tables and figure go to
workdirs/synthetic_benchmark/baselines/. About 22 minutes for the three
seeds on 2 CPU cores on top of the main study (12 new runs), plus 3 runs of
distill_kl.
Expected (mean of seeds 0-2, ego test F1@25 / Edit): uda_adversarial and
uda_entropy about 5.3 / 11 (exo-only 5.3 / 10.9: no synchronization, no
transfer), align_pseudo_label 47.1 / 39.8, sync_pseudo_label 48.1 / 40.8
(distill_model 49.3 / 43.5).
"""

from configs import synthetic_benchmark


def get_config():
  config = synthetic_benchmark.get_config()
  config.results_dir = "workdirs/synthetic_benchmark/baselines"
  config.methods = tuple(config.methods) + (
    "uda_adversarial",
    "uda_entropy",
    "align_pseudo_label",
    "sync_pseudo_label",
    "distill_kl",
  )
  config.method_configs.update(
    {
      "uda_adversarial": "configs/synthetic_uda_adversarial.py",
      "uda_entropy": "configs/synthetic_uda_entropy.py",
      "align_pseudo_label": "configs/synthetic_align_pseudo_label.py",
      "sync_pseudo_label": "configs/synthetic_sync_pseudo_label.py",
      "distill_kl": "configs/synthetic_distill_kl.py",
    }
  )
  return config
