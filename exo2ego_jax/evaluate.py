"""Evaluates a trained run on a split and writes its predictions.

  python -m exo2ego_jax.evaluate --workdir DIR [--split test] [--view ego]
      [--chunk_sizes 3,4,5] [--config configs/x.py]

Restores the run's best checkpoint (by its validation metric), predicts every
recording of the split, writes `<workdir>/eval/<split>_<view>/predictions/
<video_id>.txt` (the predicted class name of each frame, one per line) and
`<workdir>/eval/<split>_<view>/metrics.json` (split summary and per video).
Without --config the run's own config.json is used. Several chunk sizes turn
on test-time augmentation (the frame probabilities are averaged). Safe while
the run still trains: a checkpoint it removes meanwhile is no error, the
newest one is read instead.
"""

from __future__ import annotations

from absl import flags
import ml_collections
from ml_collections import config_flags

from exo2ego_jax.runtime import cli
from exo2ego_jax.runtime import checkpoints
from exo2ego_jax.training import trainer

_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "Config of the run (default: <workdir>/config.json)."
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory.", required=True)
_SPLIT = flags.DEFINE_string("split", "test", "Split to evaluate.")
_VIEW = flags.DEFINE_string(
  "view", None, "exo or ego (default: the run's eval view)."
)
_CHUNK_SIZES = flags.DEFINE_list(
  "chunk_sizes",
  None,
  "Chunk sizes to average (test-time augmentation); "
  "default: the run's config.data.eval_chunk_sizes, else its chunk size.",
)
_CHECKPOINT = flags.DEFINE_enum(
  "checkpoint",
  checkpoints.BEST,
  [checkpoints.BEST, checkpoints.LATEST],
  "Which checkpoint to evaluate.",
)


def main(argv):
  del argv
  config = _CONFIG.value or ml_collections.ConfigDict(
    trainer.read_run_config(_WORKDIR.value)
  )
  summary = trainer.evaluate_run(
    config,
    _WORKDIR.value,
    _SPLIT.value,
    _VIEW.value,
    _CHUNK_SIZES.value,
    _CHECKPOINT.value,
  )
  keys = ("f1@10", "f1@25", "f1@50", "edit", "mof")
  print(
    f"{summary['mode']} on {summary['split']}/{summary['view']} "
    f"(step {summary['step']}, {summary['background_policy']}): "
    + " ".join(f"{k}={summary[k]:.2f}" for k in keys)
  )


if __name__ == "__main__":
  cli.run(main)
