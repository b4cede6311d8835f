"""The live (causal) study on the synthetic benchmark, next to the offline
C2F-TCN rows.

  python -m exo2ego_jax.benchmark --config configs/synthetic_causal_benchmark.py

For seeds 0, 1, 2: the offline exo teacher (exo_only) and offline
distill_model as in configs/synthetic_benchmark.py, then the causal TCN
exo-only, ego-oracle and distilled from the offline teacher
(configs/synthetic_causal_*.py). Every run is scored on the ego view of the
test split; the gap closed is causal_exo_only -> causal_ego_oracle. It
shares the main study's workdir, so the main study's exo_only and
distill_model runs are reused; results go to
workdirs/synthetic_benchmark/causal/. The online scores
(whole-recording causal predictions, a live label stream, its smoothing):
`python -m exo2ego_jax.stream --score` (docs/live.md).
"""

import ml_collections

from configs import synthetic_benchmark


def get_config():
  config = synthetic_benchmark.get_config()
  config.results_dir = "workdirs/synthetic_benchmark/causal"
  config.methods = (
    "exo_only",
    "distill_model",
    "causal_exo_only",
    "causal_ego_oracle",
    "causal_distill_model",
  )
  config.method_configs.causal_exo_only = "configs/synthetic_causal_exo.py"
  config.method_configs.causal_ego_oracle = (
    "configs/synthetic_causal_ego_oracle.py"
  )
  config.method_configs.causal_distill_model = (
    "configs/synthetic_causal_distill_model.py"
  )
  # The causal student starts from the causal exo-only run of its seed.
  config.student_inits = ml_collections.ConfigDict(
    {"causal_distill_model": "causal_exo_only"}
  )
  config.lower = "causal_exo_only"
  config.upper = "causal_ego_oracle"
  return config
