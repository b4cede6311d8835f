"""Step time of S seeds as members of one program against S single steps.

  python benchmarks/members_throughput.py [--members 3] [--feature_dim 64]
      [--window 384] [--batch 8] [--repeats 20]

Times the trainer's supervised step (`trainer.make_train_step`, Adam, jit
with donated state) of C2F-TCN: S calls of the single step per round
against one call of the step vmapped over S members
(`training/members.py`), both on random data, after one warm-up round
(compilation excluded; its time is printed apart). Prints the median and
best round time and the speedup. On a shared machine the median moves with
the load; the best round is the steadier estimate.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from configs import synthetic_exo
from exo2ego_jax.methods import registry
from exo2ego_jax.models import c2f_tcn
from exo2ego_jax.training import trainer


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--members", type=int, default=3)
  parser.add_argument("--feature_dim", type=int, default=64)
  parser.add_argument("--window", type=int, default=384)
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--classes", type=int, default=10)
  parser.add_argument("--repeats", type=int, default=20)
  args = parser.parse_args()
  config = synthetic_exo.get_config()
  mode = registry.get("exo_supervised")(
    model=c2f_tcn.C2FTCN(num_classes=args.classes), label_key="labels"
  )
  optimizer = trainer.make_optimizer(config)
  s = args.members
  states = [
    jax.jit(
      lambda k=k: trainer.init_state(mode, {}, optimizer, args.feature_dim, k)
    )()
    for k in range(s)
  ]
  rng = np.random.default_rng(0)
  batches = [
    {
      "exo": rng.normal(size=(args.batch, args.window, args.feature_dim)),
      "mask": np.ones((args.batch, args.window)),
      "labels": rng.integers(0, args.classes, (args.batch, args.window)),
    }
    for _ in range(s)
  ]
  batches = [
    {
      "exo": jnp.asarray(b["exo"], jnp.float32),
      "mask": jnp.asarray(b["mask"], jnp.float32),
      "labels": jnp.asarray(b["labels"], jnp.int32),
    }
    for b in batches
  ]
  step = trainer.make_train_step(mode, optimizer)
  single = jax.jit(step, donate_argnums=0)
  vmapped = jax.jit(jax.vmap(step), donate_argnums=0)
  stacked_batch = jax.tree.map(lambda *x: jnp.stack(x), *batches)
  stacked = jax.tree.map(lambda *x: jnp.stack(x), *states)

  def round_single():
    nonlocal states
    out = [single(st, b) for st, b in zip(states, batches)]
    states = [o[0] for o in out]
    jax.block_until_ready([o[1]["loss"] for o in out])

  def round_members():
    nonlocal stacked
    stacked, logs = vmapped(stacked, stacked_batch)
    jax.block_until_ready(logs["loss"])

  print(
    f"{s} members, features {args.feature_dim}, window {args.window}, "
    f"batch {args.batch}, {jax.devices()[0].device_kind}, load "
    f"{os.getloadavg()[0]:.1f}"
  )
  rows = {}
  for name, fn in (("single x S", round_single), ("members", round_members)):
    t0 = time.perf_counter()
    fn()  # compiles
    first = time.perf_counter() - t0
    times = []
    for _ in range(args.repeats):
      t0 = time.perf_counter()
      fn()
      times.append(time.perf_counter() - t0)
    rows[name] = (statistics.median(times), min(times))
    print(
      f"{name}: first round {first:.2f} s, median {rows[name][0] * 1e3:.1f} "
      f"ms, best {rows[name][1] * 1e3:.1f} ms per round of {s} steps"
    )
  print(
    "speedup (single x S / members): median "
    f"{rows['single x S'][0] / rows['members'][0]:.2f}x, best "
    f"{rows['single x S'][1] / rows['members'][1]:.2f}x"
  )


if __name__ == "__main__":
  main()
