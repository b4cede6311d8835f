r"""Draws a run's predictions as segmentation bars and reports its worst
classes; or, with --clocks, the clocks a run estimated.

  python -m exo2ego_jax.plot --workdir workdirs/my_run \
      [--split test] [--view ego] [--videos 6] [--video_ids a,b] [--worst 5]
  python -m exo2ego_jax.plot --workdir workdirs/my_run --clocks \
      [--videos 6] [--video_ids a,b] [--out DIR]

--clocks reads <workdir>/sync_estimates.json (a run with
config.sync.estimate) and writes <workdir>/sync/clocks.png (or into --out):
per recording, exo frame against ego frame with the local matches as
points, the estimated line t_exo = rate * t_ego + offset (dashed where the
recording kept its timestamps) and the true line where the dataset knows it.

Reads the predictions that `python -m exo2ego_jax.evaluate` (and the
benchmark) write under <workdir>/eval/<split>_<view>/predictions, or scores
the run's best checkpoint first when there are none, and the ground truth
from the run's dataset. Writes into <workdir>/eval/<split>_<view>/ (or --out):
  segmentation.png  ground truth over prediction for each chosen video
  confusion.md      the --worst classes by frame F1, with what they are
                    mistaken for (also printed)
  confusion.json    per-class frames/recall/precision/F1 and the full
                    frame confusion matrix (rows: truth, columns: prediction)

The drawing and the report are `exo2ego_jax.evaluation.run_report`.
"""

from __future__ import annotations

from absl import flags

from exo2ego_jax.evaluation import run_report
from exo2ego_jax.runtime import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory.", required=True)
_SPLIT = flags.DEFINE_string(
  "split", "test", "Split whose predictions to draw."
)
_VIEW = flags.DEFINE_string(
  "view", None, "exo or ego (default: the run's eval view)."
)
_VIDEOS = flags.DEFINE_integer(
  "videos", 6, "Draw the first N recordings of the split."
)
_VIDEO_IDS = flags.DEFINE_list(
  "video_ids", None, "Draw these recordings instead of the first --videos."
)
_WORST = flags.DEFINE_integer("worst", 5, "Classes in the confusion report.")
_CLOCKS = flags.DEFINE_bool(
  "clocks", False, "Draw the run's estimated clocks instead."
)
_OUT = flags.DEFINE_string(
  "out", None, "Output folder (default: <workdir>/eval/<split>_<view>)."
)


def main(argv):
  del argv
  if _CLOCKS.value:
    run_report.plot_clocks(
      _WORKDIR.value, _VIDEOS.value, _VIDEO_IDS.value, _OUT.value
    )
    return
  result = run_report.plot_run(
    _WORKDIR.value,
    _SPLIT.value,
    _VIEW.value,
    _VIDEOS.value,
    _VIDEO_IDS.value,
    _WORST.value,
    _OUT.value,
  )
  print(result["report"])
  print("wrote " + ", ".join(result["paths"].values()))


if __name__ == "__main__":
  cli.run(main)
