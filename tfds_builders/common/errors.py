"""The errors of a build: what a user can fix names the file and the fix.

A `DataError` that ends a program (`tfds build` included) prints one line
`error: <message>` instead of a traceback (installed on import).
"""

from __future__ import annotations

import os
import sys


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


def require(path: os.PathLike, what: str, fix: str) -> str:
  """`path` if it exists, else a DataError saying what it is and where to get it."""
  if not os.path.exists(path):
    raise DataError(f"missing {what}: {path}. {fix}")
  return os.fspath(path)
