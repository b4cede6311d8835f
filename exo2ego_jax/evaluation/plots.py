"""Figures: segmentations of one recording as coloured bars, with a legend
of the classes they show."""

from __future__ import annotations

import math
import os
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
# pylint: disable=g-import-not-at-top
from matplotlib import patches
import matplotlib.pyplot as plt
import numpy as np
# pylint: enable=g-import-not-at-top


def read_predictions(path: str, class_names: Sequence[str]) -> np.ndarray:
  """Label ids of a predictions file (one class name per line)."""
  index = {name: i for i, name in enumerate(class_names)}
  with open(path) as f:
    names = [line.strip() for line in f if line.strip()]
  unknown = sorted(set(names) - set(index))
  if unknown:
    raise ValueError(
      f"{path} names classes outside the class table: {unknown[:5]}"
    )
  return np.array([index[n] for n in names], np.int64)


def class_colors(num_classes: int) -> np.ndarray:
  """A fixed colour per class id; background (id 0) alone is light grey."""
  palette = [
    plt.get_cmap(name)(i)
    for name in ("tab20", "tab20b", "tab20c")
    for i in range(20)
  ]
  palette = [c for c in palette if np.ptp(c[:3]) > 0.05]  # drop the greys
  colors = np.array(
    [palette[(i - 1) % len(palette)] for i in range(num_classes)]
  )
  colors[0] = (0.9, 0.9, 0.9, 1.0)
  return colors


def segmentation_bars(
  path: str,
  video_id: str,
  predictions: Mapping[str, str],
  class_names: Sequence[str],
  ground_truth: np.ndarray,
) -> None:
  """Ground truth and each method's prediction of `video_id` as bars.

  `predictions` maps a row name to the folder of its prediction files.
  """
  rows = [("ground truth", np.asarray(ground_truth))]
  for name, folder in predictions.items():
    rows.append(
      (
        name,
        read_predictions(os.path.join(folder, f"{video_id}.txt"), class_names),
      )
    )
  label_bars(
    path,
    rows,
    class_names,
    f"{video_id}: ground truth and predictions (ego view)",
  )


def legend_entries(
  rows: Sequence[tuple[str, np.ndarray]], class_names: Sequence[str]
) -> list[tuple[str, tuple]]:
  """(name, colour) of every class that some row shows, by class id, then
  "unscored" (white) if a row has frames labelled -100."""
  colors = class_colors(len(class_names))
  labels = np.concatenate([np.asarray(l).ravel() for _, l in rows])
  shown = np.unique(labels[labels >= 0])
  entries = [(class_names[i], tuple(colors[i])) for i in shown]
  if (labels < 0).any():
    entries.append(("unscored", (1.0, 1.0, 1.0, 1.0)))
  return entries


def label_bars(
  path: str,
  rows: Sequence[tuple[str, np.ndarray]],
  class_names: Sequence[str],
  title: str,
  gap_after: Sequence[int] = (),
) -> list[str]:
  """One horizontal bar of per-frame class colours per (name, labels) row;
  frames labelled -100 (not scored) are white. A thin gap follows the rows
  whose indices are in `gap_after` (to group rows by video). A legend under
  the bars names the colours of the classes shown; returns its names."""
  colors = np.concatenate(
    [class_colors(len(class_names)), np.ones((1, 4))]
  )  # index -1 (from -100): white
  entries = legend_entries(rows, class_names)
  columns = max(
    1,
    min(
      len(entries),
      12 // max(1, math.ceil(max(len(name) for name, _ in entries) / 12)),
    ),
  )
  legend_height = 0.19 * math.ceil(len(entries) / columns) + 0.15  # inches
  heights = []
  for i in range(len(rows)):
    heights += [1.0] + ([0.3] if i in gap_after else [])
  fig_height = 0.55 * sum(heights) + 0.8 + legend_height
  fig, axes = plt.subplots(
    len(heights),
    1,
    figsize=(12, fig_height),
    gridspec_kw={"height_ratios": heights},
  )
  axes = list(np.atleast_1d(axes))
  bar_axes = []
  for i in range(len(rows)):
    bar_axes.append(axes.pop(0))
    if i in gap_after:
      axes.pop(0).axis("off")
  width = max(len(labels) for _, labels in rows)
  for ax, (name, labels) in zip(bar_axes, rows):
    ids = np.where(np.asarray(labels) < 0, len(class_names), labels)
    ax.imshow(
      colors[ids][None],
      aspect="auto",
      interpolation="nearest",
      extent=(0, len(labels), 0, 1),
    )
    ax.set_xlim(0, width)
    ax.set_yticks([])
    ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    for side in ("top", "right", "left"):
      ax.spines[side].set_visible(False)
  for ax in bar_axes[:-1]:  # one frame axis, under the last bar
    ax.tick_params(labelbottom=False)
  bar_axes[-1].set_xlabel("frame")
  fig.suptitle(title, fontsize=10)
  legend = fig.legend(
    [
      patches.Patch(facecolor=color, edgecolor="0.6", linewidth=0.5)
      for _, color in entries
    ],
    [name for name, _ in entries],
    loc="lower center",
    ncol=columns,
    fontsize=8,
    frameon=False,
    handlelength=1.2,
    columnspacing=1.2,
  )
  fig.tight_layout(rect=(0, legend_height / fig_height, 1, 1))
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return [text.get_text() for text in legend.get_texts()]


def sweep_curves(
  path: str,
  values: Sequence[float],
  curves: Mapping[str, Sequence[tuple[float, float]]],
  references: Mapping[str, Mapping[str, float]],
  *,
  xlabel: str,
  title: str,
  label: str = "swept",
  metric_titles: Mapping[str, str] | None = None,
) -> None:
  """Score against a swept value, one panel per metric.

  `curves` maps a metric to (mean, std) per value (drawn with error bars);
  `metric_titles` names a metric on its axis (default: the metric's key);
  `references` maps a row name (exo-only, ego-oracle) to its mean per metric
  (drawn as horizontal lines).
  """
  styles = ("--", ":", "-.")
  fig, axes = plt.subplots(
    1, len(curves), figsize=(4.6 * len(curves), 3.6), squeeze=False
  )
  for ax, (metric, points) in zip(axes[0], curves.items()):
    means, stds = np.array(points, np.float64).reshape(-1, 2).T
    ax.errorbar(
      values,
      means,
      yerr=stds,
      marker="o",
      capsize=3,
      color="tab:blue",
      label=label,
    )
    for k, (name, scores) in enumerate(references.items()):
      ax.axhline(
        scores[metric],
        color="grey" if k else "tab:red",
        linestyle=styles[k % len(styles)],
        label=name,
      )
    ax.set_xlabel(xlabel)
    ax.set_ylabel((metric_titles or {}).get(metric, metric))
    ax.grid(alpha=0.3)
  axes[0][0].legend(fontsize=8, loc="best")
  fig.suptitle(title, fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def clock_maps(path: str, entries: Sequence[Mapping], columns: int = 3) -> None:
  """One panel per recording of a run's sync_estimates.json: the local
  matches (ego frame, exo frame) as points, the estimated clock as a line
  (dashed where the estimate fell back to the timestamps) and, where the
  dataset knows it, the true clock's line."""
  rows = max(1, math.ceil(len(entries) / columns))
  fig, axes = plt.subplots(
    rows, columns, figsize=(4 * columns, 3.2 * rows), squeeze=False
  )
  for ax, entry in zip(axes.flat, entries):
    matches = np.asarray(entry.get("matches") or np.zeros((0, 2)))
    end = max([1.0] + [float(m) for m in matches.reshape(-1)])
    t = np.array([0.0, end])
    if len(matches):
      ax.plot(matches[:, 0], matches[:, 1], ".", color="gray", label="matches")
    style = "--" if entry["fallback"] else "-"
    ax.plot(
      t,
      entry["rate"] * t + entry["offset"],
      style,
      label=f"estimated: {entry['rate']:.4f} t + {entry['offset']:.0f}",
    )
    if "true_rate" in entry:
      ax.plot(
        t,
        entry["true_rate"] * t + entry["true_offset"],
        ":",
        color="black",
        label=f"true: {entry['true_rate']:.4f} t + {entry['true_offset']:.0f}",
      )
    note = f" ({entry['fallback']})" if entry["fallback"] else ""
    ax.set_title(
      f"{entry['video_id']}, confidence {entry['confidence']:.1f}{note}",
      fontsize=8,
    )
    ax.set_xlabel("ego frame")
    ax.set_ylabel("exo frame")
    ax.legend(fontsize=6)
  for ax in list(axes.flat)[len(entries) :]:
    ax.axis("off")
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=110)
  plt.close(fig)
