"""The clock model of a synchronized recording and what it moves.

An ego frame index t_ego shows the instant the exo stream shows at
t_exo = rate * t_ego + offset (frames of each stream). The recorded
timestamps are rate 1, offset 0. A `Clock` maps ego time to exo time and
back; `aligned_indices` gives, for the exo frames that both streams cover,
the ego frame each one is paired with, which is how a training pair is
re-synchronized (the ego stream resampled onto the exo timeline, the frames
outside the overlap dropped).
"""

from __future__ import annotations

import dataclasses

import numpy as np

# The recorded timestamps.
IDENTITY = (1.0, 0.0)


@dataclasses.dataclass(frozen=True)
class Clock:
  """t_exo = rate * t_ego + offset."""

  rate: float = 1.0
  offset: float = 0.0

  def exo_time(self, ego_time):
    return self.rate * np.asarray(ego_time, np.float64) + self.offset

  def ego_time(self, exo_time):
    return (np.asarray(exo_time, np.float64) - self.offset) / self.rate


def aligned_indices(
  clock: Clock, exo_length: int, ego_length: int
) -> tuple[int, int, np.ndarray]:
  """(lo, hi, ego_index): exo frames [lo, hi) are those whose ego instant
  lies inside the ego recording; exo frame lo + k is paired with ego frame
  ego_index[k] (the nearest). lo == hi when the streams do not overlap."""
  exo = np.arange(exo_length)
  ego = np.rint(clock.ego_time(exo))
  inside = np.flatnonzero((ego >= 0) & (ego <= ego_length - 1))
  if not len(inside):
    return 0, 0, np.zeros(0, np.int64)
  lo, hi = int(inside[0]), int(inside[-1]) + 1
  return lo, hi, ego[lo:hi].astype(np.int64)


def map_error(clock: Clock, true_exo_time: np.ndarray) -> np.ndarray:
  """|estimated - true| exo instant of every ego frame (frames)."""
  t = np.arange(len(true_exo_time))
  return np.abs(clock.exo_time(t) - np.asarray(true_exo_time, np.float64))


def shifted_exo_time(length: int, shift: int) -> np.ndarray:
  """The true map of a recording whose ego frames were shifted by `shift`
  frames (ego frame t shows exo frame t + shift; config.data.sync_offset)."""
  return np.arange(length, dtype=np.float64) + shift
