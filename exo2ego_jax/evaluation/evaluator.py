"""Whole-recording inference and scoring of a split.

Each recording is chunked, cut into consecutive windows of `max_frames` steps,
run through a jit-compiled predictor in fixed-shape batches (windows of many
recordings share a batch), and the per-step probabilities are repeated back to
frame rate. Test-time augmentation averages the frame probabilities of several
chunk sizes.
"""

from __future__ import annotations

import os
import sys
from typing import Callable, Iterable, Sequence

import numpy as np
import tqdm

from exo2ego_jax.data import input_pipeline
from exo2ego_jax.evaluation import metrics

# Which label field scores which view: ego frames may show another instant
# than exo frames when a dataset has synchronisation jitter.
VIEW_LABELS = {"exo": "labels", "ego": "ego_labels"}

# Summary keys a run may select its best checkpoint by (config.best_metric).
SELECTION_METRICS = (
  "f1@10",
  "f1@25",
  "f1@50",
  "edit",
  "mof",
  metrics.SCORE_SUM,
)

PredictFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def labels_for_view(example: dict, view: str) -> np.ndarray:
  key = VIEW_LABELS[view]
  return np.asarray(example[key] if key in example else example["labels"])


def decode_id(value) -> str:
  return value.decode() if isinstance(value, bytes) else str(value)


def predict_recordings(
  predict_fn: PredictFn,
  features: Sequence[np.ndarray],
  chunk_sizes: Sequence[int],
  max_frames: int,
  batch_size: int,
) -> list[np.ndarray]:
  """Frame-level class probabilities (T_i, C) for each recording."""
  totals: list = [None] * len(features)
  for chunk in chunk_sizes:
    windows, masks, owners = [], [], []
    for i, feats in enumerate(features):
      w, m = input_pipeline.eval_windows(feats, chunk, max_frames)
      windows.append(w)
      masks.append(m)
      owners.extend([i] * len(w))
    windows = np.concatenate(windows)
    masks = np.concatenate(masks)
    count = len(windows)
    pad = -count % batch_size
    windows = np.concatenate([windows, np.zeros_like(windows[:pad])])
    masks = np.concatenate([masks, np.zeros_like(masks[:pad])])
    probs = np.concatenate(
      [
        np.asarray(
          predict_fn(windows[s : s + batch_size], masks[s : s + batch_size])
        )
        for s in range(0, len(windows), batch_size)
      ]
    )[:count]
    owners = np.asarray(owners)
    for i, feats in enumerate(features):
      steps = probs[owners == i].reshape(-1, probs.shape[-1])
      frames = input_pipeline.steps_to_frames(steps, chunk, len(feats))
      totals[i] = frames if totals[i] is None else totals[i] + frames
  return [t / len(chunk_sizes) for t in totals]


def evaluate_split(
  predict_fn: PredictFn,
  source,
  *,
  view: str,
  chunk_sizes: Sequence[int],
  max_frames: int,
  batch_size: int,
  class_names: Sequence[str],
  background_classes: Iterable[int] = (),
  background_policy: str = metrics.BACKGROUND_POLICIES[0],
  predictions_dir: str | None = None,
  recordings_per_group: int = 32,
  progress: bool = False,
) -> dict:
  """Scores `view` features of every recording in `source` against its labels.

  Returns the split summary (metrics.SegmentationScores.summary()) with a
  "per_video" list. With `predictions_dir`, writes one text file per
  recording: the predicted class name of each frame, one per line.
  """
  scores = metrics.SegmentationScores(
    background_classes=tuple(background_classes),
    background_policy=background_policy,
  )
  if predictions_dir:
    os.makedirs(predictions_dir, exist_ok=True)
  indices = range(len(source))
  bar = tqdm.tqdm(
    total=len(source),
    desc=f"eval {view}",
    leave=False,
    disable=not progress or not sys.stderr.isatty(),
  )  # no logs
  for start in range(0, len(source), recordings_per_group):
    examples = [
      source[i] for i in indices[start : start + recordings_per_group]
    ]
    features = [np.asarray(e[view], np.float32) for e in examples]
    probs = predict_recordings(
      predict_fn, features, chunk_sizes, max_frames, batch_size
    )
    for example, p in zip(examples, probs):
      video_id = decode_id(example["video_id"])
      prediction = p.argmax(axis=-1)
      scores.add(video_id, prediction, labels_for_view(example, view))
      if predictions_dir:
        with open(os.path.join(predictions_dir, f"{video_id}.txt"), "w") as f:
          f.write("".join(f"{class_names[k]}\n" for k in prediction))
    bar.update(len(examples))
  bar.close()
  summary = scores.summary()
  summary["per_video"] = scores.per_video()
  return summary
