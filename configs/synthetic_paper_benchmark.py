"""The published training recipe's twin on the embedded synthetic benchmark:
what the recipe changes, measured in minutes on a CPU.

  python -m exo2ego_jax.benchmark --config configs/synthetic_paper_benchmark.py

The same five methods and seeds as configs/synthetic_benchmark.py, each
trained with configs/assembly101_paper_benchmark.py's settings (consecutive
windows, batch 1, background ignored by the teacher's and oracle's loss, the
reference's smoothing average, unbiased BatchNorm variance, an evaluation
every epoch, selection by F1@10 + F1@25 + F1@50 + Edit + MoF on validation,
early stopping, the transfer scripts' scoring rule, an `mlp` adapter), except
three things that keep it a CPU job: chunks of 4 frames (the synthetic
benchmark's time resolution, as in the default recipe) with the zoom on (the
reference zooms whenever the chunk is above 1), the synthetic configs' 20
epochs and learning rates instead of 100 epochs at 1e-5, and a patience of
10 evaluations instead of 50. Writes workdirs/synthetic_paper/results.md.
Tables of both recipes side by side: docs/recipes.md.
"""

import ml_collections

from configs import assembly101_paper_benchmark
from configs import synthetic_benchmark


def get_config():
  config = synthetic_benchmark.get_config()
  config.workdir = "workdirs/synthetic_paper"
  settings = {
    k: (dict(v) if isinstance(v, dict) else v)
    for k, v in assembly101_paper_benchmark.PAPER_SETTINGS.items()
  }
  settings["data"].update(chunk_size=4, zoom=True)
  del settings["optim"]  # each method config's synthetic learning rate
  settings["num_epochs"] = 20
  settings["early_stopping_patience"] = 10
  settings["adapter"] = {"kind": "mlp"}  # the paper's adapter is per frame
  config.overrides = ml_collections.ConfigDict(
    {method: settings for method in config.methods}
  )
  return config
