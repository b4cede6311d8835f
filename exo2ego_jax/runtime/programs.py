"""Compiled programs shared by the runs of one process.

Runs that differ only in what their programs take as arguments (the seed,
the workdir, the teacher's weights) trace the same programs: a study's
seeds, a sweep's settings that only move data. JAX caches compiled executables
per jitted function object, and a run that builds new jitted functions
traces, lowers and (from the persistent cache) loads them again: 4 to 7 s a
run of the synthetic benchmark. `cached(key, build)` keeps one jitted
function per key for the process instead. A key holds everything its
program is built from: the method (a frozen, hashable dataclass whose fields
are its static settings), the optimiser settings, the output sharding.
"""

from __future__ import annotations

from typing import Callable, TypeVar

T = TypeVar("T")

_PROGRAMS: dict = {}


def cached(key: tuple, build: Callable[[], T]) -> T:
  """The program of `key`, built by `build()` on the first call in this
  process (every call, for a key that cannot be hashed: a method holding an
  array, say)."""
  try:
    program = _PROGRAMS.get(key)
  except TypeError:  # unhashable: build it for this call alone
    return build()
  if program is None:
    program = _PROGRAMS[key] = build()
  return program


def holds(key: tuple) -> bool:
  """Whether the program of `key` was built in this process already."""
  try:
    return key in _PROGRAMS
  except TypeError:  # unhashable: never kept
    return False


def clear() -> None:
  """Forgets the shared programs (their compiled executables go with them)."""
  _PROGRAMS.clear()
