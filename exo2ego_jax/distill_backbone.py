"""Frame-level feature distillation: fine-tune a copy of the ViT backbone on
ego frames so that its feature matches the frozen backbone's feature of the
synchronized exo frame (mean squared error). No label is read.

  python -m exo2ego_jax.distill_backbone \
      --config configs/synthetic_video_distill_backbone.py --workdir DIR
  python -m exo2ego_jax.extract_features --params DIR --view ego ...

The teacher (frozen) and the student start from the same weights: converted
ones (`config.backbone.params`) or a random init (`config.backbone.model`,
for tests). The teacher's exo features are computed once, up front, since
the teacher never changes. With `config.train_last_blocks = N > 0` only the
last N blocks and the final LayerNorm are trained: the rest is not even
differentiated, and stays the teacher's.

Pairs come from `<config.data.video_dir>/exo/<name>.*` and `.../ego/<name>.*`
(frames paired by index after sampling both at `config.data.fps`), or, with
no video_dir, from `exo2ego_jax.data.synthetic_video` rendered in memory. The last
`config.data.num_validation_videos` pairs are held out: their exo/ego MSE
selects the exported checkpoint (no test data, no labels).

Workdir: config.json, metrics.jsonl, checkpoints/ and best/ (orbax, trained
parameters and optimiser state; re-running resumes), results.json, and the
best student as a backbone (vit_config.json + params/, the import_weights
layout).

The library is exo2ego_jax/backbone/distill.py.
"""

from __future__ import annotations

import json

from absl import app
from absl import flags
from ml_collections import config_flags

from exo2ego_jax.backbone import distill
from exo2ego_jax.runtime import cli
from exo2ego_jax.runtime import errors


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  results = distill.train_and_evaluate(f.config, f.workdir)
  if results.get("preempted"):
    errors.end_of_stopped_run(results)  # exits: 130 for Ctrl-C
  print(json.dumps(results, indent=2))


def define_flags() -> None:
  config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (configs/*.py).", lock_config=True
  )
  flags.DEFINE_string("workdir", None, "Directory of the run.", required=True)


if __name__ == "__main__":
  define_flags()
  flags.mark_flags_as_required(["config"])
  cli.run(main)
