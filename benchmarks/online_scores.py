"""Online scores of the causal study's runs: the live label stream of every
test recording, without and with the causal smoothing.

  python benchmarks/online_scores.py \
      [--workdir workdirs/synthetic_benchmark] [--split test] \
      [--smooth_margin M] [--smooth_steps 1]

For each causal row of configs/synthetic_causal_benchmark.py and each seed
it finds, scores (nothing is written) and prints mean +- std over seeds of
F1@{10,25,50}, Edit and MoF for three label streams: "steps" (each model
step's label at its frames: the whole-recording causal forward, equal to
the step-by-step one), "live" (a frame shows the newest step finished when
it arrives) and "live + smoothing" (models/online.py `Smoother`: a new label
must beat the shown one's probability by the margin).

The margin: --smooth_margin, or else chosen per row on --choose_on (the
validation split): the one of MARGINS with the best mean F1@25 over the
row's seeds, printed with its validation score.

The offline rows (--offline_rows, default distill_model: C2F-TCN, which
sees the whole recording) get the same smoothing, chosen the same way, on
their frame probabilities (as the study scores them), so that the causal
student's smoothed stream is compared with the offline student at its own
best smoothing (margin 0 when none helps on validation).
"""

import argparse
import os

import numpy as np

from exo2ego_jax import stream
from exo2ego_jax.models import online

ROWS = ("causal_exo_only", "causal_ego_oracle", "causal_distill_model")
MARGINS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)
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
    "--smooth_margin",
    type=float,
    default=None,
    help="Fixed smoothing margin (default: chosen per row on --choose_on).",
  )
  parser.add_argument("--choose_on", default="validation")
  parser.add_argument(
    "--smooth_steps", type=int, default=stream.DEFAULT_SMOOTH_STEPS
  )
  parser.add_argument("--rows", default=",".join(ROWS))
  parser.add_argument("--offline_rows", default="distill_model")
  parser.add_argument("--seeds", default="0,1,2")
  args = parser.parse_args()
  print(
    f"| row (online, {args.split}/{args.view}) | seeds | "
    + " | ".join(METRICS)
    + " |"
  )
  print("|---|---|" + "---|" * len(METRICS))
  notes = []
  for row in args.rows.split(","):
    runs = finished_runs(args, row)
    if not runs:
      continue
    segmenters = [online.OnlineSegmenter.from_workdir(run) for run in runs]
    margin = args.smooth_margin
    if margin is None:
      margin, chosen = choose_margin(segmenters, args)
      notes.append(
        f"{row}: smoothing margin {margin}, chosen on "
        f"{args.choose_on}/{args.view} among {MARGINS} (its F1@25 there: "
        f"{chosen:.2f})"
      )
    results = [
      stream.score_split(s, args.split, args.view, margin, args.smooth_steps)
      for s in segmenters
    ]
    for kind in results[0]:
      values = [[r[kind][m] for r in results] for m in METRICS]
      print(
        f"| {row} {kind} | {len(runs)} | "
        + " | ".join(f"{np.mean(v):.2f} ± {np.std(v):.2f}" for v in values)
        + " |",
        flush=True,
      )
  for row in filter(None, args.offline_rows.split(",")):
    runs = finished_runs(args, row)
    if runs:
      notes.append(offline_row(row, runs, args))
  print("\n".join([""] + notes))


def finished_runs(args, row: str) -> list[str]:
  """The workdirs of `row`'s seeds that finished (have results.json)."""
  runs = [
    os.path.join(args.workdir, row, f"seed{s}") for s in args.seeds.split(",")
  ]
  return [r for r in runs if os.path.exists(os.path.join(r, "results.json"))]


def offline_outputs(workdir: str, split: str, view: str) -> tuple[list, dict]:
  """(video id, frame probabilities, frame labels) of every recording of
  `split`, from an offline run's best checkpoint as the study scores it;
  and the dataset's background settings."""
  import ml_collections  # pylint: disable=g-import-not-at-top

  from exo2ego_jax.evaluation import evaluator  # pylint: disable=g-import-not-at-top
  from exo2ego_jax.training import trainer  # pylint: disable=g-import-not-at-top

  config = ml_collections.ConfigDict(trainer.read_run_config(workdir))
  info, sources, _, predict = trainer.restored_predictor(config, workdir, split)
  source = sources[split]
  examples = [source[i] for i in range(len(source))]
  probs = evaluator.predict_recordings(
    predict,
    [np.asarray(e[view], np.float32) for e in examples],
    trainer.eval_chunk_sizes(config),
    config.data.max_frames,
    config.data.eval_batch_size,
  )
  outputs = [
    (evaluator.decode_id(e["video_id"]), p, evaluator.labels_for_view(e, view))
    for e, p in zip(examples, probs)
  ]
  background = dict(
    background_classes=tuple(info.background_classes),
    background_policy=config.background_policy,
  )
  return outputs, background


def offline_scores(outputs, background: dict, margin: float, steps: int):
  from exo2ego_jax.evaluation import metrics  # pylint: disable=g-import-not-at-top

  scores = metrics.SegmentationScores(**background)
  for video, probs, truth in outputs:
    scores.add(video, online.smoothed(probs, margin, steps), truth)
  return scores.summary()


def offline_row(row: str, runs: list, args) -> str:
  """An offline row's test scores with the smoothing chosen on
  args.choose_on (or --smooth_margin), as the causal rows get theirs."""

  def means(split: str, margins) -> dict:
    found = [offline_outputs(run, split, args.view) for run in runs]
    return {
      m: {
        k: np.mean(
          [offline_scores(o, b, m, args.smooth_steps)[k] for o, b in found]
        )
        for k in METRICS
      }
      for m in margins
    }

  if args.smooth_margin is not None:
    margin, how = args.smooth_margin, "given"
  else:
    tried = means(args.choose_on, MARGINS)
    margin = max(tried, key=lambda m: tried[m]["f1@25"])
    how = f"chosen on {args.choose_on}/{args.view}"
  scores = means(args.split, [margin])[margin]
  return (
    f"{row} (offline), smoothing margin {margin} {how}: "
    f"{args.split}/{args.view} "
    + ", ".join(f"{k} {scores[k]:.2f}" for k in METRICS)
  )


def choose_margin(segmenters, args) -> tuple[float, float]:
  """The margin of MARGINS with the best mean F1@25 of the smoothed live
  stream over the runs, on args.choose_on; and that score."""
  found = [
    (stream.split_outputs(s, args.choose_on, args.view), s.chunk_size)
    for s in segmenters
  ]
  scores = {
    margin: np.mean(
      [
        stream.score_outputs(
          outputs, background, chunk, margin, args.smooth_steps
        )["live_smoothed"]["f1@25"]
        for (outputs, background), chunk in found
      ]
    )
    for margin in MARGINS
  }
  best = max(scores, key=scores.get)
  return best, float(scores[best])


if __name__ == "__main__":
  main()
