"""Temporal action segmentation metrics: MoF, Edit and F1@{10,25,50}.

The field's conventions (MS-TCN / C2F-TCN evaluation code), stated explicitly:

* **MoF** (mean over frames) = frame accuracy over all scored frames of the split, in percent.
* **Edit** = 100 * (1 - Levenshtein(pred segment labels, gt segment labels) / max(len)),
  computed per video and averaged over videos. Both sequences without segments -> 100; exactly one
  without -> 0.
* **F1@t**: predicted segments are visited in temporal order; each one's best-IoU ground-truth
  segment *of the same label* is found (ties -> the earlier segment). It is a true positive if that
  IoU >= t and that ground-truth segment is not yet matched, else a false positive. Unmatched
  ground-truth segments are false negatives. TP/FP/FN are summed over the split, then
  F1 = 2PR / (P + R) in percent. tp + fp + fn == 0 ("nothing to find, nothing found") -> 100;
  otherwise tp == 0 -> 0.
* A segment is a maximal run of equal labels; it spans [start, end) with the exclusive end at
  i + 1 (the MS-TCN code ends segments at i, which shrinks every segment by one frame).
* Ground-truth frames labelled ``IGNORE_LABEL`` (-100, used for padding) are removed from both
  sequences before anything is scored.

Background classes are handled by one of three named policies (``BACKGROUND_POLICIES``):

* ``"exclude_background_segments"``: MoF over all frames; Edit and F1 only see segments whose label
  is not a background class, in both prediction and ground truth (a predicted background segment
  is neither a hit nor a false positive).
* ``"drop_background_frames"``: what the Exo2Ego reference evaluation does. Frames whose *ground
  truth* is background are removed from both sequences first; MoF, Edit and F1 are then computed on
  the remaining frames with every label kept, so a predicted background label is just a wrong
  label (and forms a false-positive segment). Removing frames joins the runs on either side:
  gt ``A bg A`` becomes one ``A`` segment. The paper's oracle script scores this way.
* ``"drop_background_frames_and_segments"``: what the paper's transfer scripts (model distillation,
  feature distillation, both) do: frames whose ground truth is background are removed first, as
  above; then Edit and F1 also exclude background segments (in practice the prediction's, since
  the ground truth has none left), as ``exclude_background_segments`` does. MoF is computed on the
  remaining frames with every label kept (a predicted background frame is a wrong frame).

A video with no scored frames (length 0, or nothing left after removing ignored/background frames)
contributes no frames and no segments and is left out of the Edit average; ``num_empty_videos``
counts such videos. A split with no scored frames has MoF 0.0 (not NaN, so the output stays valid
JSON) and ``num_frames == 0`` to show why; its Edit is 100 and its F1 is 100 (nothing to find).

All scores are Python floats in percent. Numpy only, so it runs on host next to any model.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Sequence

import numpy as np
from rapidfuzz.distance import Levenshtein

from exo2ego_jax.data.constants import IGNORE_LABEL

BACKGROUND_POLICIES = (
  "exclude_background_segments",
  "drop_background_frames",
  "drop_background_frames_and_segments",
)
# Summary key of F1@10 + F1@25 + F1@50 + Edit + MoF (every F1 threshold scored), the sum the
# published code selects its checkpoints by; usable as config.best_metric.
SCORE_SUM = "f1_edit_mof_sum"
DEFAULT_THRESHOLDS = (0.1, 0.25, 0.5)


# ------------------------------------------------------------------------------------------------
# Input checks.
# ------------------------------------------------------------------------------------------------


def _describe(video_id: Any) -> str:
  return "" if video_id is None else f"video {video_id!r}: "


def _as_labels(labels: Any, name: str, video_id: Any = None) -> np.ndarray:
  """Returns `labels` as a 1-D integer array, or raises ValueError naming the video."""
  try:
    array = np.asarray(labels)
  except Exception as e:  # e.g. ragged nested lists
    raise ValueError(
      f"{_describe(video_id)}{name} is not an array of labels: {e}"
    ) from e
  if array.ndim != 1:
    raise ValueError(
      f"{_describe(video_id)}{name} must be a 1-D sequence of frame labels, got shape "
      f"{array.shape}"
    )
  if (
    array.size == 0
  ):  # np.asarray([]) is float64; an empty sequence has no bad values.
    return array.astype(np.int64)
  if not np.issubdtype(array.dtype, np.integer):
    raise ValueError(
      f"{_describe(video_id)}{name} must hold integer class ids, got dtype {array.dtype} "
      "(cast with .astype(int) after checking the values)"
    )
  return array


def _prepare(
  pred: Any, gt: Any, video_id: Any = None
) -> tuple[np.ndarray, np.ndarray]:
  """Checks a (pred, gt) pair and drops the frames whose ground truth is IGNORE_LABEL."""
  pred = _as_labels(pred, "prediction", video_id)
  gt = _as_labels(gt, "ground truth", video_id)
  if pred.shape[0] != gt.shape[0]:
    raise ValueError(
      f"{_describe(video_id)}prediction has {pred.shape[0]} frames but ground truth has "
      f"{gt.shape[0]}"
    )
  keep = gt != IGNORE_LABEL
  if not keep.all():
    pred, gt = pred[keep], gt[keep]
  return pred, gt


def _as_classes(
  classes: Iterable[Any], name: str = "background classes"
) -> tuple[int, ...]:
  if isinstance(classes, (int, np.integer)):
    classes = (classes,)
  out = []
  for c in classes:
    if isinstance(c, (bool, np.bool_)) or not isinstance(c, (int, np.integer)):
      raise ValueError(f"{name} must be integer class ids, got {c!r}")
    out.append(int(c))
  return tuple(sorted(set(out)))


def _as_thresholds(thresholds: Iterable[float]) -> tuple[float, ...]:
  if isinstance(thresholds, (int, float, np.number)):
    thresholds = (thresholds,)
  out = tuple(float(t) for t in thresholds)
  if not out:
    raise ValueError("need at least one F1 IoU threshold")
  bad = [t for t in out if not 0.0 < t <= 1.0]
  if bad:
    raise ValueError(f"F1 IoU thresholds must lie in (0, 1], got {bad}")
  names = [threshold_name(t) for t in out]
  if len(set(names)) != len(names):
    raise ValueError(f"duplicate F1 thresholds: {out}")
  return out


def threshold_name(threshold: float) -> str:
  """0.1 -> 'f1@10', 0.25 -> 'f1@25', 0.125 -> 'f1@12.5'."""
  return f"f1@{round(threshold * 100, 6):g}"


# ------------------------------------------------------------------------------------------------
# Segments, Edit and F1 counts for one video.
# ------------------------------------------------------------------------------------------------


def segments(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Splits frame labels into runs of equal labels.

  Returns (labels, starts, ends): one entry per segment, `ends` exclusive (a run over frames
  i..j has start i and end j + 1). An empty input gives three empty arrays.
  """
  labels = _as_labels(labels, "labels")
  n = labels.shape[0]
  if n == 0:
    empty = np.zeros(0, np.int64)
    return labels[:0], empty, empty.copy()
  change = np.flatnonzero(labels[1:] != labels[:-1]) + 1
  starts = np.concatenate([[0], change]).astype(np.int64)
  ends = np.concatenate([change, [n]]).astype(np.int64)
  return labels[starts], starts, ends


def _foreground_segments(labels: np.ndarray, background: Sequence[int]):
  seg_labels, starts, ends = segments(labels)
  if background:
    keep = ~np.isin(seg_labels, background)
    seg_labels, starts, ends = seg_labels[keep], starts[keep], ends[keep]
  return seg_labels, starts, ends


def _edit(pred: np.ndarray, gt: np.ndarray, background: Sequence[int]) -> float:
  pred_labels = _foreground_segments(pred, background)[0]
  gt_labels = _foreground_segments(gt, background)[0]
  longest = max(len(pred_labels), len(gt_labels))
  if longest == 0:
    return 100.0
  # Recode labels as small non-negative Python ints: rapidfuzz then compares plain values
  # whatever the input dtype or sign (Python's hash() maps -1 and -2 alike).
  _, codes = np.unique(
    np.concatenate([pred_labels, gt_labels]), return_inverse=True
  )
  codes = codes.reshape(-1).tolist()
  distance = Levenshtein.distance(
    codes[: len(pred_labels)], codes[len(pred_labels) :]
  )
  return float(100.0 * (1.0 - distance / longest))


def _f1_counts(
  pred: np.ndarray,
  gt: np.ndarray,
  thresholds: Sequence[float],
  background: Sequence[int],
) -> np.ndarray:
  """(len(thresholds), 3) int64 array of tp, fp, fn for one prepared video."""
  p_labels, p_starts, p_ends = _foreground_segments(pred, background)
  g_labels, g_starts, g_ends = _foreground_segments(gt, background)
  n_pred, n_gt = len(p_labels), len(g_labels)
  counts = np.zeros((len(thresholds), 3), np.int64)
  counts[:, 1], counts[:, 2] = n_pred, n_gt  # Start from "no hits".
  if n_pred == 0 or n_gt == 0:
    return counts

  # Segments of one sequence are disjoint and sorted, so the gt segments that overlap predicted
  # segment p are the contiguous range [first[p], stop[p]); there are at most n_pred + n_gt - 1
  # overlapping pairs in all. Any non-overlapping pair has IoU <= 0, below every threshold.
  first = np.searchsorted(
    g_ends, p_starts, side="right"
  )  # first gt ending after p starts
  stop = np.searchsorted(
    g_starts, p_ends, side="left"
  )  # first gt starting at/after p's end
  num = np.maximum(stop - first, 0)
  pair_pred = np.repeat(np.arange(n_pred), num)
  pair_gt = np.repeat(first - np.cumsum(num) + num, num) + np.arange(num.sum())
  same = p_labels[pair_pred] == g_labels[pair_gt]
  pair_pred, pair_gt = pair_pred[same], pair_gt[same]
  if pair_pred.size == 0:
    return counts
  inter = np.minimum(p_ends[pair_pred], g_ends[pair_gt]) - np.maximum(
    p_starts[pair_pred], g_starts[pair_gt]
  )
  union = np.maximum(p_ends[pair_pred], g_ends[pair_gt]) - np.minimum(
    p_starts[pair_pred], g_starts[pair_gt]
  )
  iou = inter / union

  # Best gt per predicted segment: highest IoU, ties to the earlier gt segment (like argmax).
  order = np.lexsort((pair_gt, -iou, pair_pred))
  pair_pred, pair_gt, iou = pair_pred[order], pair_gt[order], iou[order]
  is_best = np.concatenate([[True], pair_pred[1:] != pair_pred[:-1]])
  best_gt, best_iou = pair_gt[is_best], iou[is_best]

  # Greedy matching in temporal order: the first candidate aimed at a gt segment takes it, later
  # ones are false positives. So tp = number of distinct gt segments aimed at by candidates.
  for k, threshold in enumerate(thresholds):
    tp = np.unique(best_gt[best_iou >= threshold]).size
    counts[k] = (tp, n_pred - tp, n_gt - tp)
  return counts


def edit_score(pred, gt, background=()) -> float:
  """Segmental edit score (percent) of one video; background segments left out of both."""
  pred, gt = _prepare(pred, gt)
  return _edit(pred, gt, _as_classes(background))


def f1_counts(
  pred, gt, thresholds=DEFAULT_THRESHOLDS, background=()
) -> np.ndarray:
  """tp, fp, fn per IoU threshold for one video: int64 array of shape (len(thresholds), 3)."""
  pred, gt = _prepare(pred, gt)
  return _f1_counts(
    pred, gt, _as_thresholds(thresholds), _as_classes(background)
  )


def f1_from_counts(counts: np.ndarray) -> np.ndarray:
  """F1 in percent from (..., 3) tp, fp, fn counts.

  100 where tp + fp + fn == 0 (nothing to find, nothing found), 0 where only tp == 0.
  """
  counts = np.asarray(counts, np.float64)
  tp, fp, fn = counts[..., 0], counts[..., 1], counts[..., 2]
  total = tp + fp + fn
  # 2PR / (P + R) == 2tp / (2tp + fp + fn); the denominator is 0 only when total is.
  f1 = 200.0 * tp / np.where(total > 0, 2.0 * tp + fp + fn, 1.0)
  return np.where(total > 0, f1, 100.0)


# ------------------------------------------------------------------------------------------------
# Split-level accumulation.
# ------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class SegmentationScores:
  """Accumulates videos of one split and reports MoF, Edit and F1 under a named background policy.

  Usage::

      scores = SegmentationScores(background_classes=(0,),
                                  background_policy="drop_background_frames")
      for video_id, pred, gt in split:
          scores.add(video_id, pred, gt)   # returns that video's scores
      print(scores.summary())

  Video ids must be unique within a split (bytes ids, as tfds gives them, are decoded).
  """

  background_classes: Sequence[int] = ()
  background_policy: str = "exclude_background_segments"
  thresholds: Sequence[float] = DEFAULT_THRESHOLDS

  def __post_init__(self):
    if self.background_policy not in BACKGROUND_POLICIES:
      raise ValueError(
        f"unknown background_policy {self.background_policy!r}; valid policies: "
        f"{', '.join(BACKGROUND_POLICIES)}"
      )
    self.background_classes = _as_classes(self.background_classes)
    self.thresholds = _as_thresholds(self.thresholds)
    self._names = tuple(threshold_name(t) for t in self.thresholds)
    self._videos = []
    self._seen = set()
    self._correct = 0
    self._frames = 0
    self._counts = np.zeros((len(self.thresholds), 3), np.int64)
    self._edit_sum = 0.0
    self._edit_videos = 0

  def add(self, video_id, pred, gt) -> dict:
    """Scores one video, adds it to the split and returns its scores.

    Returns {"video_id", "num_frames", "mof", "edit", "f1@10", "f1@25", "f1@50"} (one F1 key
    per threshold). A video with no scored frames gets mof 0.0, edit 100.0 and F1 100.0 and is
    left out of the split's Edit average.
    """
    if isinstance(
      video_id, bytes
    ):  # tfds gives bytes ids; keep the output JSON-friendly.
      video_id = video_id.decode("utf-8", errors="replace")
    elif isinstance(video_id, np.ndarray) and video_id.ndim == 0:
      video_id = video_id.item()
      if isinstance(video_id, bytes):
        video_id = video_id.decode("utf-8", errors="replace")
    if video_id in self._seen:
      raise ValueError(f"video {video_id!r} was already added to this split")
    pred, gt = _prepare(pred, gt, video_id)

    if self.background_policy.startswith("drop_background_frames"):
      if self.background_classes:
        keep = ~np.isin(gt, self.background_classes)
        pred, gt = pred[keep], gt[keep]
    if self.background_policy == "drop_background_frames":
      segment_background = ()
    else:
      segment_background = self.background_classes

    num_frames = int(gt.shape[0])
    correct = int(np.count_nonzero(pred == gt))
    counts = _f1_counts(pred, gt, self.thresholds, segment_background)
    edit = _edit(pred, gt, segment_background)

    self._seen.add(video_id)
    self._correct += correct
    self._frames += num_frames
    self._counts += counts
    if num_frames > 0:
      self._edit_sum += edit
      self._edit_videos += 1

    video = {
      "video_id": video_id,
      "num_frames": num_frames,
      "mof": 100.0 * correct / num_frames if num_frames else 0.0,
      "edit": edit,
    }
    video.update(zip(self._names, (float(f) for f in f1_from_counts(counts))))
    self._videos.append(video)
    return dict(video)

  def summary(self) -> dict:
    """Split-level scores (percent) plus what they were computed over."""
    out = {
      "mof": 100.0 * self._correct / self._frames if self._frames else 0.0,
      "edit": self._edit_sum / self._edit_videos
      if self._edit_videos
      else 100.0,
    }
    out.update(
      zip(self._names, (float(f) for f in f1_from_counts(self._counts)))
    )
    # The published code's model-selection score (its "total_score").
    out[SCORE_SUM] = (
      sum(out[name] for name in self._names) + out["edit"] + out["mof"]
    )
    out.update(
      num_videos=len(self._videos),
      num_empty_videos=len(self._videos) - self._edit_videos,
      num_frames=self._frames,
      background_policy=self.background_policy,
      background_classes=list(self.background_classes),
    )
    return out

  def per_video(self) -> list[dict]:
    """One dict per added video, in the order added (see `add`)."""
    return [dict(v) for v in self._videos]


def score_videos(videos: Iterable[tuple[Any, Any, Any]], **kwargs) -> dict:
  """Scores (video_id, pred, gt) triples; `summary()` plus a "per_video" list.

  Keyword arguments are those of `SegmentationScores`.
  """
  scores = SegmentationScores(**kwargs)
  for video_id, pred, gt in videos:
    scores.add(video_id, pred, gt)
  out = scores.summary()
  out["per_video"] = scores.per_video()
  return out
