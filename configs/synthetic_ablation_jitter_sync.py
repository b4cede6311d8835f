"""The jitter sweep with self-synchronization: distill_model trained on
pairs whose clocks the run estimates (config.sync) before distilling.

  python -m exo2ego_jax.benchmark \
      --config configs/synthetic_ablation_jitter_sync.py

As configs/synthetic_ablation_jitter.py (seeds 0, 1, 2; per-recording
offsets uniform in [-J, J] frames), with config.sync.estimate on and two
rounds: round 1 estimates each recording's offset from the frozen teacher's
outputs on both streams and distills; round 2 (the row) re-estimates with
round 1's students on the ego stream and distills again
from the teacher. Each round-2 run keeps its round-1 run in
<run>/round1/ and both write sync_estimates.json (the estimates, and their
error against the offsets put in). The exo teacher and the ego oracle runs
of configs/synthetic_benchmark.py are reused. Writes
workdirs/synthetic_benchmark/ablation_jitter_sync/{results.md,results.json,
sweep.png}; `python benchmarks/sync_error.py --workdir
workdirs/synthetic_benchmark` tabulates the estimation errors. About 2
minutes per point and seed on 2 CPU cores (two trainings).
"""

from configs import synthetic_ablation_jitter


def get_config():
  config = synthetic_ablation_jitter.get_config()
  config.results_dir = "workdirs/synthetic_benchmark/ablation_jitter_sync"
  config.sweep.fixed.sync = {"estimate": True, "rounds": 2}
  config.sweep.label = (
    "synchronization error J (offset in [-J, J] frames), clocks estimated"
  )
  return config
