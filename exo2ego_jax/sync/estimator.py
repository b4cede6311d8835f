"""Estimating a recording's clock (t_exo = rate * t_ego + offset) from what
a run has without labels: a model's per-frame outputs (class probabilities
and decoder features) on the exo stream and on the ego stream.

The outputs of each stream are standardised per dimension over time; for
every candidate rate in [1 - max_rate, 1 + max_rate] the ego sequence is
resampled onto the exo time axis and its cross-correlation with the exo
sequence is computed for every offset in [-max_offset, max_offset] at once
(FFT), averaged over the frames the two overlap (offsets leaving less than
`min_overlap` of the shorter stream are not considered). The best (rate,
offset) wins. Its confidence is the peak's robust z-score against the
correlation at all other offsets of that rate: a recording with one clear
alignment scores high, one whose outputs match equally well at many offsets
(e.g. a repeated step, or no signal) scores low.

The estimate falls back to the recorded timestamps (rate 1, offset 0), with
the reason, where a stream is constant (no signal), the ego stream is too
short (`min_frames`, or under `min_overlap` of the exo stream), or the
confidence is under `min_confidence`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from exo2ego_jax.sync import clock as clock_lib

# Why an estimate fell back to the recorded timestamps.
NO_SIGNAL = "no signal (a stream is constant)"
TOO_SHORT = "too short"
LOW_CONFIDENCE = "low confidence"


@dataclasses.dataclass(frozen=True)
class Settings:
  """How the estimator searches and when it trusts its answer."""

  max_offset: int = 450  # frames searched each way
  max_rate: float = 0.01  # |rate - 1| searched (0: the rate is 1)
  rate_steps: int = 21  # rates tried in [1 - max_rate, 1 + max_rate]
  min_overlap: float = 0.5  # of the shorter stream, at any offset tried
  min_frames: int = 64  # shorter ego streams keep their timestamps
  min_confidence: float = 4.0  # robust z-score of the correlation peak


@dataclasses.dataclass(frozen=True)
class Estimate:
  """A recording's clock, how sure the estimator is, and whether it fell
  back to the timestamps (`fallback`: the reason, None when it did not)."""

  rate: float
  offset: float
  confidence: float
  fallback: str | None = None

  @property
  def clock(self) -> clock_lib.Clock:
    return clock_lib.Clock(self.rate, self.offset)


def standardized(signal: np.ndarray) -> np.ndarray:
  """Zero mean, unit variance per dimension over time (constant
  dimensions: zero)."""
  x = np.asarray(signal, np.float64)
  x = x - x.mean(axis=0)
  std = x.std(axis=0)
  return np.where(std > 1e-8, x / np.where(std > 1e-8, std, 1.0), 0.0)


def is_constant(signal: np.ndarray) -> bool:
  x = np.asarray(signal, np.float64)
  return len(x) < 2 or float(np.max(np.ptp(x, axis=0))) < 1e-6


def cross_correlation(
  x: np.ndarray, y: np.ndarray, lags: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
  """Mean over overlapping frames of <x[t + lag], y[t]>, and the overlap
  (frames), for each lag; x, y: (T, D) standardised sequences."""
  n = 1 << int(np.ceil(np.log2(len(x) + len(y))))
  spectrum = np.fft.rfft(x, n, axis=0) * np.conj(np.fft.rfft(y, n, axis=0))
  sums = np.fft.irfft(spectrum.sum(axis=1), n)[lags % n]
  overlap = np.minimum(len(x), lags + len(y)) - np.maximum(0, lags)
  return sums / np.maximum(overlap, 1), overlap


def resampled(y: np.ndarray, rate: float) -> np.ndarray:
  """The ego sequence on the exo time axis for a clock of `rate`: frame u
  is ego frame round(u / rate)."""
  length = int(np.floor(rate * (len(y) - 1))) + 1
  index = np.clip(np.rint(np.arange(length) / rate), 0, len(y) - 1)
  return y[index.astype(np.int64)]


def candidate_rates(settings: Settings) -> np.ndarray:
  if settings.max_rate <= 0 or settings.rate_steps < 2:
    return np.ones(1)
  return 1.0 + np.linspace(
    -settings.max_rate, settings.max_rate, settings.rate_steps
  )


def local_matches(
  exo: np.ndarray,
  ego: np.ndarray,
  clock: clock_lib.Clock,
  window: int = 128,
  search: int = 64,
) -> list[tuple[int, int]]:
  """(ego frame, exo frame) pairs: the centre of each ego window of
  `window` frames (half overlapping) and the centre of the exo window that
  correlates best with it within `search` frames of where `clock` puts it.
  What a plot of the estimated map draws as points around its line."""
  x, y = standardized(exo), standardized(ego)
  if len(x) < window or len(y) < window:
    return []
  exo_windows = np.lib.stride_tricks.sliding_window_view(x, window, axis=0)
  matches = []
  for start in range(0, len(y) - window + 1, window // 2):
    expected = int(np.rint(clock.exo_time(start)))
    lo = max(0, expected - search)
    hi = min(len(x) - window, expected + search)
    if hi < lo:
      continue
    candidates = exo_windows[lo : hi + 1]  # (n, D, window)
    scores = np.einsum("ndw,wd->n", candidates, y[start : start + window])
    best = lo + int(np.argmax(scores))
    matches.append((start + window // 2, best + window // 2))
  return matches


def estimate(
  exo: np.ndarray,
  ego: np.ndarray,
  settings: Settings = Settings(),
  ego_inputs: np.ndarray | None = None,
) -> Estimate:
  """The clock of one recording from per-frame model outputs of its exo
  (Tx, D) and ego (Te, D) streams (`ego_inputs`: the ego features the
  outputs were computed from, checked for a constant stream)."""
  fallback = None
  if (
    is_constant(exo)
    or is_constant(ego)
    or (ego_inputs is not None and is_constant(ego_inputs))
  ):
    fallback = NO_SIGNAL
  elif len(ego) < settings.min_frames or (
    len(ego) < settings.min_overlap * len(exo)
  ):
    fallback = TOO_SHORT
  if fallback:
    return Estimate(*clock_lib.IDENTITY, confidence=0.0, fallback=fallback)
  x, y = standardized(exo), standardized(ego)
  lags = np.arange(-settings.max_offset, settings.max_offset + 1)
  best = (-np.inf, 1.0, 0.0, 0.0)  # (peak, rate, offset, confidence)
  for rate in candidate_rates(settings):
    y_rate = resampled(y, rate)
    corr, overlap = cross_correlation(x, y_rate, lags)
    allowed = overlap >= settings.min_overlap * min(len(x), len(y_rate))
    if not allowed.any():
      continue
    corr = np.where(allowed, corr, -np.inf)
    peak = int(np.argmax(corr))
    if corr[peak] > best[0]:
      values = corr[allowed]
      spread = 1.4826 * np.median(np.abs(values - np.median(values)))
      confidence = (corr[peak] - np.median(values)) / max(spread, 1e-12)
      best = (corr[peak], float(rate), float(lags[peak]), float(confidence))
  _, rate, offset, confidence = best
  if not np.isfinite(best[0]):
    return Estimate(*clock_lib.IDENTITY, confidence=0.0, fallback=TOO_SHORT)
  if confidence < settings.min_confidence:
    return Estimate(
      *clock_lib.IDENTITY, confidence=confidence, fallback=LOW_CONFIDENCE
    )
  return Estimate(rate, offset, confidence)
