"""Real exo/ego feature datasets as aligned examples: the part the TFDS builders share.

The builders in `tfds_builders/` (`assembly101_sync`, `egoexo4d_keystep`,
`feature_folder`) only say where the pieces of each recording are. This module
reads them, aligns the exo view, the ego view and the labels on one frame axis,
repairs small defects under one `RepairPolicy` (or raises a `DataError` that
names the recording, the file and the fix), and writes every repair into the
dataset metadata (`info.metadata["repairs"]`), so nothing is silently
misaligned. Recordings are loaded one at a time: a build never holds a split in
memory.

Where users build, the policy is set by a `repair.json` in the manual dir
(`{"nan": "zero", "max_trim_frames": 60}`: the fields of `RepairPolicy`),
which `tfds build --manual_dir` and a build on first use both read, or by
the builder config (`policy`, a dict in `tfds build --config='{...}'`).
"""

from __future__ import annotations

import abc
import collections
import contextlib
import csv
import dataclasses
import hashlib
import json
import logging
import os
import re
import sys
from typing import Callable, Iterable, Mapping, Sequence

from etils import epath
import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.core import example_serializer

IGNORE_LABEL = -100  # frames the loss and the metrics skip (exo2ego_jax.training.losses)
SPLITS = ("train", "sync_pairs", "validation", "test")
STORAGE_DTYPES = {"float32": np.float32, "float16": np.float16}
REPAIR_FILE = "repair.json"  # in the manual dir: the fields of RepairPolicy

log = logging.getLogger(__name__)


class _NoVariantNoise(logging.Filter):
  """Drops TFDS's "Variant folder ... has no dataset_info.json" warning,
  which every first build of a dataset prints (its folder is not yet there)."""

  def filter(self, record):
    return not str(record.msg).startswith("Variant folder %s has no")


logging.getLogger("absl").addFilter(_NoVariantNoise())


def _data_error_hook(previous):
  """A DataError that ends a program (e.g. `tfds build`, whose command line
  is TFDS's) prints `error: <message>`: its message names the file and the
  fix, and a traceback of the builder would bury it."""

  def hook(kind, value, traceback):
    if isinstance(value, DataError):
      sys.stderr.write(f"error: {value}\n")
    else:
      previous(kind, value, traceback)
  return hook


class DataError(ValueError):
  """Input data the builder cannot use; the message names the file and the fix."""


class MissingData(DataError):
  """A recording that cannot be built; `RepairPolicy` decides skip or error.

  `kind` is "missing_view" (a view's features do not exist) or "empty" (no
  frame is left).
  """

  def __init__(self, kind: str, message: str):
    super().__init__(message)
    self.kind = kind


sys.excepthook = _data_error_hook(sys.excepthook)


# ------------------------------------------------------------------------------------------------
# Policy and repair log.


@dataclasses.dataclass(frozen=True)
class RepairPolicy:
  """What a build may repair (and count) instead of failing.

  Frame counts are in stored frames (after `frame_stride`, or feature steps).

  Attributes:
    max_trim_frames: each stream (exo, ego, labels) may lose up to this many
      frames at its ends when the streams are cut to their common range (a
      view that starts late or ends early, labels a few frames longer than the
      features). More is an error naming the recording.
    max_fill_frames: frames missing inside a view (e.g. LMDB keys absent) that
      may be filled with the previous frame's features, per recording. 0: any
      interior gap is an error.
    nan: "error", or "zero" to replace the non-finite feature rows with zeros.
    unknown_label: "error", or "ignore" to label those frames -100 (unscored).
    empty: "skip" or "error" for a recording with no frame left.
    missing_view: "skip" or "error" for a recording without the features of
      the configured exo or ego view.
  """
  max_trim_frames: int = 30
  max_fill_frames: int = 0
  nan: str = "error"
  unknown_label: str = "error"
  empty: str = "skip"
  missing_view: str = "skip"

  def __post_init__(self):
    choices = {"nan": ("error", "zero"), "unknown_label": ("error", "ignore"),
               "empty": ("skip", "error"), "missing_view": ("skip", "error")}
    for field, allowed in choices.items():
      if getattr(self, field) not in allowed:
        raise ValueError(f"RepairPolicy.{field} must be one of {allowed}, "
                         f"not {getattr(self, field)!r}")
    if self.max_trim_frames < 0 or self.max_fill_frames < 0:
      raise ValueError("RepairPolicy frame tolerances must be >= 0")


def repair_fix(**fields) -> str:
  """How a user allows a repair: `'{"nan": "zero"}' in repair.json`."""
  return (f"put {json.dumps(fields)} in {REPAIR_FILE} in the manual dir "
          "(--manual_dir) and build again")


def read_repair_file(manual_dir: str, policy: RepairPolicy) -> RepairPolicy:
  """`policy` with the fields that `<manual_dir>/repair.json` sets, if any."""
  path = os.path.join(manual_dir, REPAIR_FILE)
  if not os.path.exists(path):
    return policy
  try:
    with open(path, encoding="utf-8") as f:
      fields = json.load(f)
  except json.JSONDecodeError as e:
    raise DataError(f"{path}: not valid JSON ({e}); write e.g. "
                    '{"nan": "zero"}') from None
  known = [f.name for f in dataclasses.fields(RepairPolicy)]
  if not isinstance(fields, dict) or set(fields) - set(known):
    unknown = (sorted(set(fields) - set(known)) if isinstance(fields, dict)
               else fields)
    raise DataError(f"{path}: {unknown!r} is not a RepairPolicy field; use an "
                    f"object with some of {', '.join(known)}")
  try:
    return dataclasses.replace(policy, **fields)
  except (TypeError, ValueError) as e:  # a value of the wrong kind
    raise DataError(f"{path}: {e}") from None


class RepairLog:
  """Every repair and skip of a build, for `info.metadata["repairs"]` and the log."""

  def __init__(self):
    self.entries: list[dict] = []

  def add(self, split: str, video_id: str, kind: str, frames: int, detail: str):
    log.warning("%s/%s: %s (%d frames): %s", split, video_id, kind, frames,
                detail)
    self.entries.append({"split": split, "video_id": video_id, "kind": kind,
                         "frames": int(frames), "detail": detail})

  def to_metadata(self) -> dict:
    order = {s: i for i, s in enumerate(SPLITS)}
    entries = sorted(self.entries, key=lambda e: (
        order.get(e["split"], len(order)), e["split"], e["video_id"], e["kind"],
        e["detail"]))
    counts: dict = {}
    for e in entries:
      c = counts.setdefault(e["kind"], {"videos": set(), "frames": 0})
      c["videos"].add((e["split"], e["video_id"]))
      c["frames"] += e["frames"]
    counts = {k: {"videos": len(c["videos"]), "frames": c["frames"]}
              for k, c in sorted(counts.items())}
    return {"counts": counts, "entries": entries}


# ------------------------------------------------------------------------------------------------
# Text inputs: class tables, split lists, segment and per-frame label files.


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
    pairs = [(row[id_col], row[name_col])
             for row in csv.DictReader(lines)]
  elif all(re.match(r"^\s*-?\d+\s*[,\s]\s*\S", l) for l in lines):
    pairs = [tuple(re.split(r"\s*,\s*|\s+", l.strip(), maxsplit=1)) for l in lines]
  else:
    pairs = [(str(i), l.strip()) for i, l in enumerate(lines)]
  table: dict[int, str] = {}
  for raw_id, name in pairs:
    try:
      i = int(raw_id)
    except ValueError:
      raise DataError(f"{path}: class id {raw_id!r} is not an integer") from None
    if i in table:
      raise DataError(f"{path}: class id {i} appears twice")
    table[i] = name.strip()
  if sorted(table) != list(range(len(table))):
    raise DataError(f"{path}: class ids must be 0..{len(table) - 1} without gaps "
                    f"(got {sorted(table)[:5]}...)")
  names = [table[i] for i in range(len(table))]
  dupes = [n for n, c in collections.Counter(names).items() if c > 1]
  if dupes:
    raise DataError(f"{path}: class names must be unique; repeated: {dupes[:5]}")
  return names


def read_split_list(path: os.PathLike) -> list[str]:
  """Video ids of a split list: the first tab-separated field of each line.

  So both plain lists and Assembly101's `coarse_splits/*.txt` (first field
  `assembly_<recording>.txt`) work; a trailing ".txt" is dropped.
  """
  ids = []
  for line in read_lines(path):
    video = line.split("\t")[0].strip()
    ids.append(video[:-4] if video.endswith(".txt") else video)
  return ids


def user_splits(split_dir: os.PathLike) -> dict[str, list[str]] | None:
  """`<split_dir>/<split>.txt` for the four splits, or None if there is none."""
  paths = {s: os.path.join(split_dir, f"{s}.txt") for s in SPLITS}
  found = {s: p for s, p in paths.items() if os.path.exists(p)}
  if not found:
    return None
  missing = [p for s, p in paths.items() if s not in found]
  if missing:
    raise DataError(f"split lists: {missing} missing; give all four of "
                    f"{list(SPLITS)} in {split_dir} or none (default splits)")
  return {s: read_split_list(p) for s, p in paths.items()}


def hash_partition(ids: Iterable[str], fraction: float,
                   group: Callable[[str], str] = lambda i: i
                   ) -> tuple[list[str], list[str]]:
  """Splits ids into two disjoint lists, the first with about `fraction` of the groups.

  Ids of one group (e.g. the videos of one recording) stay together. Order is
  by a hash of the group: stable across machines and independent of the order
  in which ids are listed.
  """
  ids = sorted(set(ids))
  groups = sorted({group(i) for i in ids},
                  key=lambda g: (hashlib.sha1(g.encode()).hexdigest(), g))
  first = set(groups[:int(round(fraction * len(groups)))])
  return [i for i in ids if group(i) in first], [i for i in ids if group(i) not in first]


def check_disjoint(splits: Mapping[str, Sequence[str]], where: str):
  """Validation and test recordings must not appear in any other split.

  (`train` and `sync_pairs` may share recordings: the method never uses the
  labels of `sync_pairs`.)
  """
  for held_out in ("validation", "test"):
    for other, ids in splits.items():
      if other == held_out:
        continue
      shared = sorted(set(splits.get(held_out, ())) & set(ids))
      if shared:
        raise DataError(
            f"{where}: {len(shared)} recordings are in both `{held_out}` and "
            f"`{other}` (e.g. {shared[:3]}); held-out splits must be disjoint")


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
      fields = (line.split("\t", 2) if "\t" in line
                else line.strip().split(None, 2))
      if len(fields) < 3 or not fields[2].strip():
        raise DataError(f"{path}:{number}: expected `start<TAB>end<TAB>label`, "
                        f"got {line!r}")
      try:
        start, end = int(fields[0]), int(fields[1])
      except ValueError:
        raise DataError(f"{path}:{number}: start and end must be integer frame "
                        f"numbers, got {line!r}") from None
      if end < start or start < 0:
        raise DataError(f"{path}:{number}: segment ends before it starts or "
                        f"starts before frame 0: {line!r}")
      segments.append(Segment(start, end, fields[2].strip(), number))
  return segments


def looks_like_segments(path: os.PathLike) -> bool:
  """True if every line is `<int> <int> <label>` (else: one label per frame)."""
  lines = read_lines(path)
  pattern = re.compile(r"^\s*\d+\s+\d+\s+\S")
  return bool(lines) and all(pattern.match(l) for l in lines)


def label_id(name: str, classes: Mapping[str, int], where: str, policy: RepairPolicy,
             unknown: collections.Counter, class_table: str) -> int:
  """The id of a label name; unknown names raise or (policy) become -100."""
  if name in classes:
    return classes[name]
  if policy.unknown_label == "error":
    raise DataError(
        f"{where}: unknown label {name!r}: it is not in the class table "
        f"{class_table}. Add it there, fix the annotation, or "
        f"{repair_fix(unknown_label='ignore')} to leave those frames "
        "unscored")
  unknown[name] += 1
  return IGNORE_LABEL


@dataclasses.dataclass
class Labels:
  """Per-frame label ids starting at frame `start`, and what making them repaired."""
  values: np.ndarray
  start: int
  source: str
  repairs: list = dataclasses.field(default_factory=list)  # (kind, frames, detail)

  def subsample(self, origin: int, step: int) -> "Labels":
    """The labels of frames `origin + step * i`, indexed by i."""
    first = -(-(self.start - origin) // step)  # first i with origin + step*i >= start
    offset = origin + step * first - self.start
    return Labels(self.values[offset::step], first, self.source, list(self.repairs))


def segments_to_labels(segments: Sequence[Segment], classes: Mapping[str, int], *,
                       source: str, class_table: str, policy: RepairPolicy,
                       start: int | None = None, length: int | None = None,
                       gap_label: int = IGNORE_LABEL) -> Labels:
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
    ident = label_id(seg.label, classes, f"{source}:{seg.line}", policy, unknown,
                     class_table)
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
    labels.repairs.append(("overlapping_segments", overlap,
                           f"{source}: overlapping segments, the later line wins"))
  if gaps and gap_label == IGNORE_LABEL:
    labels.repairs.append(("unlabeled_gap", gaps,
                           f"{source}: frames no segment covers are left unscored"))
  if unknown:
    labels.repairs.append(("unknown_label", unknown_frames,
                           f"{source}: unknown labels {sorted(unknown)} left unscored"))
  labels.values = values.astype(np.int32)
  return labels


def frame_labels(path: os.PathLike, classes: Mapping[str, int], *, class_table: str,
                 policy: RepairPolicy) -> Labels:
  """One label name per line (MS-TCN `groundTruth` style), frame 0 first."""
  unknown: collections.Counter = collections.Counter()
  with open(path, encoding="utf-8") as f:
    lines = [l.strip() for l in f.read().splitlines()]
  while lines and not lines[-1]:
    lines.pop()
  values = np.asarray([label_id(name, classes, f"{path}:{i + 1}", policy, unknown,
                                class_table)
                       for i, name in enumerate(lines)], np.int32)
  labels = Labels(values, 0, str(path))
  if unknown:
    labels.repairs.append(("unknown_label", sum(unknown.values()),
                           f"{path}: unknown labels {sorted(unknown)} left unscored"))
  return labels


# ------------------------------------------------------------------------------------------------
# Feature inputs.


def load_feature_file(path: os.PathLike) -> np.ndarray:
  """A (T, D) feature array from `.npy` (memory-mapped) or `.pt` (needs torch)."""
  path = os.fspath(path)
  if path.endswith(".npy"):
    try:
      array = np.load(path, mmap_mode="r")  # read frames on demand
    except ValueError:  # e.g. an empty array cannot be memory-mapped
      array = np.load(path)
  elif path.endswith(".pt"):
    try:
      import torch  # pylint: disable=import-outside-toplevel
    except ImportError:
      raise DataError(
          f"{path}: reading .pt features needs torch (pip install torch), or "
          "convert them once to .npy next to it: python -c \"import sys, numpy, "
          "torch; [numpy.save(p[:-3] + '.npy', torch.load(p).float().numpy()) "
          "for p in sys.argv[1:]]\" <files>") from None
    array = torch.load(path, map_location="cpu").float().numpy()
  else:
    raise DataError(f"{path}: features must be .npy or .pt files")
  if array.ndim != 2:
    raise DataError(f"{path}: features must have shape (frames, dim), got "
                    f"{array.shape}")
  return array


class LmdbViews:
  """Per-frame features in LMDB environments (one per view), read one recording at a time.

  Values are raw float32 vectors (`np.frombuffer`), as in the Assembly101 TSM
  and DINOv2 releases.
  """

  def __init__(self):
    self._envs = {}

  def env(self, path: str):
    if path not in self._envs:
      if not os.path.exists(os.path.join(path, "data.mdb")):
        raise DataError(f"no LMDB environment at {path} (expected "
                        f"{os.path.join(path, 'data.mdb')}): check the manual dir "
                        "layout in the builder's README")
      try:
        import lmdb  # pylint: disable=import-outside-toplevel
      except ImportError:
        raise DataError("reading LMDB features needs the lmdb package: "
                        "pip install lmdb") from None
      self._envs[path] = lmdb.open(path, readonly=True, lock=False, readahead=False)
    return self._envs[path]

  def read(self, path: str, keys: Sequence[str], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(len(keys), dim) float32 features and the (len(keys),) mask of keys found."""
    out = np.zeros((len(keys), dim), np.float32)
    present = np.zeros(len(keys), bool)
    with self.env(path).begin(buffers=True) as txn:
      for i, key in enumerate(keys):
        value = txn.get(key.encode("utf-8"))
        if value is None:
          continue
        if len(value) != 4 * dim:
          raise DataError(
              f"{path}: key {key!r} holds {len(value)} bytes, a "
              f"{len(value) / 4:g}-D float32 vector, but the config declares "
              f"feature_dim={dim}; use a config with the data's dimension")
        vector = np.frombuffer(value, np.float32)
        out[i] = vector
        present[i] = True
    return out, present


# ------------------------------------------------------------------------------------------------
# Alignment.


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
  """
  streams: dict
  frame_origin: int = 0
  frame_step: int = 1


@dataclasses.dataclass
class Recording:
  """A planned example: ids, view names and a loader run when its turn comes."""
  video_id: str
  recording_id: str
  exo_view: str
  ego_view: str
  load: Callable[[], Loaded]


def align(video_id: str, streams: Mapping[str, Stream], policy: RepairPolicy,
          feature_dim: int, report: Callable[[str, int, str], None],
          origin: int = 0, step: int = 1) -> tuple[dict[str, np.ndarray], int]:
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
    if name in ("exo", "ego") and (s.values.ndim != 2 or s.values.shape[1] != feature_dim):
      raise DataError(
          f"{video_id}: {name} features from {s.source} have shape "
          f"{s.values.shape} but the config declares feature_dim={feature_dim}; "
          f"use a config with feature_dim={s.values.shape[-1]}")
    length = len(s.values)
    if length == 0:
      raise MissingData("empty", f"{video_id}: {name} ({s.source}) has no frames")
    if s.present is None:
      first, last = 0, length
    else:
      found = np.flatnonzero(s.present)
      if not len(found):
        raise MissingData("missing_view",
                          f"{video_id}: {name} ({s.source}) has none of its frames")
      first, last = int(found[0]), int(found[-1]) + 1
    ranges[name] = (s.start + first, s.start + last)
  lo = max(r[0] for r in ranges.values())
  hi = min(r[1] for r in ranges.values())
  if hi <= lo:
    raise MissingData("empty", f"{video_id}: the streams do not overlap in time: "
                      + ", ".join(f"{n} frames {frames(a, b)}" for n, (a, b) in ranges.items()))

  def describe():
    parts = []
    for n, s in streams.items():
      extent = (s.start, s.start + len(s.values))
      part = f"{n} ({s.source}) frames {frames(*extent)}"
      parts.append(part + (f" with data in {frames(*ranges[n])}"
                           if ranges[n] != extent else ""))
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
          f"{repair_fix(max_trim_frames=cut)}")
    if cut:
      report("trim", cut, f"{name} ({s.source}): cut to frames {frames(lo, hi)} "
             f"from {frames(s.start, s.start + len(s.values))}")
    values = s.values[lo - s.start:hi - s.start]
    if s.present is not None:
      missing = np.flatnonzero(~s.present[lo - s.start:hi - s.start])
      if len(missing):
        filled += len(missing)
        if filled > policy.max_fill_frames or len(missing) == len(values):
          shown = ", ".join(str(origin + step * (lo + int(i))) for i in missing[:5])
          raise DataError(
              f"{video_id}: {name} ({s.source}) lacks {len(missing)} frames inside "
              f"{frames(lo, hi)} (frames {shown}{'...' if len(missing) > 5 else ''}), "
              f"more than max_fill_frames={policy.max_fill_frames}. Re-extract "
              f"them, or {repair_fix(max_fill_frames=filled)} to copy the "
              "previous frame")
        values = np.array(values)
        index = np.arange(len(values))
        index[missing] = -1
        np.maximum.accumulate(index, out=index)  # last present frame at or before
        first = int(np.flatnonzero(index >= 0)[0])
        index[:first] = first  # a gap at the start takes the next present frame
        values = values[index]
        report("fill", len(missing), f"{name} ({s.source}): frames "
               f"{[origin + step * (lo + int(i)) for i in missing[:10]]} copied from "
               "the previous frame")
    out[name] = values
  return out, lo


def check_finite(video_id: str, name: str, source: str, values: np.ndarray,
                 policy: RepairPolicy, report: Callable[[str, int, str], None],
                 first_frame: int = 0, step: int = 1) -> np.ndarray:
  """Non-finite feature rows: an error naming the (source) frame, or zeros (policy)."""
  bad = ~np.isfinite(values).all(axis=1)
  if not bad.any():
    return values
  rows = np.flatnonzero(bad)
  if policy.nan == "error":
    raise DataError(
        f"{video_id}: {name} features from {source} have NaN/inf values in "
        f"{len(rows)} frames (first: frame {first_frame + step * int(rows[0])}). Re-extract "
        f"them, or {repair_fix(nan='zero')} to zero those frames")
  values = np.array(values)
  values[bad] = 0
  report("nan_zeroed", len(rows), f"{name} ({source}): non-finite rows set to 0")
  return values


# ------------------------------------------------------------------------------------------------
# The shared TFDS builder.


@contextlib.contextmanager
def deterministic_serialization():
  """Makes tfds write the same bytes in every process.

  tfds serializes each `tf.train.Example` with plain `SerializeToString()`,
  whose feature-map order is the protobuf runtime's hash order, different in
  every process; `deterministic=True` sorts the map keys.
  """
  cls = example_serializer.ExampleSerializer
  original = cls.serialize_example

  def serialize_example(self, example):
    return self.get_tf_example(example).SerializeToString(deterministic=True)

  cls.serialize_example = serialize_example
  try:
    yield
  finally:
    cls.serialize_example = original


def example_features(feature_dim: int, storage_dtype: str) -> tfds.features.FeaturesDict:
  """The fields every real-data example has (those of `synthetic_sync` and more)."""
  dtype = STORAGE_DTYPES[storage_dtype]
  return tfds.features.FeaturesDict({
      "exo": tfds.features.Tensor(shape=(None, feature_dim), dtype=dtype),
      "ego": tfds.features.Tensor(shape=(None, feature_dim), dtype=dtype),
      "labels": tfds.features.Tensor(shape=(None,), dtype=np.int32),
      "ego_labels": tfds.features.Tensor(shape=(None,), dtype=np.int32),
      "video_id": tfds.features.Text(),
      "recording_id": tfds.features.Text(),
      "exo_view": tfds.features.Text(),
      "ego_view": tfds.features.Text(),
      "start_frame": tfds.features.Scalar(dtype=np.int32),
  })


@dataclasses.dataclass(eq=False)
class SyncConfig(tfds.core.BuilderConfig):
  """Options every real-data builder has.

  feature_dim: the features' dimension; a build fails naming the file if the
    data differ (it is a config field because `info` must know it before the
    data are read, e.g. when a dataset is only read back).
  storage_dtype: "float32" or "float16" (half the disk; the trainer casts back
    to float32).
  policy: what may be repaired instead of failing (`RepairPolicy`, or a
    dict of its fields, as `tfds build --config='{...}'` passes it); a
    `repair.json` in the manual dir overrides its fields.
  """
  feature_dim: int = 0
  storage_dtype: str = "float32"
  policy: RepairPolicy = RepairPolicy()

  def __post_init__(self):
    if isinstance(self.policy, dict):
      known = [f.name for f in dataclasses.fields(RepairPolicy)]
      unknown = sorted(set(self.policy) - set(known))
      if unknown:
        raise ValueError(f"config {self.name!r}: policy field {unknown[0]!r} "
                         f"is unknown; use some of {', '.join(known)}")
      self.policy = RepairPolicy(**self.policy)
    if self.feature_dim <= 0:
      raise ValueError(f"config {self.name!r}: feature_dim must be set (> 0)")
    if self.storage_dtype not in STORAGE_DTYPES:
      raise ValueError(f"storage_dtype must be one of {list(STORAGE_DTYPES)}, "
                       f"not {self.storage_dtype!r}")


@dataclasses.dataclass
class Plan:
  """What a builder found in the manual dir: classes and recordings per split."""
  class_names: list[str]
  background_classes: list[str]
  splits: dict[str, list[Recording]]
  metadata: dict = dataclasses.field(default_factory=dict)


class BuildMessages:
  """TFDS's build messages ("Downloading and preparing dataset Unknown
  size ...", printed to stdout) as a line each of the project's logger."""

  def _log_download_bytes(self):
    log.info("building %s in %s ...", self.info.full_name, self.data_dir)

  def _log_download_done(self):
    log.info("built %s in %s", self.info.full_name, self.data_dir)


PREVIOUS_SUFFIX = ".previous"
_KEEPING_PATHS = {}


class _SetAsideOnDelete:
  """Mixed into the path class of one dataset folder: its rmtree() renames
  the folder to `<folder>.previous` instead (other paths delete as usual)."""

  folder = ""

  def rmtree(self, missing_ok: bool = False) -> None:
    if os.fspath(self) != self.folder or not self.exists():
      return super().rmtree(missing_ok=missing_ok)
    backup = epath.Path(self.folder + PREVIOUS_SUFFIX)
    if backup.exists():  # left by a crash after a rebuild had succeeded
      backup.rmtree()
    logging.warning("Setting %s aside as %s until the rebuild succeeds",
                    self.folder, backup)
    epath.Path(self.folder).rename(backup)


class KeepPreviousBuild:
  """Mixin of the project's builders: a forced rebuild (`tfds build
  --overwrite`, or `download_mode=FORCE_REDOWNLOAD` / REUSE_CACHE_IF_EXISTS
  from Python) never leaves less than before.

  Both tfds paths delete the dataset folder with `data_path.rmtree()` before
  the new build starts (the `tfds build` command does it before any of the
  builder's code runs but its constructor). Here `data_path` is a path whose
  rmtree() sets the folder aside as `<folder>.previous`; the build then
  writes into tfds' temporary folder, and `<folder>.previous` is deleted
  after success or renamed back after a failure (or, if the process died,
  by the next build or opening of that dataset).
  """

  @property
  def data_path(self):
    path = super().data_path
    folder = os.fspath(path)
    key = (type(path), folder)
    if key not in _KEEPING_PATHS:
      _KEEPING_PATHS[key] = type(f"Keeping{type(path).__name__}", (
          _SetAsideOnDelete, type(path)), {"folder": folder})
    return _KEEPING_PATHS[key](folder)

  def download_and_prepare(self, **kwargs):
    config = kwargs.get("download_config") or tfds.download.DownloadConfig()
    overwrite = config.download_mode.overwrite_dataset
    path = epath.Path(self.data_dir)
    backup = epath.Path(self.data_dir + PREVIOUS_SUFFIX)
    if path.exists() and backup.exists():  # a crash after a good rebuild
      backup.rmtree()
    if path.exists() and overwrite:
      self.data_path.rmtree()  # sets it aside
    if not backup.exists():
      return super().download_and_prepare(**kwargs)
    if not overwrite:  # a forced rebuild died: its previous build is back
      backup.rename(path)
      return super().download_and_prepare(**kwargs)
    try:
      result = super().download_and_prepare(**kwargs)
    except BaseException:
      if path.exists():
        path.rmtree()
      backup.rename(path)
      logging.warning("The rebuild of %s failed: the previous build was "
                      "kept", self.data_dir)
      raise
    backup.rmtree()
    return result


class SyncFeatureBuilder(KeepPreviousBuild, BuildMessages,
                         tfds.core.GeneratorBasedBuilder):
  """Aligned exo/ego feature sequences from manually downloaded files.

  Subclasses implement `_plan(manual_dir)`; this class does the rest: fields,
  metadata (`class_names`, `background_classes`, `feature_dim`, `repairs`,
  `summary`, `policy`), alignment, repairs and byte-deterministic
  serialization. `self.policy` is the repair policy in force: the config's,
  with the fields of `<manual_dir>/repair.json`.
  """

  @abc.abstractmethod
  def _plan(self, manual_dir: str) -> Plan:
    """Reads annotations and lists the recordings of each split (no features yet)."""

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    return self.dataset_info_from_configs(
        features=example_features(config.feature_dim, config.storage_dtype),
        supervised_keys=None,
        metadata=tfds.core.MetadataDict({
            "feature_dim": config.feature_dim,
            "storage_dtype": config.storage_dtype,
            "config": _jsonable(config)}),
    )

  def _download_and_prepare(self, dl_manager, download_config=None):
    self._repairs = RepairLog()
    self._summary = {}
    with deterministic_serialization():
      super()._download_and_prepare(dl_manager, download_config)
    self.info.metadata["summary"] = {s: self._summary[s] for s in SPLITS
                                     if s in self._summary}
    self.info.metadata["repairs"] = self._repairs.to_metadata()

  @property
  def policy(self) -> RepairPolicy:
    return getattr(self, "_policy", None) or self.builder_config.policy

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manual_dir = os.fspath(dl_manager.manual_dir)
    self._policy = read_repair_file(manual_dir, self.builder_config.policy)
    self.info.metadata["policy"] = dataclasses.asdict(self._policy)
    plan = self._plan(manual_dir)
    if set(plan.splits) != set(SPLITS):
      raise DataError(f"{self.name}: splits {sorted(plan.splits)} instead of "
                      f"{list(SPLITS)}")
    for split, recordings in plan.splits.items():
      if not recordings:
        raise DataError(f"{self.name}: split `{split}` lists no recording; check "
                        f"the split lists in {manual_dir}")
      ids = [r.video_id for r in recordings]
      if len(set(ids)) != len(ids):
        raise DataError(f"{self.name}: split `{split}` lists a video twice: "
                        f"{[i for i, c in collections.Counter(ids).items() if c > 1][:3]}")
    check_disjoint({s: sorted({r.recording_id for r in rs})
                    for s, rs in plan.splits.items()}, f"{self.name} in {manual_dir}")
    self.info.metadata.update({
        "class_names": list(plan.class_names),
        "background_classes": list(plan.background_classes),
        **plan.metadata})
    return {split: self._generate_examples(split, plan.splits[split],
                                           {n: i for i, n in enumerate(plan.class_names)})
            for split in SPLITS}

  def _generate_examples(self, split: str, recordings: Sequence[Recording],
                         classes: Mapping[str, int]):
    summary = self._summary.setdefault(
        split, {"listed": len(recordings), "examples": 0, "skipped": 0, "frames": 0})
    for recording in recordings:
      example = self._example(split, recording, len(classes))
      if example is None:
        summary["skipped"] += 1
        continue
      summary["examples"] += 1
      summary["frames"] += int(len(example["labels"]))
      yield recording.video_id, example
    if not summary["examples"]:
      reasons = [e["detail"] for e in self._repairs.entries if e["split"] == split]
      raise DataError(f"split `{split}`: no example left, all {len(recordings)} "
                      f"listed recordings were skipped: {reasons[:3]}")

  def _example(self, split: str, recording: Recording, num_classes: int) -> dict | None:
    """One aligned example, or None if the policy skips the recording."""
    config = self.builder_config
    policy = self.policy
    video_id = recording.video_id

    def report(kind, frames, detail):
      self._repairs.add(split, video_id, kind, frames, detail)

    try:
      loaded = recording.load()
      origin, step = loaded.frame_origin, loaded.frame_step
      streams = {}
      for name, value in loaded.streams.items():
        if isinstance(value, Labels):
          for kind, frames, detail in value.repairs:
            report(kind, frames, detail)
          value = Stream(value.values, value.source, value.start)
        streams[name] = value
      arrays, start = align(video_id, streams, policy, config.feature_dim, report,
                            origin, step)
    except MissingData as e:
      field = "missing_view" if e.kind == "missing_view" else "empty"
      if getattr(policy, field) == "error":
        raise MissingData(e.kind, f"{e}; {repair_fix(**{field: 'skip'})} to "
                          "skip such recordings") from None
      report(f"skipped_{e.kind}", 0, str(e))
      return None
    length = len(arrays["exo"])
    dtype = STORAGE_DTYPES[config.storage_dtype]
    for view in ("exo", "ego"):
      source = streams[view].source
      values = check_finite(video_id, view, source, arrays[view], policy, report,
                            origin + step * start, step)
      values = np.asarray(values, dtype)
      if not np.isfinite(values).all():
        raise DataError(f"{video_id}: {view} features from {source} exceed the "
                        f"{config.storage_dtype} range; store them as float32")
      arrays[view] = values
    if "labels" not in arrays:
      arrays["labels"] = np.full(length, IGNORE_LABEL, np.int32)
    if "ego_labels" not in arrays:
      arrays["ego_labels"] = arrays["labels"]
    for name in ("labels", "ego_labels"):
      bad = (arrays[name] != IGNORE_LABEL) & ((arrays[name] < 0) |
                                              (arrays[name] >= num_classes))
      if bad.any():
        raise DataError(f"{video_id}: {name} ({streams.get(name, streams['exo']).source}) "
                        f"has ids outside 0..{num_classes - 1}")
    return {
        "exo": arrays["exo"], "ego": arrays["ego"],
        "labels": np.asarray(arrays["labels"], np.int32),
        "ego_labels": np.asarray(arrays["ego_labels"], np.int32),
        "video_id": video_id, "recording_id": recording.recording_id,
        "exo_view": recording.exo_view, "ego_view": recording.ego_view,
        "start_frame": np.int32(origin + step * start),
    }


def _jsonable(config: SyncConfig) -> dict:
  """The config's own fields (not tfds' name/version/...), JSON-friendly."""
  skip = {f.name for f in dataclasses.fields(tfds.core.BuilderConfig)}
  out = {}
  for field in dataclasses.fields(config):
    if field.name in skip:
      continue
    value = getattr(config, field.name)
    if dataclasses.is_dataclass(value):
      value = dataclasses.asdict(value)
    elif isinstance(value, tuple):
      value = list(value)
    out[field.name] = value
  json.dumps(out)  # fail early on a non-JSON field
  return out


def require(path: os.PathLike, what: str, fix: str) -> str:
  """`path` if it exists, else a DataError saying what it is and where to get it."""
  if not os.path.exists(path):
    raise DataError(f"missing {what}: {path}. {fix}")
  return os.fspath(path)
