"""Live segmentation of a recording's features with a causal_tcn run.

  python -m exo2ego_jax.stream --workdir RUN --features FILE.npy \
      [--output labels.txt] [--smooth_margin 0.3] [--smooth_steps 1]

Feeds the (T, D) features frame by frame to the run's OnlineSegmenter
(models/online.py), prints each change of the running label as it happens
(frame, class, probability) and, at the end, the per-step latency (p50,
p99) and frames per second. --output gets the label a live system shows at
each frame, one class name per line.

  python -m exo2ego_jax.stream --workdir RUN --score test [--view ego]

scores the live label stream of every recording of a split: F1@{10,25,50},
Edit and MoF without and with the causal smoothing. Writes
<RUN>/eval/online_<split>_<view>.json.

The smoothing (models/online.py `Smoother`) is causal: the shown label
changes to the argmax class once its probability beats the shown class's by
more than --smooth_margin (default 0.3, chosen on the validation split by
benchmarks/online_scores.py; 0: the argmax), and, with --smooth_steps N > 1,
once that has held for N consecutive steps.
"""

from __future__ import annotations

import json
import os
import sys
import time

from absl import app
from absl import flags
import numpy as np

_WORKDIR = flags.DEFINE_string("workdir", None, "a causal_tcn training run")
_FEATURES = flags.DEFINE_string("features", None, "(T, D) float .npy file")
_OUTPUT = flags.DEFINE_string("output", None, "per-frame labels (text)")
_MARGIN = flags.DEFINE_float(
  "smooth_margin",
  None,
  "causal smoothing: probability margin a new label must win by "
  "(default 0.3; 0: off)",
)
_SMOOTH = flags.DEFINE_integer(
  "smooth_steps",
  None,
  "causal smoothing: steps a new label must persist (default 1: off)",
)
_SCORE = flags.DEFINE_string("score", None, "score the live stream of SPLIT")
_VIEW = flags.DEFINE_string("view", "ego", "view scored with --score")
_WHICH = flags.DEFINE_string("which", "best", "checkpoint: best or checkpoints")

# Chosen on the validation split (docs/live.md): the margin that gave the
# distilled causal students their best mean F1@25 (benchmarks/online_scores.py).
DEFAULT_SMOOTH_MARGIN = 0.3
DEFAULT_SMOOTH_STEPS = 1


def class_names(config, num_classes: int) -> list[str]:
  """The dataset's class names, or the class ids if it cannot be opened."""
  from exo2ego_jax.data import datasets

  try:
    info, _ = datasets.open_dataset(
      config.dataset.name, config.dataset.get("data_dir")
    )
    return list(info.class_names)
  except Exception:  # pylint: disable=broad-except
    return [str(k) for k in range(num_classes)]


def stream(
  segmenter,
  features: np.ndarray,
  smoother,
  names,
  out=sys.stdout,
) -> tuple[np.ndarray, np.ndarray]:
  """Feeds `features` frame by frame; prints label changes. Returns the
  per-frame labels shown and the seconds each model step took. `smoother`:
  an `online.Smoother` (or anything whose push(probs) gives the label)."""
  segmenter.reset()
  labels = np.empty(len(features), np.int64)
  seconds, shown, steps_done = [], None, 0
  pending = 0
  for f, frame in enumerate(features):
    pending += 1
    t0 = time.perf_counter()
    probs = segmenter.push_frames(frame[None])[0]
    if pending == segmenter.chunk_size:  # a model step ran
      seconds.append(time.perf_counter() - t0)
      pending = 0
      steps_done += 1
      label = smoother.push(probs)
    else:
      label = shown if shown is not None else int(np.argmax(probs))
    if steps_done == 0:  # before the first step: nothing seen yet
      label = -1
    if label != shown and label >= 0:
      print(f"frame {f}: {names[label]} (p={probs[label]:.2f})", file=out)
    shown = label
    labels[f] = label
  return labels, np.asarray(seconds)


def latency_line(seconds: np.ndarray, chunk: int) -> str:
  ms = 1e3 * seconds
  return (
    f"latency per step ({chunk} frames): p50 {np.percentile(ms, 50):.3f} ms, "
    f"p99 {np.percentile(ms, 99):.3f} ms; {chunk / np.mean(seconds):.0f} "
    f"frames/s over {len(seconds)} steps"
  )


def split_outputs(segmenter, split: str, view: str) -> tuple[list, dict]:
  """(video id, step probabilities, frame labels, frames) of every
  recording of `split`: the whole-recording causal forward, which by
  causality is what the segmenter gives step by step; and the scoring's
  background settings (the dataset's classes, the run's policy)."""
  from exo2ego_jax.data import datasets
  from exo2ego_jax.evaluation import evaluator
  from exo2ego_jax.evaluation import metrics
  from exo2ego_jax.models import online

  config = segmenter.config
  info, sources = datasets.open_dataset(
    config.dataset.name, config.dataset.get("data_dir")
  )
  if split not in sources:
    raise ValueError(
      f"dataset {info.name} has no split {split!r}: choose one of "
      f"{', '.join(sources)}"
    )
  forward = online.RecordingForward(segmenter)
  source = sources[split]
  outputs = []
  for i in range(len(source)):
    example = source[i]
    frames = np.asarray(example[view], np.float32)
    outputs.append(
      (
        evaluator.decode_id(example["video_id"]),
        forward.step_probs(frames),
        evaluator.labels_for_view(example, view),
        len(frames),
      )
    )
  background = dict(
    background_classes=tuple(info.background_classes),
    background_policy=config.get(
      "background_policy", metrics.BACKGROUND_POLICIES[0]
    ),
  )
  return outputs, background


def score_outputs(
  outputs: list[tuple], background: dict, chunk: int, margin: float, steps: int
) -> dict:
  """Scores of three label streams of `outputs` (split_outputs, with its
  `background`; `chunk`: frames per model step): "steps" (each step's
  argmax at its frames), "live" (each frame shows the newest finished step)
  and "live_smoothed" (the live stream of the smoothed labels,
  models/online.py `Smoother(margin, steps)`)."""
  from exo2ego_jax.data import input_pipeline
  from exo2ego_jax.evaluation import metrics
  from exo2ego_jax.models import online

  kinds = ("steps", "live", "live_smoothed")
  scores = {k: metrics.SegmentationScores(**background) for k in kinds}
  for video, probs, truth, length in outputs:
    step_labels = probs.argmax(axis=-1)
    steps_at_frames = input_pipeline.steps_to_frames(step_labels, chunk, length)
    scores["steps"].add(video, steps_at_frames, truth)
    scores["live"].add(
      video, online.live_frames(step_labels, chunk, length), truth
    )
    shown = online.smoothed(probs, margin, steps)
    scores["live_smoothed"].add(
      video, online.live_frames(shown, chunk, length), truth
    )
  return {k: scores[k].summary() for k in kinds}


def score_split(
  segmenter, split: str, view: str, margin: float, steps: int
) -> dict:
  """Online scores of every recording of `split` (see score_outputs)."""
  outputs, background = split_outputs(segmenter, split, view)
  return score_outputs(outputs, background, segmenter.chunk_size, margin, steps)


def load_features(path: str, dim: int) -> np.ndarray:
  """The (T, dim) features of --features, or ValueError saying why not."""
  try:
    features = np.load(path)
  except (OSError, ValueError) as e:
    raise ValueError(f"cannot read --features {path}: {e}") from None
  if features.ndim != 2 or features.shape[1] != dim:
    raise ValueError(
      f"--features {path} holds an array of shape {features.shape}; this "
      f"run needs (T, {dim})"
    )
  return features.astype(np.float32)


def main(argv):
  del argv
  from exo2ego_jax.models import online

  if not _WORKDIR.value:
    raise app.UsageError("--workdir is required")
  try:
    segmenter = online.OnlineSegmenter.from_workdir(
      _WORKDIR.value, _WHICH.value
    )
  except (FileNotFoundError, ValueError) as e:
    sys.exit(f"error: {e}")
  margin = DEFAULT_SMOOTH_MARGIN if _MARGIN.value is None else _MARGIN.value
  steps = DEFAULT_SMOOTH_STEPS if _SMOOTH.value is None else int(_SMOOTH.value)
  try:
    smoother = online.Smoother(margin, steps)
  except ValueError as e:
    sys.exit(f"error: --smooth_margin: {e}")
  if _SCORE.value:
    try:
      result = score_split(segmenter, _SCORE.value, _VIEW.value, margin, steps)
    except ValueError as e:
      sys.exit(f"error: {e}")
    path = os.path.join(
      _WORKDIR.value, "eval", f"online_{_SCORE.value}_{_VIEW.value}.json"
    )
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
      json.dump(
        dict(result, smoothing={"margin": margin, "steps": steps}), f, indent=2
      )
    for kind, s in result.items():
      print(
        f"{kind}: "
        + " ".join(
          f"{m}={s[m]:.2f}" for m in ("f1@10", "f1@25", "f1@50", "edit", "mof")
        )
      )
    return
  if not _FEATURES.value:
    raise app.UsageError("--features FILE.npy (or --score SPLIT) is required")
  try:
    features = load_features(_FEATURES.value, segmenter.feature_dim)
  except ValueError as e:
    sys.exit(f"error: {e}")
  names = class_names(segmenter.config, segmenter.num_classes)
  labels, seconds = stream(segmenter, features, smoother, names)
  if _OUTPUT.value:
    with open(_OUTPUT.value, "w") as f:
      f.write("".join(f"{names[k] if k >= 0 else '-'}\n" for k in labels))
  if len(seconds):
    print(latency_line(seconds, segmenter.chunk_size))


if __name__ == "__main__":
  app.run(main)
