"""One recording's streams (exo, ego, labels) cut to one frame axis.

Small defects are repaired under the `RepairPolicy` (trimmed ends, filled
interior gaps, zeroed non-finite rows) and reported; larger ones raise a
`DataError` that names the recording, the file and the fix. Multi-view
recordings (several exo cameras) are cut by `align_views`: a frame an exo
view lacks is absent (presence 0, zero features), not repaired.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Mapping, Sequence

import numpy as np

from exo2ego_jax.data.constants import VIEWS
from tfds_builders.common.errors import DataError, MissingData
from tfds_builders.common.repair import RepairPolicy, repair_fix


@dataclasses.dataclass
class Stream:
  """One per-frame sequence of a recording, placed on the recording's frame axis.

  `values[i]` is frame `start + i`; `present[i]` False marks a frame missing in
  the source (None: all present).
  """

  values: np.ndarray
  source: str
  start: int = 0
  present: np.ndarray | None = None


@dataclasses.dataclass
class Loaded:
  """The streams of one recording: "exo", "ego" and optionally "labels", "ego_labels".

  Streams index local frames; local frame i is source frame
  `frame_origin + frame_step * i` (what error messages and `start_frame` show).
  Without "labels" every frame is unlabeled (-100); without "ego_labels" the
  ego view is scored with "labels".

  Multi-view recordings leave "exo" out of `streams` and give `exo_views`
  instead: one stream per exo view, in the config's view order, None where
  the recording has no features of that view; `exo_view_ids` names the
  camera of each view ("" for none).
  """

  streams: dict
  frame_origin: int = 0
  frame_step: int = 1
  exo_views: list | None = None
  exo_view_ids: list | None = None


@dataclasses.dataclass
class Recording:
  """A planned example: ids, view names and a loader run when its turn comes."""

  video_id: str
  recording_id: str
  exo_view: str
  ego_view: str
  load: Callable[[], Loaded]


def align(
  video_id: str,
  streams: Mapping[str, Stream],
  policy: RepairPolicy,
  feature_dim: int,
  report: Callable[[str, int, str], None],
  origin: int = 0,
  step: int = 1,
) -> tuple[dict[str, np.ndarray], int]:
  """Cuts all streams to their common frame range and fills interior gaps.

  Returns the aligned arrays and the first (local) frame of the range; messages
  show source frames `origin + step * local`. Raises
  `DataError` naming the recording when a stream would lose more than
  `policy.max_trim_frames` frames or more than `policy.max_fill_frames` frames
  are missing inside the range; `MissingData("empty")` when nothing is left.
  """

  def frames(a, b):
    return f"[{origin + step * a}, {origin + step * b})"

  ranges = {}
  for name, s in streams.items():
    if name in VIEWS and (
      s.values.ndim != 2 or s.values.shape[1] != feature_dim
    ):
      raise DataError(
        f"{video_id}: {name} features from {s.source} have shape "
        f"{s.values.shape} but the config declares feature_dim={feature_dim}; "
        f"use a config with feature_dim={s.values.shape[-1]}"
      )
    length = len(s.values)
    if length == 0:
      raise MissingData(
        "empty", f"{video_id}: {name} ({s.source}) has no frames"
      )
    if s.present is None:
      first, last = 0, length
    else:
      found = np.flatnonzero(s.present)
      if not len(found):
        raise MissingData(
          "missing_view",
          f"{video_id}: {name} ({s.source}) has none of its frames",
        )
      first, last = int(found[0]), int(found[-1]) + 1
    ranges[name] = (s.start + first, s.start + last)
  lo = max(r[0] for r in ranges.values())
  hi = min(r[1] for r in ranges.values())
  if hi <= lo:
    raise MissingData(
      "empty",
      f"{video_id}: the streams do not overlap in time: "
      + ", ".join(f"{n} frames {frames(a, b)}" for n, (a, b) in ranges.items()),
    )

  def describe():
    parts = []
    for n, s in streams.items():
      extent = (s.start, s.start + len(s.values))
      part = f"{n} ({s.source}) frames {frames(*extent)}"
      parts.append(
        part
        + (f" with data in {frames(*ranges[n])}" if ranges[n] != extent else "")
      )
    return "; ".join(parts)

  out, filled = {}, 0
  for name, s in streams.items():
    cut = (lo - s.start) + (s.start + len(s.values) - hi)
    if cut > policy.max_trim_frames:
      raise DataError(
        f"{video_id}: the streams do not line up: {describe()}. Cutting them to "
        f"their overlap {frames(lo, hi)} would drop {cut} frames of {name}, more "
        f"than max_trim_frames={policy.max_trim_frames}. Check that these files "
        "belong to the same recording, or "
        f"{repair_fix(max_trim_frames=cut)}"
      )
    if cut:
      report(
        "trim",
        cut,
        f"{name} ({s.source}): cut to frames {frames(lo, hi)} "
        f"from {frames(s.start, s.start + len(s.values))}",
      )
    values = s.values[lo - s.start : hi - s.start]
    if s.present is not None:
      missing = np.flatnonzero(~s.present[lo - s.start : hi - s.start])
      if len(missing):
        filled += len(missing)
        if filled > policy.max_fill_frames or len(missing) == len(values):
          shown = ", ".join(
            str(origin + step * (lo + int(i))) for i in missing[:5]
          )
          raise DataError(
            f"{video_id}: {name} ({s.source}) lacks {len(missing)} frames inside "
            f"{frames(lo, hi)} (frames {shown}{'...' if len(missing) > 5 else ''}), "
            f"more than max_fill_frames={policy.max_fill_frames}. Re-extract "
            f"them, or {repair_fix(max_fill_frames=filled)} to copy the "
            "previous frame"
          )
        values = np.array(values)
        index = np.arange(len(values))
        index[missing] = -1
        np.maximum.accumulate(
          index, out=index
        )  # last present frame at or before
        first = int(np.flatnonzero(index >= 0)[0])
        index[:first] = first  # a gap at the start takes the next present frame
        values = values[index]
        report(
          "fill",
          len(missing),
          f"{name} ({s.source}): frames "
          f"{[origin + step * (lo + int(i)) for i in missing[:10]]} copied from "
          "the previous frame",
        )
    out[name] = values
  return out, lo


def check_finite(
  video_id: str,
  name: str,
  source: str,
  values: np.ndarray,
  policy: RepairPolicy,
  report: Callable[[str, int, str], None],
  first_frame: int = 0,
  step: int = 1,
) -> np.ndarray:
  """Non-finite feature rows: an error naming the (source) frame, or zeros (policy)."""
  bad = ~np.isfinite(values).all(axis=1)
  if not bad.any():
    return values
  rows = np.flatnonzero(bad)
  if policy.nan == "error":
    raise DataError(
      f"{video_id}: {name} features from {source} have NaN/inf values in "
      f"{len(rows)} frames (first: frame {first_frame + step * int(rows[0])}). Re-extract "
      f"them, or {repair_fix(nan='zero')} to zero those frames"
    )
  values = np.array(values)
  values[bad] = 0
  report(
    "nan_zeroed", len(rows), f"{name} ({source}): non-finite rows set to 0"
  )
  return values


def align_views(
  video_id: str,
  streams: Mapping[str, Stream],
  views: Sequence[Stream | None],
  names: Sequence[str],
  policy: RepairPolicy,
  feature_dim: int,
  report: Callable[[str, int, str], None],
  origin: int = 0,
  step: int = 1,
  dtype=np.float32,
) -> tuple[dict[str, np.ndarray], int]:
  """Cuts a multi-view recording to one frame axis: `align` of `streams`
  (ego, labels) and the exo views' union, every view then placed on it.

  The exo views together stand for the "exo" stream of a single-view
  recording: the range is where ego, labels and at least one view's extent
  (first to last frame with features) overlap, trimmed within
  `policy.max_trim_frames` as `align` does, so a recording whose views all
  cover the same frames gets the single-view config's range and view 0 its
  `exo`. Each view is then cut or padded to the range; the frames it lacks
  there (before it starts, after it ends, missing inside, non-finite rows
  zeroed under `policy.nan`) are absent: presence 0, features 0. Nothing is
  filled.

  Returns `align`'s arrays plus "exo_views" (K, T, D) in `dtype`,
  "exo_present" (K, T) int32 and "exo" (view 0), and the first local frame.
  Raises `MissingData("missing_view")` when no view has a frame, and a
  `DataError` naming the view's file for features of another dimension.
  """
  extents = []
  for name, s in zip(names, views):
    if s is None:
      extents.append(None)
      continue
    if s.values.ndim != 2 or s.values.shape[1] != feature_dim:
      got = s.values.shape[-1] if s.values.ndim else 0
      raise DataError(
        f"{video_id}: exo view {name} features from {s.source} have shape "
        f"{s.values.shape}, but the config reads every view as "
        f"{feature_dim}-D (feature_dim={feature_dim}): re-extract this "
        "view with the backbone of the other views, or remove its "
        f"features to leave the view absent (if every view is {got}-D, "
        f"use a config with feature_dim={got})"
      )
    found = (
      np.arange(len(s.values))
      if s.present is None
      else np.flatnonzero(s.present)
    )
    extents.append(
      (s.start + int(found[0]), s.start + int(found[-1]) + 1)
      if len(found)
      else None
    )
  seen = [e for e in extents if e is not None]
  if not seen:
    sources = [s.source for s in views if s is not None]
    raise MissingData(
      "missing_view",
      f"{video_id}: none of its {len(names)} exo views "
      f"({', '.join(names)}) has features"
      + (f" ({'; '.join(sources)})" if sources else ""),
    )
  lo, hi = min(e[0] for e in seen), max(e[1] for e in seen)
  union = Stream(
    # Zero-strided: the union only lends its extent to `align`.
    np.broadcast_to(
      np.zeros((1, feature_dim), np.float32), (hi - lo, feature_dim)
    ),
    "; ".join(
      f"{n}: {s.source}"
      for n, s, e in zip(names, views, extents)
      if e is not None
    ),
    lo,
  )
  arrays, start = align(
    video_id,
    {"exo": union, **streams},
    policy,
    feature_dim,
    report,
    origin,
    step,
  )
  length = len(arrays["exo"])
  stack = np.zeros((len(views), length, feature_dim), dtype)
  present = np.zeros((len(views), length), np.int32)
  for k, (name, s, extent) in enumerate(zip(names, views, extents)):
    if extent is None:
      continue
    a, b = max(start, s.start), min(start + length, s.start + len(s.values))
    if b <= a:
      continue
    values = np.asarray(s.values[a - s.start : b - s.start])
    here = (
      np.ones(b - a, bool)
      if s.present is None
      else np.asarray(s.present[a - s.start : b - s.start], bool)
    )
    finite = np.isfinite(values).all(axis=1)
    if not finite[here].all():
      rows = np.flatnonzero(here & ~finite)
      check_finite(  # raises under nan="error"; else counted
        video_id,
        f"exo view {name}",
        s.source,
        values[rows],
        policy,
        report,
        origin + step * (a + int(rows[0])),
        step,
      )
      here &= finite
    kept = np.asarray(values[here], dtype)
    if not np.isfinite(kept).all():
      raise DataError(
        f"{video_id}: exo view {name} features from {s.source} exceed the "
        f"{np.dtype(dtype).name} range; store them as float32"
      )
    stack[k, a - start : b - start][here] = kept
    present[k, a - start : b - start] = here
  arrays.update(exo_views=stack, exo_present=present, exo=stack[0])
  return arrays, start
