"""Figures: segmentations of one recording as coloured bars."""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np


def read_predictions(path: str, class_names: Sequence[str]) -> np.ndarray:
  """Label ids of a predictions file (one class name per line)."""
  index = {name: i for i, name in enumerate(class_names)}
  with open(path) as f:
    names = [line.strip() for line in f if line.strip()]
  unknown = sorted(set(names) - set(index))
  if unknown:
    raise ValueError(f"{path} names classes outside the class table: "
                     f"{unknown[:5]}")
  return np.array([index[n] for n in names], np.int64)


def class_colors(num_classes: int) -> np.ndarray:
  """A fixed colour per class id; background (id 0) alone is light grey."""
  palette = [plt.get_cmap(name)(i) for name in ("tab20", "tab20b", "tab20c")
             for i in range(20)]
  palette = [c for c in palette if np.ptp(c[:3]) > 0.05]  # drop the greys
  colors = np.array([palette[(i - 1) % len(palette)]
                     for i in range(num_classes)])
  colors[0] = (0.9, 0.9, 0.9, 1.0)
  return colors


def segmentation_bars(path: str, video_id: str,
                      predictions: Mapping[str, str],
                      class_names: Sequence[str],
                      ground_truth: np.ndarray) -> None:
  """Ground truth and each method's prediction of `video_id` as bars.

  `predictions` maps a row name to the folder of its prediction files.
  """
  rows = [("ground truth", np.asarray(ground_truth))]
  for name, folder in predictions.items():
    rows.append((name, read_predictions(os.path.join(folder, f"{video_id}.txt"),
                                        class_names)))
  colors = class_colors(len(class_names))
  fig, axes = plt.subplots(len(rows), 1, figsize=(12, 0.55 * len(rows) + 0.8),
                           sharex=True)
  for ax, (name, labels) in zip(np.atleast_1d(axes), rows):
    ax.imshow(colors[labels][None], aspect="auto", interpolation="nearest")
    ax.set_yticks([])
    ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    for side in ("top", "right", "left"):
      ax.spines[side].set_visible(False)
  np.atleast_1d(axes)[-1].set_xlabel("frame")
  fig.suptitle(f"{video_id}: ground truth and predictions (ego view)",
               fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
