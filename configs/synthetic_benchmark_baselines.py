"""The synthetic study with the baselines that show what synchronization buys.

  python -m exo2ego_jax.benchmark --config configs/synthetic_benchmark_baselines.py

The five methods of configs/synthetic_benchmark.py (same workdir root, so
their finished runs are reused) plus four baselines: adversarial domain
adaptation and entropy minimisation (labeled exo + unlabeled ego drawn
independently: no synchronization), DTW-aligned teacher pseudo-labels
(timestamps not trusted) and synchronized teacher pseudo-labels (the simplest
use of synchronization), and distill_kl (Hinton's softened-KL distillation,
the worked example of docs/methods.md). Tables and figure go to
workdirs/synthetic_benchmark/baselines/ (<workdir>/baselines with --workdir).
About 16 minutes for the 15 new runs (three seeds) on 2 CPU cores on top of
the main study (15 min 48 s measured on an idle 2-vCPU Intel Xeon VM).
Expected (mean of seeds 0-2, ego test F1@25 / Edit; docs/results.md):
uda_adversarial 3.2 / 8.5 and uda_entropy 5.4 / 12.2 (exo-only 5.1 / 11.1:
no synchronization, no transfer), align_pseudo_label 48.6 / 41.7,
sync_pseudo_label 48.7 / 42.3, distill_kl 49.7 / 43.7 (distill_model
49.3 / 43.3).
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
