"""Dynamic time warping with a Sakoe-Chiba band, compiled with JAX.

Used to align an ego sequence to an exo sequence without trusting their
timestamps (the `align_pseudo_label` baseline). It must handle 10k x 10k
frame pairs, so the full n x m matrix is never built: row i of the cost
matrix only covers a fixed-width band of columns [lo_i, lo_i + width) around
the length-scaled diagonal, the rows are a `jax.lax.scan`, and the left-to-
right dependency inside a row (D[i, j] needs D[i, j-1]) is a min-plus
recurrence solved by `jax.lax.associative_scan` in O(log width) depth. Only
int8 back-pointers (n x width) are kept; the path is traced back on the host.

(dtaidistance's C code was weighed: its path functions keep the full
(n+1) x (m+1) float64 matrix, 800 MB at 10k x 10k, and only know the squared
euclidean cost.)

Step pattern: (i-1, j-1), (i-1, j), (i, j-1); the path runs from (0, 0) to
(n-1, m-1); the cost of a path is the sum of its cells' costs. Ties prefer
the diagonal, then (i-1, j), then (i, j-1).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

METRICS = ("cosine", "euclidean", "sqeuclidean")
DIAG, UP, LEFT = 0, 1, 2  # back-pointers: where cell (i, j) came from
_BUCKET = 64  # sequence and band sizes are rounded up to share compilations


def _round_up(value: int, multiple: int) -> int:
  return -(-value // multiple) * multiple


def band(n: int, m: int, radius: int | None) -> tuple[np.ndarray, int]:
  """The Sakoe-Chiba band: row i covers columns [starts[i], starts[i] + width).

  The band is centred on the diagonal scaled to the two lengths, `radius`
  columns on each side (None: no band), shifted inwards at the borders so
  every row has the same width. The radius is raised to the slope when one
  sequence is much longer, so that a path always exists.
  """
  if n < 1 or m < 1:
    raise ValueError(f"DTW needs non-empty sequences, got lengths {n}, {m}")
  if radius is None:
    return np.zeros(n, np.int64), m
  if radius < 0:
    raise ValueError(f"band radius must be >= 0, got {radius}")
  slope = (m - 1) / (n - 1) if n > 1 else m  # one row must span all of y
  radius = max(int(radius), math.ceil(slope))
  width = min(m, 2 * radius + 1)
  centre = np.floor(np.arange(n) * slope + 1e-9).astype(np.int64)
  return np.clip(centre - radius, 0, m - width), width


def _prepare(x: jax.Array, metric: str) -> jax.Array:
  x = jnp.asarray(x, jnp.float32)
  if metric == "cosine":
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
  return x


def _cost_row(row: jax.Array, ys: jax.Array, metric: str) -> jax.Array:
  if metric == "cosine":  # inputs already unit length
    return 1.0 - ys @ row
  squared = jnp.sum((ys - row) ** 2, axis=-1)
  return squared if metric == "sqeuclidean" else jnp.sqrt(squared)


def _min_plus(earlier, later):
  """Composes x -> min(b, x + c) maps (the row recurrence), earlier first."""
  b1, c1 = earlier
  b2, c2 = later
  return jnp.minimum(b2, b1 + c2), c1 + c2


@functools.partial(jax.jit, static_argnames=("width", "metric"))
def _banded_dtw(x, y, starts, n, m, band_width, *, width: int, metric: str):
  """Accumulated costs and back-pointers of the band, row by row.

  x (N, D) and y (M + width, D) are zero-padded; rows >= n and band offsets
  >= `band_width` (the true width; `width` is its padded size) cost inf.
  Returns the accumulated cost D[i, m-1] of every row (inf where outside the
  band) and the back-pointers (N, width) int8.
  """
  x, y = _prepare(x, metric), _prepare(y, metric)
  offsets = jnp.arange(width)
  inf = jnp.array(jnp.inf, jnp.float32)

  def row_step(carry, inputs):
    previous, previous_start = carry
    i, row, start = inputs
    window = jax.lax.dynamic_slice_in_dim(y, start, width)
    cost = _cost_row(row, window, metric)
    valid = (offsets < band_width) & (i < n)
    cost = jnp.where(valid, cost, inf)
    # The previous row, re-indexed to this row's columns. Its column
    # start - 1 is the diagonal of offset 0; row 0 sees a virtual 0 there.
    corner = jnp.where(i == 0, 0.0, inf)
    padded = jnp.concatenate([corner[None], previous, jnp.full((width,), inf)])
    shift = start - previous_start
    up = jax.lax.dynamic_slice_in_dim(padded, shift + 1, width)
    diag = jax.lax.dynamic_slice_in_dim(padded, shift, width)
    from_above = jnp.minimum(diag, up)
    # D[j] = cost[j] + min(from_above[j], D[j-1]): a min-plus prefix scan.
    accumulated, _ = jax.lax.associative_scan(
      _min_plus, (cost + from_above, cost)
    )
    left = jnp.concatenate([jnp.full((1,), inf), accumulated[:-1]])
    pointer = jnp.where(
      left < from_above, LEFT, jnp.where(diag <= up, DIAG, UP)
    ).astype(jnp.int8)
    end = jnp.clip(m - 1 - start, 0, width - 1)
    last = jnp.where(m - 1 - start < width, accumulated[end], inf)
    return (accumulated, start), (pointer, last)

  rows = jnp.arange(x.shape[0])
  init = (jnp.full((width,), inf), starts[0])
  _, (pointers, last) = jax.lax.scan(row_step, init, (rows, x, starts))
  return last, pointers


def dtw(
  x, y, *, radius: int | None = None, metric: str = "cosine"
) -> tuple[float, np.ndarray]:
  """Aligns x (n, D) with y (m, D). Returns the path cost and the path.

  The path is an int array (L, 2) of (i, j) index pairs from (0, 0) to
  (n-1, m-1), monotone in both. `radius`: Sakoe-Chiba band half-width in
  columns around the length-scaled diagonal (None: unconstrained).
  """
  if metric not in METRICS:
    raise ValueError(f"metric {metric!r} is unknown: use one of {METRICS}")
  x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
  if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
    raise ValueError(
      f"DTW needs (n, D) and (m, D) arrays, got {x.shape} and {y.shape}"
    )
  n, m = len(x), len(y)
  starts, width = band(n, m, radius)
  # Padded sizes: one compiled program serves many lengths.
  rows = _round_up(n, _BUCKET)
  padded_width = min(_round_up(width, _BUCKET), _round_up(m, _BUCKET))
  columns = _round_up(m, _BUCKET) + padded_width
  x_padded = np.zeros((rows, x.shape[1]), np.float32)
  x_padded[:n] = x
  y_padded = np.zeros((columns, y.shape[1]), np.float32)
  y_padded[:m] = y
  starts_padded = np.full(rows, starts[-1], np.int32)
  starts_padded[:n] = starts
  last, pointers = _banded_dtw(
    x_padded,
    y_padded,
    starts_padded,
    np.int32(n),
    np.int32(m),
    np.int32(width),
    width=padded_width,
    metric=metric,
  )
  cost = float(last[n - 1])
  if not np.isfinite(cost):
    raise ValueError(
      f"DTW of {n} x {m} found no finite path (non-finite "
      "features, or zero vectors under the cosine cost?)"
    )
  return cost, _trace_back(np.asarray(pointers), starts, n, m)


def _trace_back(
  pointers: np.ndarray, starts: np.ndarray, n: int, m: int
) -> np.ndarray:
  """The path (L, 2) from (0, 0) to (n-1, m-1) that the pointers encode."""
  i, j = n - 1, m - 1
  path = [(i, j)]
  while i or j:
    pointer = pointers[i, j - starts[i]]
    if pointer == DIAG:
      i, j = i - 1, j - 1
    elif pointer == UP:
      i -= 1
    else:
      j -= 1
    path.append((i, j))
  return np.asarray(path[::-1], np.int64)
