"""Latency of the live API (models/online.py): one model step at a time.

  python benchmarks/stream_latency.py [--dims 64,1024] [--steps 2000]
      [--workdir RUN]

For each feature dimension D, builds the causal TCN of
configs/synthetic_causal_exo.py (or a trained run's, --workdir), feeds
--steps steps one at a time through OnlineSegmenter.steps (jit-compiled,
state on the device, result copied back to the host each step) after a
warm-up, and prints p50 / p99 / max latency per step and steps per second.
A step is one frame at data.chunk_size 1, or the frame that completes a
chunk (the other frames of a chunk cost nothing); frames/s is chunk_size x
steps/s. Also prints the CPU model, the core count JAX sees and the load
average before and after, since the machine may be shared.
"""

import argparse
import os
import platform
import time

import jax
import numpy as np

from configs import synthetic_causal_exo
from exo2ego_jax.models import online
from exo2ego_jax.training import trainer


def cpu_name() -> str:
  try:
    for line in open("/proc/cpuinfo"):
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown CPU"


def random_segmenter(
  dim: int, num_classes: int, config
) -> online.OnlineSegmenter:
  model = trainer.build_model(config, num_classes)
  variables = model.init(jax.random.key(0), np.zeros((1, 8, dim), np.float32))
  return online.OnlineSegmenter(
    model, variables, config.model.ensemble_weights, config.data.chunk_size
  )


def measure(segmenter, steps: int, warmup: int = 50) -> np.ndarray:
  rng = np.random.default_rng(0)
  x = rng.normal(size=(steps + warmup, segmenter.feature_dim))
  x = x.astype(np.float32)
  seconds = np.empty(steps)
  for i in range(warmup):
    segmenter.steps(x[i])
  for i in range(steps):
    t0 = time.perf_counter()
    segmenter.steps(x[warmup + i])
    seconds[i] = time.perf_counter() - t0
  return seconds


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--dims", default="64,1024")
  parser.add_argument("--steps", type=int, default=2000)
  parser.add_argument("--classes", type=int, default=10)
  parser.add_argument("--workdir", default=None, help="a causal_tcn run")
  args = parser.parse_args()
  print(
    f"{cpu_name()}; JAX {jax.__version__} on {jax.devices()[0].platform}, "
    f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}"
  )
  config = synthetic_causal_exo.get_config()
  print(
    "| D | receptive field (steps) | stages x layers | p50 ms | p99 ms | max ms "
    "| steps/s | frames/s (chunk) |"
  )
  print("|---|---|---|---|---|---|---|---|")
  if args.workdir:
    segmenters = [online.OnlineSegmenter.from_workdir(args.workdir)]
  else:
    segmenters = [
      random_segmenter(int(d), args.classes, config)
      for d in args.dims.split(",")
    ]
  for segmenter in segmenters:
    seconds = measure(segmenter, args.steps)
    ms = 1e3 * seconds
    model = segmenter.model
    dilations = model.layer_dilations
    print(
      f"| {segmenter.feature_dim} "
      f"| {model.span} | {model.stages} x {len(dilations)} "
      f"| {np.percentile(ms, 50):.3f} | {np.percentile(ms, 99):.3f} "
      f"| {ms.max():.2f} | {1 / seconds.mean():.0f} "
      f"| {segmenter.chunk_size / seconds.mean():.0f} "
      f"({segmenter.chunk_size}) |"
    )
  print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
  main()
