"""Time of a banded DTW of two 10k-frame feature sequences.

  python benchmarks/dtw_speed.py [--length 10000] [--dim 128] [--band 0.1]

Prints the compile+run time of the first call and the run time of a second
call (same shapes, compiled program reused), for each metric. For 10k x 10k,
D=128, a 10% band (radius 1000): about 1.5 s a call (4.5 s with compilation)
on a busy 2-core CPU.
"""

import argparse
import math
import time

import numpy as np

from exo2ego_jax.methods import dtw


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--length", type=int, default=10_000)
  parser.add_argument("--dim", type=int, default=128)
  parser.add_argument(
    "--band",
    type=float,
    default=0.1,
    help="Sakoe-Chiba radius as a fraction of the length",
  )
  parser.add_argument("--metrics", default="cosine,euclidean")
  args = parser.parse_args()
  rng = np.random.default_rng(0)
  # y is x, time-warped (a slow and a fast half) with noise.
  x = rng.normal(size=(args.length, args.dim)).astype(np.float32)
  warp = np.clip(
    np.round(np.linspace(0, 1, args.length) ** 1.2 * (args.length - 1)),
    0,
    args.length - 1,
  ).astype(int)
  y = x[warp] + 0.1 * rng.normal(size=x.shape).astype(np.float32)
  radius = math.ceil(args.band * args.length)
  print(
    f"DTW {args.length} x {args.length}, D={args.dim}, Sakoe-Chiba "
    f"radius {radius}"
  )
  for metric in args.metrics.split(","):
    t0 = time.perf_counter()
    cost, path = dtw.dtw(x, y, radius=radius, metric=metric)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    dtw.dtw(x, y, radius=radius, metric=metric)
    second = time.perf_counter() - t0
    hits = np.mean(path[:, 0] == warp[path[:, 1]])
    print(
      f"  {metric:10s} first call {first:6.2f} s (with compilation), "
      f"second {second:6.2f} s; path length {len(path)}, "
      f"{100 * hits:.1f}% of path cells on the true warp"
    )


if __name__ == "__main__":
  main()
