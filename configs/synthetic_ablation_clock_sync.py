"""The clock sweep with self-synchronization (two rounds, as in
configs/synthetic_ablation_jitter_sync.py).

  python -m exo2ego_jax.benchmark \
      --config configs/synthetic_ablation_clock_sync.py

Writes workdirs/synthetic_benchmark/ablation_clock_sync/{results.md,
results.json,sweep.png}.
"""

from configs import synthetic_ablation_clock


def get_config():
  config = synthetic_ablation_clock.get_config()
  config.results_dir = "workdirs/synthetic_benchmark/ablation_clock_sync"
  config.sweep.fixed.sync = {"estimate": True, "rounds": 2}
  config.sweep.label = "clock error, clocks estimated"
  return config
