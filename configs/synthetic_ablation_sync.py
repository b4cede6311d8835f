"""How much synchronized data does distillation need? A sweep of the share
of synchronized pairs that distill_model trains on.

  python -m exo2ego_jax.benchmark --config configs/synthetic_ablation_sync.py

For seeds 0, 1, 2: the exo teacher and the ego oracle (the reference lines;
their runs of configs/synthetic_benchmark.py are reused), then distill_model
on 15%, 25%, 50% and 100% of the 60 synchronized-pairs recordings (a fixed
random subset per share, smaller subsets inside larger ones; every run takes
the same number of steps, so a smaller share is seen more often). The 100%
point is the main study's distill_model run. Writes
workdirs/synthetic_benchmark/ablation_sync/{results.md,results.json,sweep.png}.
About 9 minutes on 2 CPU cores after the main study (9 new runs).
"""

import ml_collections

from configs import synthetic_benchmark


def get_config():
  config = synthetic_benchmark.get_config()
  config.results_dir = "workdirs/synthetic_benchmark/ablation_sync"
  config.methods = ("exo_only", "ego_oracle")  # the reference lines
  config.sweep = ml_collections.ConfigDict()
  config.sweep.method = "distill_model"  # the method whose runs are swept
  config.sweep.key = "data.train_fraction"  # the config field swept
  # 0.15 of 60 is 9 recordings, the fewest a batch of 8 can be drawn from.
  config.sweep.grid = (0.15, 0.25, 0.5, 1.0)
  config.sweep.fixed = ml_collections.ConfigDict()  # also set on every point
  # x-axis label of sweep.png.
  config.sweep.label = "share of the synchronized pairs used"
  config.sweep.metrics = ("f1@25", "edit")  # panels of sweep.png
  # Rows drawn as horizontal lines in sweep.png.
  config.sweep.references = ("exo_only", "ego_oracle")
  return config
