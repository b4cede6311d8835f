"""Online scores of the causal study's runs: the live label stream of every
test recording, without and with the causal smoothing.

  python benchmarks/online_scores.py \
      [--workdir workdirs/synthetic_benchmark] [--split test] \
      [--smooth_steps 2]

For each causal row of configs/synthetic_causal_benchmark.py and each seed
it finds, runs `stream.score_split` (nothing is written) and
prints mean +- std over seeds of F1@{10,25,50}, Edit and MoF for three
label streams: "steps" (each model step's label at its frames: the
whole-recording causal forward, equal to the step-by-step one), "live" (a
frame shows the newest step finished when it arrives) and "live + smoothing"
(stream.DEFAULT_SMOOTH_STEPS: a new label must persist that many steps).
"""

import argparse
import os

import numpy as np

from exo2ego_jax import stream
from exo2ego_jax.models import online

ROWS = ("causal_exo_only", "causal_ego_oracle", "causal_distill_model")
METRICS = ("f1@10", "f1@25", "f1@50", "edit", "mof")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
    "--workdir",
    default="workdirs/synthetic_benchmark",
    help="The study's workdir (configs/synthetic_causal_benchmark.py).",
  )
  parser.add_argument("--split", default="test")
  parser.add_argument("--view", default="ego")
  parser.add_argument(
    "--smooth_steps", type=int, default=stream.DEFAULT_SMOOTH_STEPS
  )
  parser.add_argument("--rows", default=",".join(ROWS))
  parser.add_argument("--seeds", default="0,1,2")
  args = parser.parse_args()
  print(
    f"| row (online, {args.split}/{args.view}) | seeds | "
    + " | ".join(METRICS)
    + " |"
  )
  print("|---|---|" + "---|" * len(METRICS))
  for row in args.rows.split(","):
    runs = [
      os.path.join(args.workdir, row, f"seed{s}")
      for s in args.seeds.split(",")
      if os.path.exists(
        os.path.join(args.workdir, row, f"seed{s}", "results.json")
      )
    ]
    if not runs:
      continue
    results = [
      stream.score_split(
        online.OnlineSegmenter.from_workdir(run),
        args.split,
        args.view,
        args.smooth_steps,
      )
      for run in runs
    ]
    for kind in results[0]:
      values = [[r[kind][m] for r in results] for m in METRICS]
      print(
        f"| {row} {kind} | {len(runs)} | "
        + " | ".join(f"{np.mean(v):.2f} ± {np.std(v):.2f}" for v in values)
        + " |",
        flush=True,
      )


if __name__ == "__main__":
  main()
