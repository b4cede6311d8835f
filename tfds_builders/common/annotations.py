"""Text inputs of a build: class tables and segment or per-frame label files."""

from __future__ import annotations

import collections
import csv
import dataclasses
import os
import re
from typing import Mapping, Sequence

import numpy as np

from exo2ego_jax.data.constants import IGNORE_LABEL
from tfds_builders.common.errors import DataError, MissingData
from tfds_builders.common.repair import RepairPolicy, repair_fix


def read_lines(path: os.PathLike) -> list[str]:
  """Non-empty lines without comments (#) or trailing whitespace."""
  with open(path, encoding="utf-8") as f:
    lines = [line.rstrip("\r\n") for line in f]
  return [l for l in lines if l.strip() and not l.lstrip().startswith("#")]


_NAME_COLUMNS = ("action_cls", "name", "class_name", "step_name", "label")
_ID_COLUMNS = ("action_id", "id", "class_id", "label_id")


def read_class_table(path: os.PathLike) -> list[str]:
  """Class names indexed by id, from a class table file.

  Accepted: a CSV with a header (Assembly101 `actions.csv`: `action_id` and
  `action_cls` columns; or `id`/`label_id` and `name`/`step_name`), lines
  `<id> <name>` or `<id>,<name>` (MS-TCN `mapping.txt`), or one name per line
  (id = line number from 0). Ids must be 0..N-1, each once.
  """
  lines = read_lines(path)
  if not lines:
    raise DataError(f"{path}: the class table is empty")
  header = next(csv.reader([lines[0]]))
  id_col = next((c for c in _ID_COLUMNS if c in header), None)
  name_col = next((c for c in _NAME_COLUMNS if c in header), None)
  if id_col and name_col:
    pairs = [(row[id_col], row[name_col]) for row in csv.DictReader(lines)]
  elif all(re.match(r"^\s*-?\d+\s*[,\s]\s*\S", l) for l in lines):
    pairs = [
      tuple(re.split(r"\s*,\s*|\s+", l.strip(), maxsplit=1)) for l in lines
    ]
  else:
    pairs = [(str(i), l.strip()) for i, l in enumerate(lines)]
  table: dict[int, str] = {}
  for raw_id, name in pairs:
    try:
      i = int(raw_id)
    except ValueError:
      raise DataError(
        f"{path}: class id {raw_id!r} is not an integer"
      ) from None
    if i in table:
      raise DataError(f"{path}: class id {i} appears twice")
    table[i] = name.strip()
  if sorted(table) != list(range(len(table))):
    raise DataError(
      f"{path}: class ids must be 0..{len(table) - 1} without gaps "
      f"(got {sorted(table)[:5]}...)"
    )
  names = [table[i] for i in range(len(table))]
  dupes = [n for n, c in collections.Counter(names).items() if c > 1]
  if dupes:
    raise DataError(
      f"{path}: class names must be unique; repeated: {dupes[:5]}"
    )
  return names


@dataclasses.dataclass(frozen=True)
class Segment:
  start: int  # first frame
  end: int  # one past the last frame
  label: str
  line: int  # line number in its file, for messages


def parse_segments(path: os.PathLike) -> list[Segment]:
  """`start<TAB>end<TAB>label` lines (frames, end exclusive).

  Without a tab the fields are split on whitespace and the label is the rest of
  the line (so `12 40 attach wheel` works too).
  """
  segments = []
  with open(path, encoding="utf-8") as f:
    for number, line in enumerate(f, 1):
      line = line.rstrip("\r\n")
      if not line.strip() or line.lstrip().startswith("#"):
        continue
      fields = (
        line.split("\t", 2) if "\t" in line else line.strip().split(None, 2)
      )
      if len(fields) < 3 or not fields[2].strip():
        raise DataError(
          f"{path}:{number}: expected `start<TAB>end<TAB>label`, got {line!r}"
        )
      try:
        start, end = int(fields[0]), int(fields[1])
      except ValueError:
        raise DataError(
          f"{path}:{number}: start and end must be integer frame "
          f"numbers, got {line!r}"
        ) from None
      if end < start or start < 0:
        raise DataError(
          f"{path}:{number}: segment ends before it starts or "
          f"starts before frame 0: {line!r}"
        )
      segments.append(Segment(start, end, fields[2].strip(), number))
  return segments


def looks_like_segments(path: os.PathLike) -> bool:
  """True if every line is `<int> <int> <label>` (else: one label per frame)."""
  lines = read_lines(path)
  pattern = re.compile(r"^\s*\d+\s+\d+\s+\S")
  return bool(lines) and all(pattern.match(l) for l in lines)


def label_id(
  name: str,
  classes: Mapping[str, int],
  where: str,
  policy: RepairPolicy,
  unknown: collections.Counter,
  class_table: str,
) -> int:
  """The id of a label name; unknown names raise or (policy) become -100."""
  if name in classes:
    return classes[name]
  if policy.unknown_label == "error":
    raise DataError(
      f"{where}: unknown label {name!r}: it is not in the class table "
      f"{class_table}. Add it there, fix the annotation, or "
      f"{repair_fix(unknown_label='ignore')} to leave those frames "
      "unscored"
    )
  unknown[name] += 1
  return IGNORE_LABEL


@dataclasses.dataclass
class Labels:
  """Per-frame label ids starting at frame `start`, and what making them repaired."""

  values: np.ndarray
  start: int
  source: str
  repairs: list = dataclasses.field(
    default_factory=list
  )  # (kind, frames, detail)

  def subsample(self, origin: int, step: int) -> "Labels":
    """The labels of frames `origin + step * i`, indexed by i."""
    first = -(
      -(self.start - origin) // step
    )  # first i with origin + step*i >= start
    offset = origin + step * first - self.start
    return Labels(
      self.values[offset::step], first, self.source, list(self.repairs)
    )


def segments_to_labels(
  segments: Sequence[Segment],
  classes: Mapping[str, int],
  *,
  source: str,
  class_table: str,
  policy: RepairPolicy,
  start: int | None = None,
  length: int | None = None,
  gap_label: int = IGNORE_LABEL,
) -> Labels:
  """Per-frame ids of `segments` over [start, start + length).

  Defaults: from the first segment's start to the last segment's end. Frames no
  segment covers get `gap_label` (counted when that is -100); where segments
  overlap the later line wins (counted).
  """
  if not segments:
    raise MissingData("empty", f"{source}: no segments")
  start = min(s.start for s in segments) if start is None else start
  end = max(s.end for s in segments)
  length = end - start if length is None else length
  values = np.full(max(length, 0), -1, np.int64)
  unknown: collections.Counter = collections.Counter()
  overlap = unknown_frames = 0
  for seg in segments:
    ident = label_id(
      seg.label, classes, f"{source}:{seg.line}", policy, unknown, class_table
    )
    lo, hi = max(seg.start - start, 0), min(seg.end - start, length)
    if hi <= lo:
      continue
    overlap += int(np.count_nonzero(values[lo:hi] != -1))
    values[lo:hi] = ident
    if ident == IGNORE_LABEL:
      unknown_frames += hi - lo
  labels = Labels(values, start, source)
  gaps = int(np.count_nonzero(values == -1))
  values[values == -1] = gap_label
  if overlap:
    labels.repairs.append(
      (
        "overlapping_segments",
        overlap,
        f"{source}: overlapping segments, the later line wins",
      )
    )
  if gaps and gap_label == IGNORE_LABEL:
    labels.repairs.append(
      (
        "unlabeled_gap",
        gaps,
        f"{source}: frames no segment covers are left unscored",
      )
    )
  if unknown:
    labels.repairs.append(
      (
        "unknown_label",
        unknown_frames,
        f"{source}: unknown labels {sorted(unknown)} left unscored",
      )
    )
  labels.values = values.astype(np.int32)
  return labels


def frame_labels(
  path: os.PathLike,
  classes: Mapping[str, int],
  *,
  class_table: str,
  policy: RepairPolicy,
) -> Labels:
  """One label name per line (MS-TCN `groundTruth` style), frame 0 first."""
  unknown: collections.Counter = collections.Counter()
  with open(path, encoding="utf-8") as f:
    lines = [l.strip() for l in f.read().splitlines()]
  while lines and not lines[-1]:
    lines.pop()
  values = np.asarray(
    [
      label_id(name, classes, f"{path}:{i + 1}", policy, unknown, class_table)
      for i, name in enumerate(lines)
    ],
    np.int32,
  )
  labels = Labels(values, 0, str(path))
  if unknown:
    labels.repairs.append(
      (
        "unknown_label",
        sum(unknown.values()),
        f"{path}: unknown labels {sorted(unknown)} left unscored",
      )
    )
  return labels
