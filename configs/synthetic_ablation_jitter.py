"""How exact must synchronization be? A sweep of a synchronization error put
into distill_model's training pairs.

  python -m exo2ego_jax.benchmark --config configs/synthetic_ablation_jitter.py

For seeds 0, 1, 2: the exo teacher and the ego oracle (the reference lines;
their runs of configs/synthetic_benchmark.py are reused), then distill_model
with the ego frames of each synchronized-pairs recording shifted against its
exo frames by an offset drawn uniformly from [-J, J] frames, once per
recording (config.data.sync_offset_mode="per_video": a clock error), for J
in 0, 8, 16, 32, 64, 128 frames. For scale: recordings are 1000-2000 frames
and action segments last 42 frames on average (median 27). Writes
workdirs/synthetic_benchmark/ablation_jitter/{results.md,results.json,
sweep.png}. About 18 minutes on 2 CPU cores after the main study (18 runs).
`--config.sweep.method=align_pseudo_label
--config.results_dir=workdirs/synthetic_benchmark/ablation_jitter_align`
sweeps the DTW baseline.
"""

import ml_collections

from configs import synthetic_benchmark


def get_config():
  config = synthetic_benchmark.get_config()
  config.results_dir = "workdirs/synthetic_benchmark/ablation_jitter"
  config.methods = ("exo_only", "ego_oracle")  # the reference lines
  # The DTW baseline, which trusts no timestamp, swept the same way with
  # --config.sweep.method=align_pseudo_label: the offsets are put into the
  # recordings it aligns, as a rig with those clocks would give them.
  config.method_configs.align_pseudo_label = (
    "configs/synthetic_align_pseudo_label.py"
  )
  config.sweep = ml_collections.ConfigDict()
  config.sweep.method = "distill_model"  # the method whose runs are swept
  config.sweep.key = "data.sync_offset"  # the config field swept
  config.sweep.grid = (0, 8, 16, 32, 64, 128)  # one row per value
  # Also set on every point of the sweep.
  config.sweep.fixed = ml_collections.ConfigDict(
    {"data": {"sync_offset_mode": "per_video"}}
  )
  # x-axis label of sweep.png.
  config.sweep.label = "synchronization error J (offset in [-J, J] frames)"
  config.sweep.metrics = ("f1@25", "edit")  # panels of sweep.png
  # Rows drawn as horizontal lines in sweep.png.
  config.sweep.references = ("exo_only", "ego_oracle")
  return config
