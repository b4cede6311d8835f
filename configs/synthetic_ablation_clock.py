"""The clock sweep: distill_model on synchronized pairs recorded by rigs
whose clocks disagree, trusting the recorded timestamps.

  python -m exo2ego_jax.benchmark --config configs/synthetic_ablation_clock.py

For seeds 0, 1, 2: the exo teacher and the ego oracle (the reference lines;
their runs of configs/synthetic_benchmark.py are reused), then distill_model
trained on the sync_pairs of each clock config of the synthetic builder
(train, validation and test are the default world's): `clock_offset` (ego
clocks start up to 300 frames, 10 s at 30 fps, off), `clock_rate` (plus a
rate error of up to 0.3%) and `clock_drops` (plus 3 runs of up to 8
dropped ego frames). configs/synthetic_ablation_clock_sync.py is the same
sweep with the clocks estimated; `--config.sweep.method=align_pseudo_label
--config.results_dir=workdirs/synthetic_benchmark/ablation_clock_align`
sweeps the DTW baseline. Writes
workdirs/synthetic_benchmark/ablation_clock/{results.md,results.json,
sweep.png}. Builds each clock dataset (about a minute each) if missing.
"""

import ml_collections

from configs import synthetic_benchmark

CLOCK_DATASETS = (
  "synthetic_sync/clock_offset",
  "synthetic_sync/clock_rate",
  "synthetic_sync/clock_drops",
)


def get_config():
  config = synthetic_benchmark.get_config()
  config.results_dir = "workdirs/synthetic_benchmark/ablation_clock"
  config.methods = ("exo_only", "ego_oracle")  # the reference lines
  # The DTW baseline, which ignores timestamps, swept the same way with
  # --config.sweep.method=align_pseudo_label.
  config.method_configs.align_pseudo_label = (
    "configs/synthetic_align_pseudo_label.py"
  )
  config.sweep = ml_collections.ConfigDict()
  config.sweep.method = "distill_model"
  config.sweep.key = "dataset.name"
  config.sweep.grid = CLOCK_DATASETS
  config.sweep.fixed = ml_collections.ConfigDict()
  config.sweep.label = "clock error (synthetic_sync config of sync_pairs)"
  config.sweep.metrics = ("f1@25", "edit")
  config.sweep.references = ("exo_only", "ego_oracle")
  return config
