"""Temporal convolution by Winograd's minimal filtering algorithm, F(m, r).

A 'SAME'-padded convolution along time with an r-tap kernel computes each run
of m consecutive outputs from the m + r - 1 inputs under them. Done directly
that takes m * r multiply-adds per (input channel, output channel) pair;
minimal filtering takes m + r - 1, by moving tile and kernel into a
transformed domain where the convolution is elementwise:

  y = A^T [(G g) * (B^T d)]     d: one input tile, g: the kernel.

With channels, the elementwise product becomes one matmul per transformed
position (m + r - 1 of them, each over all tiles), and the transforms are
small constant-coefficient sums. For C2F-TCN's 5-tap kernels F(4, 5) does 8
instead of 20 multiply-adds per output pair: 2.5x fewer FLOPs in the matmuls
that dominate a training step on a CPU. The transforms are linear, so
differentiating through them gives the weight and input gradients the same
saving.

The matrices come from Toom-Cook polynomial multiplication (convolution is
its transpose): evaluate at m + r - 2 finite points and at infinity, multiply,
interpolate. They are built exactly with rational arithmetic from small points
(0, +-1, +-2, +-1/2, ...). At F(4, 5) in float32 the output, input gradient
and kernel gradient stay within 2e-6 to 3e-6 of exact (relative to their
largest value), against 5e-7 to 2e-6 for XLA's direct convolution; in float64
both agree to rounding. Larger tiles save more FLOPs but lose accuracy fast
(F(6, 5): about 2e-5).
"""

from __future__ import annotations

import fractions
import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# Interpolation points in the order they are used: small magnitudes first,
# which keeps the transforms' coefficients (and float32 rounding) small.
POINTS = (
  0,
  1,
  -1,
  2,
  -2,
  fractions.Fraction(1, 2),
  fractions.Fraction(-1, 2),
  3,
  -3,
  fractions.Fraction(1, 3),
  fractions.Fraction(-1, 3),
)
DEFAULT_TILE = 4


def _evaluation(
  points: Sequence[fractions.Fraction], degree: int
) -> list[list[fractions.Fraction]]:
  """Rows evaluate a polynomial with `degree` coefficients at each point,
  then at infinity (its leading coefficient)."""
  rows = [[p**j for j in range(degree)] for p in points]
  return rows + [
    [fractions.Fraction(0)] * (degree - 1) + [fractions.Fraction(1)]
  ]


def _inverse(
  matrix: list[list[fractions.Fraction]],
) -> list[list[fractions.Fraction]]:
  """Exact inverse by Gauss-Jordan elimination."""
  n = len(matrix)
  rows = [
    list(row) + [fractions.Fraction(int(i == j)) for j in range(n)]
    for i, row in enumerate(matrix)
  ]
  for col in range(n):
    pivot = next(i for i in range(col, n) if rows[i][col] != 0)
    rows[col], rows[pivot] = rows[pivot], rows[col]
    rows[col] = [v / rows[col][col] for v in rows[col]]
    for i in range(n):
      if i != col and rows[i][col] != 0:
        factor = rows[i][col]
        rows[i] = [a - factor * b for a, b in zip(rows[i], rows[col])]
  return [row[n:] for row in rows]


@functools.lru_cache(maxsize=None)
def transforms(
  tile: int, taps: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(A^T, G, B^T) of F(tile, taps), float64 of shapes (tile, n), (n, taps)
  and (n, n) with n = tile + taps - 1.

  Polynomial multiplication c = g * h (g: taps coefficients, h: tile) is
  c = C [(E_taps g) * (E_tile h)], with E_k evaluating a k-coefficient
  polynomial at the points and infinity and C the inverse of E_n. Its matrix
  in h is the Toeplitz T_g; the correlation y_i = sum_k g_k d_(i+k) is
  T_g^T d = E_tile^T [(E_taps g) * (C^T d)].
  """
  if tile < 1 or taps < 1:
    raise ValueError(f"F({tile}, {taps}): tile and taps must be >= 1")
  n = tile + taps - 1
  if n - 1 > len(POINTS):
    raise ValueError(
      f"F({tile}, {taps}) needs {n - 1} interpolation points; "
      f"at most {len(POINTS)} are defined (use a smaller tile)"
    )
  points = [fractions.Fraction(p) for p in POINTS[: n - 1]]
  interpolate = _inverse(_evaluation(points, n))
  to_float = lambda rows: np.array([[float(v) for v in row] for row in rows])
  a_t = to_float(_evaluation(points, tile)).T
  g = to_float(_evaluation(points, taps))
  b_t = to_float(interpolate).T
  return a_t, g, b_t


def _combine(
  coefficients: np.ndarray, arrays: Sequence[jax.Array]
) -> jax.Array:
  """sum_k coefficients[k] * arrays[k], skipping zero terms: elementwise
  work XLA fuses into one pass (a dot with a tiny matrix would not)."""
  total = None
  for c, a in zip(coefficients, arrays):
    if c == 0:
      continue
    term = a if c == 1 else (-a if c == -1 else a * float(c))
    total = term if total is None else total + term
  return total


def _reshape(a: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """Reshape that merges or splits the leading (batch) axis. Under an
  explicitly sharded batch (the trainer's mesh), JAX wants the result's
  sharding spelled out: the batch's mesh axes stay on the leading axis,
  which keeps every device's rows its own."""
  sharding = jax.typeof(a).sharding
  batch_axes = sharding.spec[0] if len(sharding.spec) else None
  if batch_axes is None:
    return a.reshape(shape)
  spec = jax.sharding.PartitionSpec(batch_axes, *[None] * (len(shape) - 1))
  return jnp.reshape(
    a, shape, out_sharding=jax.sharding.NamedSharding(sharding.mesh, spec)
  )


def conv1d(
  x: jax.Array,
  kernel: jax.Array,
  bias: jax.Array | None = None,
  tile: int = DEFAULT_TILE,
) -> jax.Array:
  """'SAME' convolution (cross-correlation, as in flax and PyTorch) along
  axis 1 of x (B, T, C_in) with kernel (taps, C_in, C_out), by F(tile, taps).

  Padding matches flax's nn.Conv(padding="SAME"): (taps - 1) // 2 zeros
  before, the rest after.
  """
  taps, in_features, _ = kernel.shape
  if x.ndim != 3 or x.shape[-1] != in_features:
    raise ValueError(
      f"conv1d wants x of shape (batch, time, {in_features}) "
      f"for a kernel of shape {kernel.shape}, got {x.shape}"
    )
  a_t, g, b_t = transforms(tile, taps)
  n = tile + taps - 1
  batch, length, _ = x.shape
  tiles = -(-length // tile)
  before = (taps - 1) // 2
  # Padded to whole rows of `tile` frames, input j of tile t is frame j % tile
  # of row t + j // tile: plain slices of a reshape (strided slices, and
  # stacking the transformed inputs into one array, cost XLA extra copies).
  rows = tiles + -(-(taps - 1) // tile)
  padded = jnp.pad(
    x, ((0, 0), (before, rows * tile - length - before), (0, 0))
  ).reshape(batch, rows, tile, in_features)
  inputs = [
    _reshape(
      padded[:, j // tile : j // tile + tiles, j % tile],
      (batch * tiles, in_features),
    )
    for j in range(n)
  ]
  u = jnp.einsum("kr,rio->kio", jnp.asarray(g, kernel.dtype), kernel)
  # One (batch * tiles, C_in) x (C_in, C_out) matmul per position k (as 2-D
  # matmuls XLA runs them faster than with a separate batch axis).
  products = [_combine(b_t[k], inputs) @ u[k] for k in range(n)]
  y = jnp.stack([_combine(a_t[i], products) for i in range(tile)], axis=1)
  y = _reshape(y, (batch, tiles * tile, y.shape[-1]))[:, :length]
  return y if bias is None else y + bias


class Conv(nn.Module):
  """Drop-in for `nn.Conv(features, (taps,), padding="SAME")` on (B, T, C):
  the same parameter names, shapes and initializers (so checkpoints and
  initial values are interchangeable), computed by `conv1d`."""

  features: int
  taps: int
  tile: int = DEFAULT_TILE
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
  bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param(
      "kernel",
      self.kernel_init,
      (self.taps, x.shape[-1], self.features),
      jnp.float32,
    )
    bias = self.param("bias", self.bias_init, (self.features,), jnp.float32)
    return conv1d(x, kernel.astype(x.dtype), bias.astype(x.dtype), self.tile)
