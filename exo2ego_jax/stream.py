"""Live segmentation of a recording's features with a causal_tcn run.

  python -m exo2ego_jax.stream --workdir RUN --features FILE.npy \
      [--output labels.txt] [--smooth_steps 0]

Feeds the (T, D) features frame by frame to the run's OnlineSegmenter
(models/online.py), prints each change of the running label as it happens
(frame, class, probability) and, at the end, the per-step latency (p50,
p99) and frames per second. --output gets the label a live system shows at
each frame, one class name per line.

  python -m exo2ego_jax.stream --workdir RUN --score test [--view ego]

scores the live label stream of every recording of a split: F1@{10,25,50},
Edit and MoF without and with the causal smoothing (--smooth_steps, default
2, chosen on the validation split: a new label is shown once it has been the
argmax for that many consecutive steps). Writes <RUN>/eval/online_<split>_<view>.json.
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
_SMOOTH = flags.DEFINE_integer(
  "smooth_steps", None, "causal smoothing (steps a new label must persist)"
)
_SCORE = flags.DEFINE_string("score", None, "score the live stream of SPLIT")
_VIEW = flags.DEFINE_string("view", "ego", "view scored with --score")
_WHICH = flags.DEFINE_string("which", "best", "checkpoint: best or checkpoints")

DEFAULT_SMOOTH_STEPS = 2


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
  segmenter, features: np.ndarray, smooth_steps: int, names, out=sys.stdout
) -> tuple[np.ndarray, np.ndarray]:
  """Feeds `features` frame by frame; prints label changes. Returns the
  per-frame labels shown and the seconds each model step took."""
  from exo2ego_jax.models import online

  segmenter.reset()
  smoother = online.Debounce(smooth_steps)
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
      label = smoother.push(int(np.argmax(probs)))
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


def score_split(segmenter, split: str, view: str, smooth_steps: int) -> dict:
  """Online scores of every recording of `split` (see the module doc)."""
  from exo2ego_jax.data import datasets
  from exo2ego_jax.data import input_pipeline
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
  policy = config.get("background_policy", metrics.BACKGROUND_POLICIES[0])
  kinds = ("steps", "live", f"live_smoothed_{smooth_steps}")
  scores = {
    k: metrics.SegmentationScores(
      background_classes=tuple(info.background_classes),
      background_policy=policy,
    )
    for k in kinds
  }
  forward = online.RecordingForward(segmenter)
  source = sources[split]
  for i in range(len(source)):
    example = source[i]
    frames = np.asarray(example[view], np.float32)
    truth = evaluator.labels_for_view(example, view)
    step_labels = forward.step_probs(frames).argmax(axis=-1)
    chunk = segmenter.chunk_size
    video = evaluator.decode_id(example["video_id"])
    steps = input_pipeline.steps_to_frames(step_labels, chunk, len(frames))
    scores["steps"].add(video, steps, truth)
    scores[kinds[1]].add(
      video, online.live_frames(step_labels, chunk, len(frames)), truth
    )
    smoothed = online.debounced(step_labels, smooth_steps)
    scores[kinds[2]].add(
      video, online.live_frames(smoothed, chunk, len(frames)), truth
    )
  return {k: scores[k].summary() for k in kinds}


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
  smooth = DEFAULT_SMOOTH_STEPS if _SMOOTH.value is None else int(_SMOOTH.value)
  if _SCORE.value:
    try:
      result = score_split(segmenter, _SCORE.value, _VIEW.value, smooth)
    except ValueError as e:
      sys.exit(f"error: {e}")
    path = os.path.join(
      _WORKDIR.value, "eval", f"online_{_SCORE.value}_{_VIEW.value}.json"
    )
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
      json.dump(result, f, indent=2)
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
  labels, seconds = stream(segmenter, features, smooth, names)
  if _OUTPUT.value:
    with open(_OUTPUT.value, "w") as f:
      f.write("".join(f"{names[k] if k >= 0 else '-'}\n" for k in labels))
  if len(seconds):
    print(latency_line(seconds, segmenter.chunk_size))


if __name__ == "__main__":
  app.run(main)
