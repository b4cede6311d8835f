"""Checks that a feature source has the layout a config reads, before a build.

A release read with the wrong key layout has no key the builder asks for, and
one of another backbone has vectors of another size: both would otherwise
surface late (every recording skipped, or a message about the first key), so
they are refused up front, naming the file and the layout expected.
"""

from __future__ import annotations

import re
import string

import numpy as np

from tfds_builders.common.errors import DataError
from tfds_builders.common.features import LmdbViews

# What each key field may hold when a layout is matched against a real key.
_FIELD_PATTERNS = {
  "video": r"(?:assembly|disassembly|disassebly)_[^/]+",
  "recording": r"[^/]+",
  "frame": r"\d+",
}


def key_pattern(
  key_format: str, patterns: dict | None = None, **fixed: str
) -> re.Pattern:
  """A regex of the keys `key_format` makes; `fixed` fields are literal,
  `patterns` gives regexes of fields (else `_FIELD_PATTERNS`)."""
  patterns = {**_FIELD_PATTERNS, **(patterns or {})}
  parts = []
  for literal, field, _, _ in string.Formatter().parse(key_format):
    parts.append(re.escape(literal))
    if field is not None:
      parts.append(
        re.escape(fixed[field])
        if field in fixed
        else patterns.get(field, r"[^/]+")
      )
  return re.compile("".join(parts) + r"\Z")


def example_key(key_format: str, **fields: str) -> str:
  """`key_format` shown with placeholders, e.g. `<recording>/C10119_rgb/...`."""
  shown = {"video": "<video>", "recording": "<recording>", **fields}
  return key_format.replace("{frame:010d}", "<frame:010d>").format(**shown)


def check_lmdb_layout(
  lmdb: LmdbViews,
  path: str,
  key_format: str,
  view: str,
  dim: int,
  config_name: str,
  fix: str,
  patterns: dict | None = None,
) -> None:
  """The first key of the LMDB at `path` has `key_format`'s layout and a
  `dim`-D float32 value; else a DataError naming the file and the layout."""
  expected = example_key(key_format, view=view)
  with lmdb.env(path).begin() as txn:
    cursor = txn.cursor()
    if not cursor.first():
      raise DataError(
        f"{path}: the LMDB is empty; config {config_name!r} "
        f"reads keys {expected!r}. {fix}"
      )
    key = bytes(cursor.key()).decode("utf-8", "replace")
    value = bytes(cursor.value())
  if not key_pattern(key_format, patterns, view=view).match(key):
    raise DataError(
      f"{path}: key {key!r} is not in the layout {expected!r} "
      f"that config {config_name!r} reads. {fix}"
    )
  if len(value) != 4 * dim:
    raise DataError(
      f"{path}: key {key!r} holds a {len(value) / 4:g}-D float32 "
      f"vector, but config {config_name!r} reads {dim}-D features. "
      f"{fix}"
    )


def last_frame(
  lmdb: LmdbViews, path: str, key_format: str, **fields: str
) -> int | None:
  """The largest frame number of the keys `key_format` makes with `fields`
  (zero-padded numbers sort as text), or None if there is no such key."""
  prefix = key_format.split("{frame", 1)[0].format(**fields).encode("utf-8")
  pattern = key_pattern(key_format, **fields)  # fields fixed: no patterns
  with lmdb.env(path).begin() as txn:
    cursor = txn.cursor()
    # The first key after every key with the prefix, then one step back.
    if cursor.set_range(prefix + b"\xff"):
      found = cursor.prev()
    else:
      found = cursor.last()
    key = bytes(cursor.key()).decode("utf-8", "replace") if found else ""
  match = re.search(r"(\d+)\D*\Z", key)
  if not key.startswith(prefix.decode("utf-8")) or not pattern.match(key):
    return None
  return int(match.group(1))


def rows_of_frames(
  values: np.ndarray, frames, first_frame: int
) -> tuple[np.ndarray, np.ndarray]:
  """Rows of a per-frame array (row 0 = frame `first_frame`) for `frames`,
  and the mask of those it has (the others are zeros)."""
  rows = np.asarray(list(frames), np.int64) - first_frame
  present = (rows >= 0) & (rows < len(values))
  out = np.zeros((len(rows), values.shape[1]), np.float32)
  out[present] = values[rows[present]]
  return out, present
