"""Per-class error report of a split's predictions: which classes a model
gets wrong, and what it mistakes them for.

Frame level: every scored frame (label != -100) counts once. A class's
recall is the share of its frames predicted as it, precision the share of
frames predicted as it that are it, F1 their harmonic mean.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from exo2ego_jax.data.constants import IGNORE_LABEL


def confusion_matrix(
  pairs: Iterable[tuple[np.ndarray, np.ndarray]], num_classes: int
) -> np.ndarray:
  """(C, C) frame counts, row = ground truth, column = prediction, summed
  over (prediction, ground truth) pairs of equal length."""
  matrix = np.zeros((num_classes, num_classes), np.int64)
  for pred, gt in pairs:
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
      raise ValueError(
        f"prediction of {pred.shape[0]} frames against ground "
        f"truth of {gt.shape[0]}"
      )
    scored = gt != IGNORE_LABEL
    np.add.at(matrix, (gt[scored], pred[scored]), 1)
  return matrix


def per_class(matrix: np.ndarray, class_names: Sequence[str]) -> list[dict]:
  """Frames, recall, precision and F1 (percent) of every class."""
  true = matrix.sum(axis=1)
  predicted = matrix.sum(axis=0)
  hits = np.diag(matrix)
  rows = []
  for k, name in enumerate(class_names):
    recall = 100.0 * hits[k] / true[k] if true[k] else 0.0
    precision = 100.0 * hits[k] / predicted[k] if predicted[k] else 0.0
    f1 = (
      2 * recall * precision / (recall + precision)
      if recall + precision
      else 0.0
    )
    rows.append(
      {
        "class": name,
        "frames": int(true[k]),
        "predicted_frames": int(predicted[k]),
        "recall": float(recall),
        "precision": float(precision),
        "f1": float(f1),
      }
    )
  return rows


def worst_classes(
  matrix: np.ndarray,
  class_names: Sequence[str],
  count: int = 5,
  confusions: int = 3,
) -> list[dict]:
  """The `count` classes with the lowest frame F1 among those in the ground
  truth (ties: more frames first), each with the `confusions` classes its
  frames are most often predicted as instead (share of its frames)."""
  stats = per_class(matrix, class_names)
  present = [k for k in range(len(class_names)) if stats[k]["frames"]]
  order = sorted(
    present, key=lambda k: (stats[k]["f1"], -stats[k]["frames"], k)
  )
  out = []
  for k in order[:count]:
    wrong = [
      (int(matrix[k, j]), j)
      for j in range(len(class_names))
      if j != k and matrix[k, j]
    ]
    wrong.sort(key=lambda item: (-item[0], item[1]))
    out.append(
      dict(
        stats[k],
        mistaken_for=[
          {"class": class_names[j], "share": 100.0 * n / stats[k]["frames"]}
          for n, j in wrong[:confusions]
        ],
      )
    )
  return out


def markdown(worst: Sequence[dict], title: str) -> str:
  """The worst classes as a Markdown table."""
  lines = [
    f"{title}\n",
    "| class | frames | recall | precision | F1 | mistaken for |",
    "|---|---|---|---|---|---|",
  ]
  for row in worst:
    mistaken = (
      ", ".join(f"{m['class']} {m['share']:.0f}%" for m in row["mistaken_for"])
      or "-"
    )
    lines.append(
      f"| {row['class']} | {row['frames']} | {row['recall']:.1f} "
      f"| {row['precision']:.1f} | {row['f1']:.1f} | {mistaken} |"
    )
  return "\n".join(lines)
