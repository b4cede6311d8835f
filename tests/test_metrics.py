"""Tests for exo2ego_jax.evaluation.metrics: hand-computed cases, edge cases and brute-force cross-checks."""

import json

import numpy as np
import pytest

from exo2ego_jax.evaluation import metrics
from exo2ego_jax.evaluation.metrics import (
  BACKGROUND_POLICIES,
  IGNORE_LABEL,
  SegmentationScores,
  edit_score,
  f1_counts,
  score_videos,
  segments,
)

approx = pytest.approx


# ------------------------------------------------------------------------------------------------
# Brute-force references: literal transcriptions of the MS-TCN evaluation code, with the i + 1
# segment-end fix, pure Python loops only.
# ------------------------------------------------------------------------------------------------


def brute_segments(labels, background=()):
  out = []  # (label, start, end)
  for i, label in enumerate(labels):
    if i == 0 or label != labels[i - 1]:
      out.append([label, i, i + 1])
    else:
      out[-1][2] = i + 1
  return [tuple(s) for s in out if s[0] not in background]


def brute_levenshtein(a, b):
  d = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
  for i in range(len(a) + 1):
    d[i][0] = i
  for j in range(len(b) + 1):
    d[0][j] = j
  for i in range(1, len(a) + 1):
    for j in range(1, len(b) + 1):
      d[i][j] = min(
        d[i - 1][j] + 1,
        d[i][j - 1] + 1,
        d[i - 1][j - 1] + (a[i - 1] != b[j - 1]),
      )
  return d[len(a)][len(b)]


def brute_edit(pred, gt, background=()):
  p = [s[0] for s in brute_segments(pred, background)]
  g = [s[0] for s in brute_segments(gt, background)]
  if not p and not g:
    return 100.0
  return 100.0 * (1 - brute_levenshtein(p, g) / max(len(p), len(g)))


def brute_f1_counts(pred, gt, threshold, background=()):
  p_segs = brute_segments(pred, background)
  g_segs = brute_segments(gt, background)
  hits = [False] * len(g_segs)
  tp = fp = 0
  for pl, ps, pe in p_segs:
    best, best_iou = None, -np.inf
    for j, (gl, gs, ge) in enumerate(g_segs):
      inter = min(pe, ge) - max(ps, gs)
      union = max(pe, ge) - min(ps, gs)
      iou = (1.0 * inter / union) * (pl == gl)
      if iou > best_iou:  # strict: ties go to the first, like np.argmax
        best, best_iou = j, iou
    if best is not None and best_iou >= threshold and not hits[best]:
      tp += 1
      hits[best] = True
    else:
      fp += 1
  return tp, fp, len(g_segs) - sum(hits)


def f1(tp, fp, fn):
  if tp + fp + fn == 0:
    return 100.0
  if tp == 0:
    return 0.0
  precision, recall = tp / (tp + fp), tp / (tp + fn)
  return 100.0 * 2 * precision * recall / (precision + recall)


# ------------------------------------------------------------------------------------------------
# Segments.
# ------------------------------------------------------------------------------------------------


def test_segments_runs_with_exclusive_ends():
  labels, starts, ends = segments(np.array([4, 4, 7, 7, 7, 4]))
  np.testing.assert_array_equal(labels, [4, 7, 4])
  np.testing.assert_array_equal(starts, [0, 2, 5])
  np.testing.assert_array_equal(ends, [2, 5, 6])  # last frame index + 1


def test_segments_empty_and_single():
  labels, starts, ends = segments(np.array([], np.int32))
  assert labels.size == starts.size == ends.size == 0
  labels, starts, ends = segments([3])
  assert (labels.tolist(), starts.tolist(), ends.tolist()) == ([3], [0], [1])


# ------------------------------------------------------------------------------------------------
# Hand-computed cases.
# ------------------------------------------------------------------------------------------------

# frame:   0  1  2  3  4  5  6  7  8  9
GT_10 = [1, 1, 1, 2, 2, 2, 2, 3, 3, 3]  # 1:[0,3)  2:[3,7)  3:[7,10)
PRED_10 = [1, 1, 2, 2, 2, 1, 1, 3, 3, 3]  # 1:[0,2)  2:[2,5)  1:[5,7)  3:[7,10)


def test_ten_frame_example_by_hand():
  # MoF: frames 2, 5, 6 are wrong -> 7/10.
  # Edit: pred labels [1,2,1,3], gt [1,2,3]: one deletion -> 100 * (1 - 1/4) = 75.
  # F1, predicted segments in order:
  #   1:[0,2) vs gt 1:[0,3): inter 2, union 3, IoU 0.667 -> TP at 10/25/50.
  #   2:[2,5) vs gt 2:[3,7): inter 2 (frames 3, 4), union 5 ([2,7)), IoU 0.4
  #           -> TP at 10/25, FP at 50.
  #   1:[5,7) overlaps no gt segment of label 1 (gt 1 is [0,3)) -> FP.
  #   3:[7,10) vs gt 3:[7,10): IoU 1 -> TP.
  # @10, @25: tp 3, fp 1, fn 0 -> F1 = 2*3 / (2*3 + 1 + 0) = 6/7 = 85.714
  # @50:      tp 2, fp 2, fn 1 (gt 2 unmatched) -> F1 = 4 / (4 + 3) = 57.143
  assert edit_score(PRED_10, GT_10) == approx(75.0)
  np.testing.assert_array_equal(
    f1_counts(PRED_10, GT_10), [[3, 1, 0], [3, 1, 0], [2, 2, 1]]
  )
  out = score_videos([("v10", PRED_10, GT_10)])
  assert out["mof"] == approx(70.0)
  assert out["edit"] == approx(75.0)
  assert out["f1@10"] == approx(600 / 7)
  assert out["f1@25"] == approx(600 / 7)
  assert out["f1@50"] == approx(400 / 7)
  assert out["num_frames"] == 10 and out["num_videos"] == 1
  assert out["per_video"][0]["video_id"] == "v10"
  assert out["per_video"][0]["f1@50"] == approx(400 / 7)


def test_segment_end_is_i_plus_one():
  # gt label 1 on [0,2), pred label 1 on [1,3): inter 1, union 3 -> IoU exactly 1/3.
  # With ends at i (the MS-TCN bug) they would be [0,1) and [1,2): IoU 0, never a TP.
  # The label-2 segments (gt [2,3), pred [0,1)) do not overlap: one FP and one FN everywhere.
  gt = [1, 1, 2]
  pred = [2, 1, 1]
  counts = f1_counts(pred, gt, thresholds=(0.1, 1 / 3, 0.34))
  np.testing.assert_array_equal(counts, [[1, 1, 1], [1, 1, 1], [0, 2, 2]])


def test_over_segmented_prediction():
  # gt: one segment 5:[0,12). pred: 5:[0,4) IoU 4/12, 7:[4,5) wrong label, 5:[5,12) IoU 7/12.
  # @10/@25: the first label-5 segment takes the gt segment; the second aims at the same,
  #          already matched gt -> FP; the 7 -> FP. tp 1, fp 2, fn 0 -> F1 = 2/4 = 50.
  # @50: the first (1/3) is below threshold -> FP; the second (7/12) takes it -> same counts.
  # Edit: [5,7,5] vs [5]: 2 deletions / 3 -> 33.33.  MoF: 11/12.
  gt = [5] * 12
  pred = [5, 5, 5, 5, 7, 5, 5, 5, 5, 5, 5, 5]
  np.testing.assert_array_equal(f1_counts(pred, gt), [[1, 2, 0]] * 3)
  out = score_videos([("over", pred, gt)])
  assert out["edit"] == approx(100 / 3)
  assert out["mof"] == approx(1100 / 12)
  assert out["f1@10"] == out["f1@25"] == out["f1@50"] == approx(50.0)


def test_label_mismatch_is_never_matched():
  # Perfect boundaries, wrong labels: IoU with the same-label gt segment is what counts, and
  # there is none. tp 0, fp 2, fn 2 -> F1 0. Edit: [2,1] vs [1,2]: 2 substitutions -> 0.
  gt = [1, 1, 1, 2, 2, 2]
  pred = [2, 2, 2, 1, 1, 1]
  np.testing.assert_array_equal(f1_counts(pred, gt), [[0, 2, 2]] * 3)
  assert edit_score(pred, gt) == approx(0.0)
  assert score_videos([("swap", pred, gt)])["f1@10"] == 0.0


def test_double_match_prevention():
  # gt: 1 on all 10 frames. pred: 1:[0,4) (IoU .4), background 0 at frame 4, 1:[5,10) (IoU .5).
  # Both predicted label-1 segments aim at the single gt segment; only the first is a TP.
  # With background 0 excluded: tp 1, fp 1, fn 0 -> F1 = 2/3.
  # At 0.45 the first is below threshold and the second takes the gt segment: still tp 1, fp 1.
  gt = [1] * 10
  pred = [1, 1, 1, 1, 0, 1, 1, 1, 1, 1]
  np.testing.assert_array_equal(
    f1_counts(pred, gt, thresholds=(0.1, 0.45), background=(0,)),
    [[1, 1, 0], [1, 1, 0]],
  )
  # Without a background class the 0 segment is one more FP.
  np.testing.assert_array_equal(
    f1_counts(pred, gt, thresholds=(0.1,)), [[1, 2, 0]]
  )
  assert score_videos([("d", pred, gt)], background_classes=(0,))[
    "f1@10"
  ] == approx(200 / 3)


def test_best_iou_already_taken_is_a_false_positive():
  # Reference semantics: a prediction is compared with its *best* same-label gt segment only.
  # gt (background 0 excluded): 1:[0,8), 1:[9,10).  pred: 1:[0,2), 2:[2,3), 1:[3,10).
  #   1:[0,2):  IoU with gt 1:[0,8) = 2/8 = .25 -> TP at 0.1.
  #   2:[2,3):  no label-2 gt -> FP.
  #   1:[3,10): IoU with [0,8) = 5/10 = .5 (best), with [9,10) = 1/7 = .14. The best one is
  #             already taken -> FP, even though [9,10) is free and above 0.1.
  #   tp 1, fp 2, fn 1 (gt [9,10) never matched).
  gt = [1] * 8 + [0] + [1]
  pred = [1, 1, 2] + [1] * 7
  np.testing.assert_array_equal(
    f1_counts(pred, gt, thresholds=(0.1,), background=(0,)), [[1, 2, 1]]
  )
  assert brute_f1_counts(pred, gt, 0.1, background=(0,)) == (1, 2, 1)


def test_iou_ties_go_to_the_earlier_gt_segment():
  # gt: 1:[0,2), 2:[2,3), 1:[3,9).  pred: 1:[0,6), 2:[6,7), 1:[7,9).
  #   1:[0,6): IoU with [0,2) = 2/6, with [3,9) = 3/9: a tie at 1/3 -> the earlier, [0,2) (TP).
  #   2:[6,7): the label-2 gt [2,3) does not overlap -> FP.
  #   1:[7,9): IoU with [3,9) = 2/6 -> TP (it would be an FP had the tie gone to [3,9)).
  #   tp 2, fp 1, fn 1 (gt 2:[2,3)).
  gt = [1, 1, 2, 1, 1, 1, 1, 1, 1]
  pred = [1, 1, 1, 1, 1, 1, 2, 1, 1]
  np.testing.assert_array_equal(
    f1_counts(pred, gt, thresholds=(0.1,)), [[2, 1, 1]]
  )
  assert brute_f1_counts(pred, gt, 0.1) == (2, 1, 1)


# ------------------------------------------------------------------------------------------------
# Background policies.
# ------------------------------------------------------------------------------------------------

# frame:  0  1  2  3  4  5  6  7  8  9
BG_GT = [0, 0, 1, 1, 1, 0, 0, 2, 2, 0]
BG_PRED = [0, 1, 1, 1, 0, 0, 2, 2, 2, 2]


def test_exclude_background_segments_by_hand():
  # MoF over all 10 frames: wrong at 1, 4, 6, 9 -> 6/10 = 60.
  # Foreground segments: gt 1:[2,5), 2:[7,9); pred 1:[1,4), 2:[6,10).
  #   1: inter [2,4) = 2, union [1,5) = 4 -> .5;  2: inter [7,9) = 2, union [6,10) = 4 -> .5.
  #   Both TP at 10/25/50 (IoU >= .5 counts) -> F1 100. Edit [1,2] vs [1,2] -> 100.
  out = score_videos(
    [("bg", BG_PRED, BG_GT)],
    background_classes=[0],
    background_policy="exclude_background_segments",
  )
  assert out["background_policy"] == "exclude_background_segments"
  assert out["background_classes"] == [0]
  assert out["num_frames"] == 10
  assert out["mof"] == approx(60.0)
  assert out["edit"] == approx(100.0)
  assert out["f1@10"] == out["f1@25"] == out["f1@50"] == approx(100.0)


def test_drop_background_frames_by_hand():
  # Frames whose gt is background (0) are dropped: keep 2, 3, 4, 7, 8.
  #   gt -> [1,1,1,2,2], pred -> [1,1,0,2,2]. MoF 4/5 = 80.
  #   Segments (all labels kept): gt 1:[0,3), 2:[3,5); pred 1:[0,2), 0:[2,3), 2:[3,5).
  #   1: IoU 2/3 -> TP; 0: no gt segment of label 0 -> FP; 2: IoU 1 -> TP.
  #   tp 2, fp 1, fn 0 -> F1 = 4/5 = 80 at every threshold.
  #   Edit [1,0,2] vs [1,2]: one deletion / 3 -> 66.67.
  out = score_videos(
    [("bg", BG_PRED, BG_GT)],
    background_classes=[0],
    background_policy="drop_background_frames",
  )
  assert out["background_policy"] == "drop_background_frames"
  assert out["num_frames"] == 5
  assert out["mof"] == approx(80.0)
  assert out["edit"] == approx(200 / 3)
  assert out["f1@10"] == out["f1@25"] == out["f1@50"] == approx(80.0)


def test_drop_background_frames_and_segments_by_hand():
  # The paper's transfer-script rule. Same frames as above are dropped:
  #   gt -> [1,1,1,2,2], pred -> [1,1,0,2,2]. MoF 4/5 = 80 (the predicted background frame
  #   is a wrong frame). Segments without background: gt 1:[0,3), 2:[3,5);
  #   pred 1:[0,2), 2:[3,5) (the predicted background segment is neither hit nor FP).
  #   1: IoU 2/3 -> TP at 0.1, 0.25, 0.5; 2: IoU 1 -> TP. F1 = 100.
  #   Edit [1,2] vs [1,2] -> 100.
  out = score_videos(
    [("bg", BG_PRED, BG_GT)],
    background_classes=[0],
    background_policy="drop_background_frames_and_segments",
  )
  assert out["background_policy"] == "drop_background_frames_and_segments"
  assert out["num_frames"] == 5
  assert out["mof"] == approx(80.0)
  assert out["edit"] == approx(100.0)
  assert out["f1@10"] == out["f1@25"] == out["f1@50"] == approx(100.0)


def test_drop_background_frames_joins_runs():
  # gt 1 bg 1 -> after dropping frame 1 both become [1, 1]: one segment each, all perfect.
  # Under the other policy the gt has two label-1 segments and the prediction one.
  gt, pred = [1, 0, 1], [1, 1, 1]
  drop = score_videos(
    [("j", pred, gt)],
    background_classes=[0],
    background_policy="drop_background_frames",
  )
  assert (
    drop["edit"] == 100.0 and drop["f1@50"] == 100.0 and drop["mof"] == 100.0
  )
  excl = score_videos([("j", pred, gt)], background_classes=[0])
  assert excl["edit"] == approx(50.0)  # [1] vs [1, 1]
  assert excl["mof"] == approx(200 / 3)


def test_unknown_policy_lists_valid_ones():
  with pytest.raises(ValueError) as err:
    SegmentationScores(background_policy="ignore_background")
  for name in BACKGROUND_POLICIES:
    assert name in str(err.value)


def test_bad_background_classes_and_thresholds():
  with pytest.raises(ValueError, match="background"):
    SegmentationScores(background_classes=["bg"])
  with pytest.raises(ValueError, match="thresholds"):
    SegmentationScores(thresholds=(0.0, 0.5))
  with pytest.raises(ValueError, match="threshold"):
    SegmentationScores(thresholds=())


def test_custom_thresholds_are_named():
  out = score_videos([("v", PRED_10, GT_10)], thresholds=(0.75, 0.125))
  # At .75 only 3:[7,10) (IoU 1) is a TP; 1:[0,2) (.667) and 2:[2,5) (.4) fall short.
  # tp 1, fp 3, fn 2 -> F1 = 2 / (2 + 5) = 28.57.
  assert out["f1@75"] == approx(200 / 7)
  assert "f1@12.5" in out and "f1@10" not in out


# ------------------------------------------------------------------------------------------------
# Ignore label.
# ------------------------------------------------------------------------------------------------


def test_ignore_label_frames_are_removed():
  # Padding frames (-100) are dropped from both sequences: what is left matches perfectly.
  gt = [1, 1, IGNORE_LABEL, IGNORE_LABEL, 2, 2]
  pred = [1, 1, 2, 2, 2, 2]
  out = score_videos([("pad", pred, gt)])
  assert out["num_frames"] == 4
  assert out["mof"] == 100.0 and out["edit"] == 100.0 and out["f1@50"] == 100.0
  # Removing an ignored frame inside a run joins it: [1, -100, 1] scores as [1, 1].
  assert edit_score([1, 5, 1], [1, IGNORE_LABEL, 1]) == 100.0
  np.testing.assert_array_equal(
    f1_counts([1, 5, 1], [1, IGNORE_LABEL, 1]), [[1, 0, 0]] * 3
  )


# ------------------------------------------------------------------------------------------------
# Edge cases.
# ------------------------------------------------------------------------------------------------


def test_empty_video_contributes_nothing():
  scores = SegmentationScores()
  empty = scores.add("empty", np.array([], np.int64), [])
  assert empty == {
    "video_id": "empty",
    "num_frames": 0,
    "mof": 0.0,
    "edit": 100.0,
    "f1@10": 100.0,
    "f1@25": 100.0,
    "f1@50": 100.0,
  }
  scores.add("v10", PRED_10, GT_10)
  out = scores.summary()
  alone = score_videos([("v10", PRED_10, GT_10)])
  for key in ("mof", "edit", "f1@10", "f1@25", "f1@50", "num_frames"):
    assert out[key] == alone[key], key
  assert out["num_videos"] == 2 and out["num_empty_videos"] == 1


def test_empty_split():
  out = score_videos([])
  # Documented: MoF 0.0 with num_frames 0 (not NaN); nothing to find, nothing found.
  assert out["mof"] == 0.0 and out["num_frames"] == 0 and out["num_videos"] == 0
  assert out["edit"] == 100.0 and out["f1@10"] == 100.0
  assert out["per_video"] == []
  json.dumps(out, allow_nan=False)


def test_all_frames_ignored_or_background():
  out = score_videos([("pad", [3, 3], [IGNORE_LABEL, IGNORE_LABEL])])
  assert (
    out["num_frames"] == 0
    and out["num_empty_videos"] == 1
    and out["mof"] == 0.0
  )
  out = score_videos(
    [("bg", [0, 1], [0, 0])],
    background_classes=[0],
    background_policy="drop_background_frames",
  )
  assert out["num_frames"] == 0 and out["num_empty_videos"] == 1


def test_no_foreground_segments():
  # Both sides background only: edit 100, no segments anywhere -> F1 100.
  assert edit_score([0, 0, 0], [0, 0, 0], background=[0]) == 100.0
  np.testing.assert_array_equal(
    f1_counts([0, 0, 0], [0, 0, 0], background=[0]), [[0, 0, 0]] * 3
  )
  out = score_videos([("bg", [0, 0, 0], [0, 0, 0])], background_classes=[0])
  assert out["edit"] == 100.0 and out["f1@10"] == 100.0 and out["mof"] == 100.0
  # Only the prediction has a segment: edit 0, tp 0 fp 1 -> F1 0.
  assert edit_score([0, 4, 0], [0, 0, 0], background=[0]) == 0.0
  np.testing.assert_array_equal(
    f1_counts([0, 4, 0], [0, 0, 0], background=[0]), [[0, 1, 0]] * 3
  )
  # Only the ground truth has one: edit 0, fn 1 -> F1 0.
  assert edit_score([0, 0, 0], [0, 4, 0], background=[0]) == 0.0
  out = score_videos([("miss", [0, 0, 0], [0, 4, 0])], background_classes=[0])
  assert out["edit"] == 0.0 and out["f1@50"] == 0.0


def test_length_mismatch_names_video_and_lengths():
  with pytest.raises(ValueError) as err:
    score_videos([("P01_take3", [1, 2, 3, 4, 5], [1, 2, 3, 4])])
  message = str(err.value)
  assert "P01_take3" in message and "5" in message and "4" in message
  with pytest.raises(ValueError, match="3 frames.*2"):
    edit_score([1, 2, 3], [1, 2])


@pytest.mark.parametrize(
  "pred,gt,what",
  [
    (np.array([1.0, 2.0]), [1, 2], "integer"),
    ([1, 2], np.array([0.5, 2.0]), "integer"),
    (np.array([[1, 2]]), [1, 2], "1-D"),
    (np.array(3), [3], "1-D"),
    (np.array([True, False]), [1, 0], "integer"),
  ],
)
def test_bad_inputs_name_the_video(pred, gt, what):
  with pytest.raises(ValueError) as err:
    SegmentationScores().add("vid_7", pred, gt)
  assert "vid_7" in str(err.value) and what in str(err.value)


def test_duplicate_video_id_rejected_and_bytes_ids_decoded():
  scores = SegmentationScores()
  assert scores.add(b"P02", [1], [1])["video_id"] == "P02"
  with pytest.raises(ValueError, match="P02"):
    scores.add("P02", [1], [1])
  assert scores.summary()["num_videos"] == 1


def test_split_sums_counts_instead_of_averaging_f1():
  # A: perfect, tp 1 fp 0 fn 0 (per-video F1 100). B: gt [1,1,1], pred [2,3,2]: tp 0, fp 3, fn 1
  # (per-video F1 0). Mean of per-video F1 would be 50; the split sums counts:
  # tp 1, fp 3, fn 1 -> F1 = 2 / (2 + 4) = 33.33. Edit IS averaged: (100 + 0) / 2 = 50.
  # MoF pools frames: (2 + 0) / (2 + 3) = 40.
  out = score_videos([("A", [4, 4], [4, 4]), ("B", [2, 3, 2], [1, 1, 1])])
  assert [v["f1@10"] for v in out["per_video"]] == [100.0, 0.0]
  assert out["f1@10"] == out["f1@25"] == out["f1@50"] == approx(100 / 3)
  assert out["edit"] == approx(50.0)
  assert out["mof"] == approx(40.0)


def test_negative_labels_compare_by_value():
  # Python hashes -1 and -2 alike; the edit distance must still see two different labels.
  assert edit_score([-1, -1], [-2, -2]) == 0.0
  assert edit_score(
    np.array([7, -1], np.int8), np.array([7, -2], np.int8)
  ) == approx(50.0)


def test_output_is_json_friendly():
  out = score_videos(
    [("v10", np.array(PRED_10, np.int32), np.array(GT_10, np.int64))],
    background_classes=np.array([3]),
  )
  json.dumps(out, allow_nan=False)
  for key in ("mof", "edit", "f1@10", "f1@25", "f1@50"):
    assert type(out[key]) is float
    assert type(out["per_video"][0][key]) is float
  assert type(out["num_frames"]) is int and out["background_classes"] == [3]


# ------------------------------------------------------------------------------------------------
# Cross-checks against the brute-force references.
# ------------------------------------------------------------------------------------------------


def _random_labels(rng, length, num_classes, mean_run):
  labels, total = [], 0
  while total < length:
    run = int(rng.integers(1, 2 * mean_run))
    labels += [int(rng.integers(num_classes))] * run
    total += run
  return labels[:length]


def _perturb(rng, gt, num_classes, flip):
  pred = list(gt)
  if not pred:
    return pred
  # shift some boundaries and relabel some frames/runs
  for _ in range(int(rng.integers(0, 4))):
    i = int(rng.integers(len(pred)))
    j = min(len(pred), i + int(rng.integers(1, 6)))
    pred[i:j] = [int(rng.integers(num_classes))] * (j - i)
  for i in range(len(pred)):
    if rng.random() < flip:
      pred[i] = int(rng.integers(num_classes))
  return pred


@pytest.mark.parametrize("seed", range(4))
def test_matches_brute_force_on_small_random_videos(seed):
  rng = np.random.default_rng(seed)
  thresholds = (0.1, 0.25, 0.5, 0.75)
  for _ in range(150):
    length = int(rng.integers(0, 40))
    num_classes = int(rng.integers(1, 5))
    gt = _random_labels(
      rng, length, num_classes, mean_run=int(rng.integers(1, 6))
    )
    pred = (
      _random_labels(rng, length, num_classes, 3)
      if rng.random() < 0.3
      else _perturb(rng, gt, num_classes, flip=0.1)
    )
    background = tuple(
      int(c)
      for c in rng.choice(num_classes, int(rng.integers(0, 2)), replace=False)
    )
    assert edit_score(pred, gt, background) == approx(
      brute_edit(pred, gt, background)
    )
    expected = [brute_f1_counts(pred, gt, t, background) for t in thresholds]
    np.testing.assert_array_equal(
      f1_counts(pred, gt, thresholds, background), expected
    )


@pytest.mark.parametrize("policy", BACKGROUND_POLICIES)
def test_split_matches_brute_force(policy):
  rng = np.random.default_rng(123)
  for _ in range(30):
    background = (0,)
    videos, brute = (
      [],
      {"correct": 0, "frames": 0, "edits": [], "counts": np.zeros((3, 3))},
    )
    for v in range(int(rng.integers(1, 6))):
      length = int(rng.integers(0, 60))
      gt = _random_labels(rng, length, 4, 4)
      pred = _perturb(rng, gt, 4, flip=0.05)
      gt = [
        IGNORE_LABEL if rng.random() < 0.05 else g for g in gt
      ]  # sprinkle padding
      videos.append((f"vid{v}", pred, gt))
      kept = [(p, g) for p, g in zip(pred, gt) if g != IGNORE_LABEL]
      if policy.startswith("drop_background_frames"):
        kept = [(p, g) for p, g in kept if g not in background]
      seg_bg = () if policy == "drop_background_frames" else background
      p, g = [k[0] for k in kept], [k[1] for k in kept]
      brute["correct"] += sum(a == b for a, b in zip(p, g))
      brute["frames"] += len(g)
      if g:
        brute["edits"].append(brute_edit(p, g, seg_bg))
      brute["counts"] += [
        brute_f1_counts(p, g, t, seg_bg) for t in (0.1, 0.25, 0.5)
      ]
    out = score_videos(
      videos, background_classes=background, background_policy=policy
    )
    assert out["num_frames"] == brute["frames"]
    assert out["mof"] == approx(
      100 * brute["correct"] / brute["frames"] if brute["frames"] else 0.0
    )
    assert out["edit"] == approx(
      np.mean(brute["edits"]) if brute["edits"] else 100.0
    )
    for k, name in enumerate(("f1@10", "f1@25", "f1@50")):
      assert out[name] == approx(f1(*brute["counts"][k])), name


def test_long_video_runs_vectorised():
  # 20k frames with thousands of segments; a pure-Python O(n^2) edit distance or IoU matrix
  # would take seconds to minutes here. No timing assert: it just has to run.
  rng = np.random.default_rng(0)
  length = 20_000
  runs = rng.integers(1, 12, size=length)
  gt = np.repeat(rng.integers(0, 20, size=length), runs)[:length]
  pred = gt.copy()
  noisy = rng.random(length) < 0.02
  pred[noisy] = rng.integers(0, 20, size=int(noisy.sum()))
  n_gt, n_pred = len(segments(gt)[0]), len(segments(pred)[0])
  assert n_gt > 2000 and n_pred > n_gt
  counts = f1_counts(pred, gt)
  # Every predicted segment is a TP or an FP, every gt segment a TP or an FN.
  np.testing.assert_array_equal(counts[:, 0] + counts[:, 1], n_pred)
  np.testing.assert_array_equal(counts[:, 0] + counts[:, 2], n_gt)
  assert (np.diff(counts[:, 0]) <= 0).all()  # stricter threshold, fewer hits
  out = score_videos([("long", pred, gt)], background_classes=(0,))
  assert 95.0 < out["mof"] < 100.0
  assert 0.0 < out["edit"] < 100.0 and 0.0 < out["f1@50"] < 100.0


def test_module_exports():
  assert metrics.BACKGROUND_POLICIES == (
    "exclude_background_segments",
    "drop_background_frames",
    "drop_background_frames_and_segments",
  )
  assert metrics.IGNORE_LABEL == -100
