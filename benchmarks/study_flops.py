"""The arithmetic of a finished study's training steps, and its floor here.

  python benchmarks/study_flops.py --workdir workdirs/synthetic_benchmark \
      [--ceiling_gflops 278 321]

For each method of the study (its seed-0 run's config.json), compiles the
run's training step on a real batch of its training pipeline and prints
XLA's count of its FLOPs, the run's steps and their product (every seed
trains the same steps). The total, over every seed, is the study's training
arithmetic; divided by a float32 matmul ceiling (GFLOP/s, e.g. the one
benchmarks/step_throughput.py prints) it is the time the steps would take at
100% of it: a floor no scheduling beats. Reads the runs' datasets and
teachers; trains nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def step_flops(config) -> tuple[float, int]:
  """(FLOPs of one training step, steps) of the run `config`."""
  from exo2ego_jax.data import datasets  # pylint: disable=g-import-not-at-top
  from exo2ego_jax.runtime import sharding  # pylint: disable=g-import-not-at-top
  from exo2ego_jax.runtime import time_profile  # pylint: disable=g-import-not-at-top
  from exo2ego_jax.training import trainer  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top

  info, sources = datasets.open_dataset(
    config.dataset.name, config.dataset.data_dir
  )
  mode = trainer.build_mode(config, info)
  sources = mode.data_sources(sources)
  frozen = trainer.load_frozen(config, info, mode)
  with tempfile.TemporaryDirectory() as scratch:
    data = trainer.training_data(
      config, info, sources, mode, frozen, scratch, time_profile.RunProfile()
    )
    steps = len(data)
    batch = next(iter(data.to_iter_dataset()))
  batch.pop("index")
  mode = mode.for_run_length(steps)
  optimizer = trainer.make_optimizer(config)
  state = trainer.initial_state(
    mode,
    frozen,
    optimizer,
    info.feature_dim,
    config.seed,
    sharding.data_parallel().replicated,
  )
  cost = (
    jax.jit(trainer.make_train_step(mode, optimizer))
    .lower(state, batch)
    .compile()
    .cost_analysis()
  )
  if isinstance(cost, (list, tuple)):  # older JAX: one dict per program
    cost = cost[0]
  return float(cost["flops"]), steps


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", default="workdirs/synthetic_benchmark")
  parser.add_argument(
    "--ceiling_gflops",
    type=float,
    nargs="*",
    default=[],
    help="float32 matmul ceilings (GFLOP/s) to print the floor against",
  )
  args = parser.parse_args()
  import ml_collections  # pylint: disable=g-import-not-at-top

  results_path = os.path.join(args.workdir, "results.json")
  try:
    with open(results_path) as f:
      results = json.load(f)
  except (OSError, ValueError) as e:
    sys.exit(
      f"error: {results_path} is missing or unreadable ({e}): run the study "
      "first (python -m exo2ego_jax.benchmark --config ... --workdir "
      f"{args.workdir})"
    )
  seeds = results["seeds"]
  methods = list(results["table"])
  total = 0.0
  print("| method | GFLOP/step | steps | TFLOP (all seeds) |")
  print("|---|---|---|---|")
  for method in methods:
    path = os.path.join(args.workdir, method, f"seed{seeds[0]}", "config.json")
    if not os.path.exists(path):
      continue  # a reference row, not a run
    with open(path) as f:
      config = ml_collections.ConfigDict(json.load(f))
    flops, steps = step_flops(config)
    tflop = flops * steps * len(seeds) / 1e12
    total += tflop
    print(f"| {method} | {flops / 1e9:.1f} | {steps} | {tflop:.1f} |")
  print(f"| total ({len(seeds)} seeds) | | | {total:.1f} |")
  for ceiling in args.ceiling_gflops:
    print(
      f"at {ceiling:g} GFLOP/s: {total * 1e3 / ceiling:.0f} s of training "
      "steps at 100% of the ceiling"
    )


if __name__ == "__main__":
  main()
