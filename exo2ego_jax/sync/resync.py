"""Self-synchronization of a run's training pairs (config.sync).

With config.sync.estimate, a run that trains on synchronized pairs first
estimates every recording's clock (estimator.py) and trains on the pairs
re-synchronized by it: the ego stream resampled onto the exo timeline, the
frames outside the two streams' overlap dropped (`ResyncedSource`).

Round 1 estimates from the frozen teacher's outputs on both streams (the
offset only unless config.sync.first_round_max_rate > 0: the teacher's ego
outputs are weak, and a rate search gives them more ways to be wrong).
With config.sync.rounds = R > 1 the run first trains round R - 1 (each a
complete, resumable run in its own folder), then estimates again with that
round's students on the ego stream (the teacher on the exo stream), rate
included, and trains from the teacher again on the new pairs. The
students are cross-fitted (config.sync.folds = K): the recordings are dealt
into K folds, student k (`<workdir>/round<R-1>_fold<k>`) trains on the
other folds only and estimates fold k, because a student trained on a
recording reproduces the pairing it was trained on, wrong or right. With
R >= 3 the fold students of every round sit side by side in `<workdir>`
(`round<r>_fold<k>`), and round r's fold-k student trains on pairs that
round r - 1's students of the other folds estimated: no estimate of any
round comes from a student that trained on its recording.

A synchronization error put in on purpose (config.data.sync_offset,
"fixed" or "per_video") is applied to the recording before estimation,
exactly as the windows would apply it. The estimates go to
`<workdir>/sync_estimates.json` (one entry per recording, and a summary
scored against the true map where the dataset knows it: the synthetic
clock configs' `ego_time`, or the offset put in); a resumed run reads them
back, so it trains on the same pairs.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Callable

import jax
import ml_collections
import numpy as np

from exo2ego_jax.data import input_pipeline
from exo2ego_jax.evaluation import evaluator
from exo2ego_jax.methods import pseudo_labels
from exo2ego_jax.methods import registry
from exo2ego_jax.runtime import frozen as frozen_lib
from exo2ego_jax.runtime import workdir as workdir_lib
from exo2ego_jax.sync import clock as clock_lib
from exo2ego_jax.sync import estimator

log = logging.getLogger(__name__)

FILENAME = "sync_estimates.json"
# Per-frame fields on the ego timeline (the rest follow the exo timeline).
EGO_FIELDS = ("ego", "ego_labels", "ego_time")
# The field of the synthetic clock configs: the exo instant each ego frame
# truly shows.
TRUE_TIME = "ego_time"


def options(config: ml_collections.ConfigDict) -> dict:
  """config.sync with defaults for what it lacks."""
  section = config.get("sync") or {}
  return {
    key.split(".", 1)[1]: section.get(key.split(".", 1)[1], value)
    for key, value in workdir_lib.ADDED_FIELDS.items()
    if key.startswith("sync.")
  }


def check_config(config: ml_collections.ConfigDict, method) -> None:
  """Raises ValueError for a config.sync the run cannot honour."""
  opts = options(config)
  if not opts["estimate"]:
    return
  if not method.trains_on_sync_pairs:
    raise ValueError(
      f"config.sync.estimate re-synchronizes the training pairs; mode "
      f"{method.name} trains on no synchronized pair: leave it False, or "
      f"use one of "
      f"{', '.join(registry.names(where=lambda m: m.trains_on_sync_pairs))}"
    )
  offset_mode = config.data.get("sync_offset_mode", "fixed")
  if config.data.get("sync_offset", 0) and offset_mode == "per_window":
    raise ValueError(
      "config.sync.estimate estimates one clock per recording; a "
      "per_window config.data.sync_offset changes within a recording: use "
      "sync_offset_mode 'fixed' or 'per_video'"
    )
  if int(opts["rounds"]) < 1 or int(opts["folds"]) < 1:
    raise ValueError("config.sync.rounds and config.sync.folds must be >= 1")
  if opts["max_offset"] < 0 or not 0 <= opts["max_rate"] < 0.5:
    raise ValueError(
      "config.sync.max_offset must be >= 0 and config.sync.max_rate in [0, 0.5)"
    )


def settings(opts: dict, first_round: bool) -> estimator.Settings:
  return estimator.Settings(
    max_offset=int(opts["max_offset"]),
    max_rate=float(
      opts["first_round_max_rate"] if first_round else opts["max_rate"]
    ),
    rate_steps=int(opts["rate_steps"]),
    min_overlap=float(opts["min_overlap"]),
    min_frames=int(opts["min_frames"]),
    min_confidence=float(opts["min_confidence"]),
  )


def previous_round(workdir: str, rounds: int) -> str:
  return os.path.join(workdir, f"round{rounds - 1}")


class ResyncedSource:
  """A data source whose recordings are re-synchronized: recording i's
  ego frames shifted by `shifts[i]` (a deliberate error), then paired with
  the exo frames by `clocks[i]` (exo frames outside the overlap dropped)."""

  def __init__(self, source, shifts: dict, clocks: dict):
    self.source, self.shifts, self.clocks = source, shifts, clocks

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, index: int) -> dict:
    example = shifted(self.source[index], self.shifts.get(index, 0))
    clock = self.clocks.get(index)
    if clock is None:
      return example
    return resynchronized(example, clock)


def shifted(example: dict, shift: int) -> dict:
  """The recording with ego frame t showing what ego frame t + shift
  showed (clamped), as config.data.sync_offset shifts a window."""
  example = dict(example)
  if not shift:
    return example
  length = len(example["ego"])
  frames = np.clip(np.arange(length) + shift, 0, length - 1)
  for key in EGO_FIELDS:
    if key in example:
      example[key] = np.asarray(example[key])[frames]
  return example


def resynchronized(example: dict, clock: clock_lib.Clock) -> dict:
  """The recording's overlap on the exo timeline, each exo frame with the
  ego frame the clock pairs it with."""
  exo_length, ego_length = len(example["exo"]), len(example["ego"])
  lo, hi, ego_index = clock_lib.aligned_indices(clock, exo_length, ego_length)
  if hi <= lo:  # no overlap: keep the timestamps
    return dict(example)
  out = {}
  for key, value in example.items():
    array = np.asarray(value)
    if key in EGO_FIELDS:
      out[key] = array[ego_index]
    elif array.ndim and len(array) == exo_length:
      out[key] = array[lo:hi]
    else:
      out[key] = value
  return out


def frame_outputs(
  predict, num_classes: int, features: list, config
) -> list[np.ndarray]:
  """Per-frame model outputs (T, C + F) of each recording: the chunked
  model run at every phase of the chunk, so each frame gets the outputs of
  the step that starts at it."""
  chunk = config.data.chunk_size
  outputs = [np.zeros((len(f), 0), np.float32) for f in features]
  for phase in range(chunk):
    steps = pseudo_labels.teacher_outputs(
      predict,
      num_classes,
      [f[phase:] for f in features],
      chunk_size=chunk,
      max_frames=config.data.max_frames,
      batch_size=config.data.eval_batch_size,
    )
    for k, (probs, feats) in enumerate(steps):
      if not outputs[k].shape[1]:
        outputs[k] = np.zeros(
          (len(features[k]), probs.shape[1] + feats.shape[1]), np.float32
        )
      frames = np.arange(phase, len(features[k]), chunk)
      outputs[k][frames] = np.concatenate([probs, feats], -1)[: len(frames)]
  return outputs


def draw_shifts(source, config) -> dict:
  """The deliberate offset of every recording (config.data.sync_offset)."""
  frames = int(config.data.get("sync_offset", 0))
  if not frames:
    return {}
  offset = input_pipeline.SyncOffset(
    frames,
    config.data.get("sync_offset_mode", "fixed"),
    view=config.data.view,
    seed=config.seed,
  )
  return {i: offset.draw(i, None) for i in range(len(source))}


def true_time(
  example: dict, shift: int
) -> tuple[np.ndarray, np.ndarray] | None:
  """The exo instant each ego frame of the (shifted) recording truly shows,
  and which frames are not a repeated edge frame of the shift, where the
  dataset knows it: the synthetic builder's `ego_time` (clock configs) or
  `jitter` (ego frame t shows exo frame t + jitter); None for recorded
  data, whose timestamps are all there is."""
  length = len(example["ego"])
  if TRUE_TIME in example:
    base = np.asarray(example[TRUE_TIME], np.float64)
  elif "jitter" in example:
    base = np.arange(length, dtype=np.float64) + int(example["jitter"])
  elif shift:
    base = np.arange(length, dtype=np.float64)
  else:
    return None
  frames = np.arange(length) + shift
  valid = (frames >= 0) & (frames <= length - 1)
  return base[np.clip(frames, 0, length - 1)], valid


def summary(entries: list[dict], chunk: int) -> dict:
  """Fallbacks and, where the true map is known, the error figures."""
  scored = [e for e in entries if "map_error" in e]
  out = {
    "recordings": len(entries),
    "fallbacks": sum(e["fallback"] is not None for e in entries),
  }
  if scored:
    errors = np.array([e["map_error"] for e in scored])
    offsets = np.array([e["offset_error"] for e in scored])
    out.update(
      map_error_mean=float(errors.mean()),
      map_error_p95=float(np.percentile(errors, 95)),
      within_chunk=float(np.mean(errors <= chunk)),
      offset_error_mean=float(offsets.mean()),
      offsets_within_4=float(np.mean(offsets <= 4)),
    )
  return out


def estimate_clocks(
  mode, frozen: dict, source, shifts: dict, config, indices, student_of
) -> list[dict]:
  """One entry per recording of `indices`: the estimate (from the teacher's
  exo outputs against `student_of[i]`'s ego outputs, the teacher's where
  None), and its error against the true map when the recording has one."""
  opts = options(config)
  teacher = pseudo_labels.teacher_predictor(mode, frozen["teacher"])
  predictors = {}  # one compiled predictor per student
  num_classes = mode.model.num_classes
  entries = {}
  by_student = {}
  for i in indices:
    by_student.setdefault(id(student_of[i]), []).append(i)
  group = 16
  for key, members in by_student.items():
    student = student_of[members[0]]
    if key not in predictors:
      predictors[key] = (
        teacher if student is None else student_predictor(mode, student)
      )
    for start in range(0, len(members), group):
      chunk_indices = members[start : start + group]
      raw = [source[i] for i in chunk_indices]
      truths = [
        true_time(e, shifts.get(i, 0)) for i, e in zip(chunk_indices, raw)
      ]
      examples = [
        shifted(e, shifts.get(i, 0)) for i, e in zip(chunk_indices, raw)
      ]
      exo = frame_outputs(
        teacher,
        num_classes,
        [np.asarray(e["exo"], np.float32) for e in examples],
        config,
      )
      ego_inputs = [np.asarray(e["ego"], np.float32) for e in examples]
      ego = frame_outputs(predictors[key], num_classes, ego_inputs, config)
      for k, (i, example) in enumerate(zip(chunk_indices, examples)):
        found = estimator.estimate(
          exo[k], ego[k], settings(opts, student is None), ego_inputs[k]
        )
        entry = {
          "index": i,
          "video_id": evaluator.decode_id(example["video_id"]),
          "rate": found.rate,
          "offset": found.offset,
          "confidence": round(found.confidence, 3),
          "fallback": found.fallback,
          # Local evidence around the estimate (the points of its plot).
          "matches": estimator.local_matches(exo[k], ego[k], found.clock),
        }
        if truths[k] is not None:
          entry.update(scored(found, *truths[k], len(example["exo"])))
        entries[i] = entry
  return [entries[i] for i in indices]


def scored(
  found: estimator.Estimate,
  truth: np.ndarray,
  valid: np.ndarray,
  exo_length: int,
) -> dict:
  """The estimate against the true map, over the ego frames that show an
  exo instant inside the exo recording (and are no repeated edge frame).
  The true rate and offset are the least-squares line through those
  points (with dropped frames the map is no line)."""
  t = np.arange(len(truth))
  keep = valid & (truth >= 0) & (truth <= exo_length - 1)
  if keep.sum() < 2:
    return {}
  rate, offset = np.polyfit(t[keep], truth[keep], 1)
  errors = clock_lib.map_error(found.clock, truth)[keep]
  return {
    "true_rate": float(rate),
    "true_offset": float(offset),
    "map_error": float(errors.mean()),
    "offset_error": float(abs(found.offset - offset)),
  }


def student_predictor(mode, state: dict):
  """A trained run's outputs on its own view (`outputs_predictor`)."""
  return pseudo_labels.outputs_predictor(
    mode,
    mode.model_variables(state),
    lambda windows, masks: mode.adapt(state, windows, masks),
  )


def folds_of(count: int, folds: int, seed: int) -> np.ndarray:
  """The fold (0..folds-1) of each recording: a seeded permutation dealt
  round-robin, so every fold holds every kind of recording."""
  order = np.random.default_rng([seed, 0xF01D]).permutation(count)
  fold = np.empty(count, np.int64)
  fold[order] = np.arange(count) % max(folds, 1)
  return fold


class SubsetSource:
  """The recordings `indices` of a source."""

  def __init__(self, source, indices):
    self.source, self.indices = source, list(indices)

  def __len__(self) -> int:
    return len(self.indices)

  def __getitem__(self, index: int) -> dict:
    return self.source[self.indices[index]]


def round_root(workdir: str, holdout, rounds: int) -> str:
  """The folder that holds every round's fold students: the run's own, or,
  for a fold student of round R (`<root>/round<R>_fold<k>`, the folder
  `earlier_students` gave it), the folder above it. Round R's fold-k
  student then finds round R - 1's students beside itself."""
  if holdout is not None:
    head, name = os.path.split(os.path.normpath(workdir))
    if name == f"round{rounds}_fold{holdout}":
      return head
  return workdir


def earlier_students(
  config: ml_collections.ConfigDict,
  workdir: str,
  frozen: dict,
  fold: np.ndarray,
  train_round: Callable[[ml_collections.ConfigDict, str], dict],
  kept: list[int],
) -> dict:
  """{fold: state} of the previous round's students that estimate the
  recordings `kept`, trained (or reused) first. With config.sync.folds =
  K > 1 there is one student per fold, trained on the other folds'
  recordings, so no recording is estimated by a student that was trained
  on it (a student repeats the pairing it was trained on, right or wrong).
  This holds at every depth: round R's fold-k student (holdout k) is itself
  trained on pairs estimated by round R - 1's students of the other folds,
  the same folders its siblings use (`round_root`), so with R >= 3 every
  estimate of every round is cross-fitted."""
  opts = options(config)
  rounds = int(opts["rounds"])
  crossed = int(opts["folds"]) > 1
  root = round_root(workdir, opts["holdout"], rounds)
  students = {}
  for k in sorted({int(fold[i]) for i in kept}) if crossed else [None]:
    earlier = ml_collections.ConfigDict(config.to_dict())
    earlier.sync.rounds = rounds - 1
    folder = previous_round(workdir, rounds)
    if crossed:
      earlier.sync.holdout = k
      folder = os.path.join(root, f"round{rounds - 1}_fold{k}")
    log.info("sync: training round %d in %s", rounds - 1, folder)
    train_round(earlier, folder)
    restored = frozen_lib.restore(folder, None, "student")
    students[k] = {
      "params": restored["params"],
      "batch_stats": restored["batch_stats"],
      "frozen": frozen,
    }
  return students


def offset_in_recordings(mode, config: ml_collections.ConfigDict) -> bool:
  """Whether config.data.sync_offset is put into the recordings
  (`synced_source` does it) rather than into the training windows: when
  clocks are estimated, and for a method that reads whole recordings
  (`sync_offset_at_source`, e.g. DTW)."""
  return bool(options(config)["estimate"] or mode.sync_offset_at_source)


def synced_source(
  mode,
  frozen: dict,
  source,
  config: ml_collections.ConfigDict,
  workdir: str,
  train_round: Callable[[ml_collections.ConfigDict, str], dict],
):
  """`source` re-synchronized by the run's clock estimates (computed once,
  kept in the workdir). When config.sync.estimate is off: `source` with the
  deliberate offset put into its recordings for a method that reads them
  whole (as a rig with that clock error gives them), else `source` itself.
  With config.sync.holdout = k, only the recordings outside fold k (a
  cross-fitting student's). `train_round(config, workdir)` trains (or
  re-reports) an earlier round."""
  opts = options(config)
  if not opts["estimate"]:
    if not mode.sync_offset_at_source:
      return source  # any offset goes into the training windows
    shifts = draw_shifts(source, config)
    return ResyncedSource(source, shifts, {}) if shifts else source
  shifts = draw_shifts(source, config)
  fold = folds_of(len(source), int(opts["folds"]), config.seed)
  holdout = opts["holdout"]
  kept = [
    i for i in range(len(source)) if holdout is None or fold[i] != holdout
  ]
  path = os.path.join(workdir, FILENAME)
  if os.path.exists(path):
    with open(path) as f:
      entries = json.load(f)["recordings"]
  else:
    students = {}
    if int(opts["rounds"]) > 1:
      students = earlier_students(
        config, workdir, frozen, fold, train_round, kept
      )
    crossed = None not in students
    student_of = {
      i: students.get(int(fold[i]) if crossed else None) for i in kept
    }
    entries = estimate_clocks(
      mode, frozen, source, shifts, config, kept, student_of
    )
    record = {
      "round": int(opts["rounds"]),
      "estimated_by": "student" if students else "teacher",
      "cross_fitted": bool(students) and crossed,
      "summary": summary(entries, config.data.chunk_size),
      "recordings": entries,
    }
    if jax.process_index() == 0:
      workdir_lib.write_atomic(path, json.dumps(record, indent=1))
  for entry in entries:
    if entry["fallback"]:
      log.warning(
        "sync: %s keeps its timestamps: %s (confidence %.2f)",
        entry["video_id"],
        entry["fallback"],
        entry["confidence"],
      )
  report = summary(entries, config.data.chunk_size)
  log.info("sync: %s", json.dumps(report))
  clocks = {
    e["index"]: clock_lib.Clock(e["rate"], e["offset"]) for e in entries
  }
  resynced = ResyncedSource(source, shifts, clocks)
  return resynced if holdout is None else SubsetSource(resynced, kept)
