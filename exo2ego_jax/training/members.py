"""Several seeds of one method trained as one compiled program.

`train_members(configs, workdirs)` trains S runs that differ only in their
seed (and, for students, in the teacher/adapter run of that seed) with
`jax.vmap` over a leading member axis of the state (params, optimiser
state, BatchNorm statistics, step, frozen parts) and of the batches. Member
k is the run `trainer.train_and_evaluate(configs[k], workdirs[k])` would
be: the same initialisation (its seed's key, its own jitted init), the same
batches in the same order (its own grain pipeline), its own validation,
best/ selection, checkpoints, metrics.jsonl and results.json, so that the
benchmark reuses each workdir as a single-seed run. Its numbers equal the
separate run's to float32 rounding, not bit for bit: XLA compiles the
batched program differently (docs/performance.md).

What differs from single runs: a non-finite step of any member stops the
whole program, with that member named (each keeps its last good
checkpoint; `skip_nonfinite_batches` skips per member); early stopping is
refused; a resume needs every member at the same step, which the members'
own saves guarantee.
"""

from __future__ import annotations

import contextlib
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from exo2ego_jax.data import datasets
from exo2ego_jax.data import input_pipeline
from exo2ego_jax.runtime import checkpoints
from exo2ego_jax.runtime import distributed
from exo2ego_jax.runtime import frozen as frozen_lib
from exo2ego_jax.runtime import run_log
from exo2ego_jax.runtime import sharding as sharding_lib
from exo2ego_jax.runtime import time_profile
from exo2ego_jax.runtime import workdir as workdir_lib
from exo2ego_jax.training import loop
from exo2ego_jax.training import trainer

# The config fields members may differ in.
MEMBER_FIELDS = (
  "seed",
  "teacher_workdir",
  "adapter_workdir",
  "multiview.teachers",  # per-view teachers (methods/distill_multiview.py)
  "student_init_workdir",  # a causal student's start (methods/distillation.py)
)


# Written in a MEMBER_FIELDS path given to the train command's --seeds, it
# becomes each member's seed (e.g. --config.teacher_workdir=exo/seed{seed}).
SEED_FIELD = "{seed}"


def seed_runs(
  config: ml_collections.ConfigDict, workdir: str, seeds
) -> tuple[list[ml_collections.ConfigDict], list[str]]:
  """The configs and workdirs of the train command's `--seeds`: `config`
  with each seed, `{seed}` in its MEMBER_FIELDS paths replaced by that
  seed, each run in `<workdir>/seed<k>` (the study's layout, so a study
  reuses them)."""
  try:
    seeds = [int(s) for s in seeds]
  except ValueError:
    raise ValueError(
      f"--seeds={','.join(map(str, seeds))} must be integers, e.g. --seeds=0,1,2"
    ) from None
  if not seeds or len(set(seeds)) != len(seeds):
    raise ValueError(
      f"--seeds={','.join(map(str, seeds))} must name distinct seeds, "
      "e.g. --seeds=0,1,2"
    )
  configs = []
  for seed in seeds:
    member = config.copy_and_resolve_references()
    member.seed = seed
    flat = workdir_lib.flatten(member.to_dict())
    for key in MEMBER_FIELDS:
      if key == "seed":  # set above
        continue
      value = flat.get(key)
      if isinstance(value, str):
        value = value.replace(SEED_FIELD, str(seed))
      elif isinstance(value, (tuple, list)):
        value = type(value)(v.replace(SEED_FIELD, str(seed)) for v in value)
      else:
        continue
      member.update_from_flattened_dict({key: value})
    configs.append(member)
  workdirs = [os.path.join(workdir, f"seed{seed}") for seed in seeds]
  return configs, workdirs


def check_alike(configs) -> None:
  """Members must be one program: configs equal but for MEMBER_FIELDS."""
  if not configs:
    raise ValueError("train_members needs at least one config")
  first = workdir_lib.flatten(configs[0].to_dict())
  for k, config in enumerate(configs[1:], 1):
    other = workdir_lib.flatten(config.to_dict())
    changed = sorted(
      key
      for key in set(first) | set(other)
      if key not in MEMBER_FIELDS and first.get(key) != other.get(key)
    )
    if changed:
      raise ValueError(
        f"member {k}'s config differs from member 0's in "
        f"{', '.join(changed[:6])}: members share everything but "
        f"{', '.join(MEMBER_FIELDS)}; train the others as separate runs"
      )
  if trainer.added_option(configs[0], "early_stopping_patience"):
    raise ValueError(
      "config.early_stopping_patience stops runs at different steps: "
      "members cannot use it; set it to 0 or train separate runs"
    )


def member_state(state: dict, k: int) -> dict:
  """Member k's state, as a single run holds it."""
  return jax.tree.map(lambda x: x[k], state)


class MemberCheckpoints:
  """The members' RunCheckpoints behind the one interface training/loop.py
  saves through: `save` gets the stacked state and a list of metrics."""

  def __init__(self, runs: list[checkpoints.RunCheckpoints]):
    self.runs = runs

  def save(self, step: int, state: dict, metrics: list | None = None) -> None:
    for k, run in enumerate(self.runs):
      run.save(step, member_state(state, k), metrics and metrics[k])

  def close(self) -> None:
    for run in self.runs:
      run.close()


def train_members(
  configs: list[ml_collections.ConfigDict],
  workdirs: list[str],
  allow_config_change: bool = False,
) -> list[dict]:
  """Trains (or resumes, or re-reports) the members; returns each one's
  results as `trainer.train_and_evaluate` would, with one shared profile."""
  if len(configs) != len(workdirs) or len(set(workdirs)) != len(workdirs):
    raise ValueError("train_members needs one distinct workdir per config")
  check_alike(configs)
  distributed.initialize()
  profile = time_profile.RunProfile()
  created = [not os.path.exists(w) for w in workdirs]
  for workdir in workdirs:
    os.makedirs(workdir, exist_ok=True)
  try:
    with contextlib.ExitStack() as stack:
      if jax.process_index() == 0:
        for workdir in workdirs:
          stack.enter_context(workdir_lib.locked(workdir))
      preemption = stack.enter_context(workdir_lib.PreemptionFlag())
      return _run(configs, workdirs, allow_config_change, preemption, profile)
  except BaseException:
    for workdir, new in zip(workdirs, created):
      if new:
        trainer.remove_if_empty(workdir)
    raise
  finally:
    profile.close()


def _run(configs, workdirs, allow_config_change, preemption, profile):
  config = configs[0]  # what all members share
  members = range(len(configs))
  # ----- Setup: dataset, each member's frozen parts and workdir. -----
  with profile.part("dataset"):
    info, sources = datasets.open_dataset(
      config.dataset.name, config.dataset.data_dir
    )
  mode = trainer.build_mode(config, info)
  sources = mode.data_sources(sources)
  loaded = [{} for _ in members]
  with profile.part("checkpoints"):
    frozen = [
      trainer.load_frozen(configs[k], info, mode, loaded[k]) for k in members
    ]
  for c, workdir in zip(configs, workdirs):
    workdir_lib.check_same_config(workdir, c.to_json(), allow_config_change)
    if jax.process_index() == 0:
      workdir_lib.write_atomic(
        os.path.join(workdir, "config.json"), c.to_json(indent=2)
      )
  # An Auto axis: vmap's batching of the convolutions reshapes the member
  # axis into the channels, which a batch-sharded Explicit axis refuses.
  parallel = sharding_lib.data_parallel(auto_axes=True)
  replicated = parallel.replicated
  parallel.check_divides("config.data.batch_size", config.data.batch_size)
  parallel.check_divides(
    "config.data.eval_batch_size", config.data.eval_batch_size
  )

  # ----- Input pipelines: each member's own. -----
  data = [
    trainer.training_data(
      configs[k], info, sources, mode, frozen[k], workdirs[k], profile
    )
    for k in members
  ]
  total_steps = len(data[0])
  assert all(len(d) == total_steps for d in data), "members' lengths differ"
  mode = mode.for_run_length(total_steps)
  steps_per_epoch = max(1, total_steps // config.num_epochs)
  eval_every = max(1, int(config.eval_every_epochs * steps_per_epoch))

  # ----- State: each member initialised as its own run, then stacked. -----
  optimizer = trainer.make_optimizer(config)

  def init(k: int) -> dict:
    return jax.jit(
      lambda: trainer.init_state(
        mode, frozen[k], optimizer, info.feature_dim, configs[k].seed
      ),
      out_shardings=replicated,
    )()

  states = [init(k) for k in members]
  runs = [
    checkpoints.RunCheckpoints(
      w, config.best_metric, unsaved=(frozen_lib.STATE_KEY,)
    )
    for w in workdirs
  ]
  ckpt = MemberCheckpoints(runs)
  ckpt.save = profile.timed("checkpoints", ckpt.save)
  try:
    for k in members:
      frozen_lib.check_or_record(
        workdirs[k],
        frozen_lib.describe(loaded[k], frozen[k]),
        first_start=runs[k].latest_step() is None,
      )
    latest = [run.latest_step() for run in runs]
    if len(set(latest)) > 1:
      raise ValueError(
        "the members' workdirs hold checkpoints of different steps ("
        + ", ".join(f"{w}: {s}" for w, s in zip(workdirs, latest))
        + "): resume them as separate runs, or start the members afresh"
      )
    if latest[0] is not None:
      with profile.part("checkpoints"):
        for k in members:
          recorded = {
            s: {config.best_metric: r[config.best_metric]}
            for s, r in workdir_lib.evaluations(
              workdirs[k], config.data.eval_split
            ).items()
            if config.best_metric in r
          }
          restored = runs[k].restore_latest(
            checkpoints.abstract_like(states[k]), recorded
          )
          states[k] = jax.device_put(dict(states[k], **restored), replicated)
  except BaseException:
    ckpt.close()
    raise
  state = jax.tree.map(lambda *xs: jnp.stack(xs), *states)
  del states
  start_step = int(state["step"][0])
  if jax.process_index() == 0:
    for workdir in workdirs:
      workdir_lib.rewind_metrics(workdir, start_step)

  # ----- Compiled steps: the single run's step, vmapped over members. -----
  train_step = jax.jit(
    jax.vmap(
      trainer.make_train_step(mode, optimizer, config.skip_nonfinite_batches)
    ),
    donate_argnums=0,
    out_shardings=(replicated, replicated),
  )
  evaluate = profile.timed(
    "evaluation", trainer.make_evaluate(config, info, sources, mode, parallel)
  )

  # ----- Train loop (training/loop.py), every member at each step. -----
  batches = [
    iter(
      d[start_step:].to_iter_dataset(
        input_pipeline.grain.ReadOptions(num_threads=2, prefetch_buffer_size=4)
      )
    )
    for d in data
  ]
  reports = [
    run_log.RunReport(
      workdirs[k],
      f"{config.mode} seed {configs[k].seed}",
      total_steps,
      start_step,
      progress=jax.process_index() == 0 and config.progress and k == 0,
      write_events=jax.process_index() == 0,
    )
    for k in members
  ]
  t0 = time.time()

  @profile.timed("train_steps")
  def step_fn(state: dict, step: int) -> tuple[dict, tuple]:
    with profile.part("input_wait"):
      member_batches = [next(b) for b in batches]
    indices = [b.pop("index") for b in member_batches]
    global_batch = {
      key: parallel.from_member_rows(np.stack([b[key] for b in member_batches]))
      for key in member_batches[0]
    }
    if step == start_step + 1:
      reports[0].compiling()
    state, logs = train_step(state, global_batch)
    for report in reports:
      report.step(step)
    return state, (step, indices, logs)

  @profile.timed("train_steps")
  def flush(step: int, pending: list) -> None:
    host = jax.device_get([logs for _, _, logs in pending])
    seconds = time.time() - t0
    for k in members:
      trainer.log_training(
        workdirs[k],
        configs[k],
        sources,
        reports[k],
        step,
        [
          (s, indices[k], {name: v[k] for name, v in logs.items()})
          for (s, indices, _), logs in zip(pending, host)
        ],
        steps_per_epoch=steps_per_epoch,
        seconds=seconds,
      )

  def evaluate_step(step: int, state: dict) -> list[dict]:
    return [
      trainer.log_evaluation(
        workdirs[k],
        configs[k],
        reports[k],
        step,
        evaluate(
          member_state(state, k),
          config.data.eval_split,
          config.data.eval_view,
        ),
      )
      for k in members
    ]

  try:
    outcome = loop.run(
      state,
      start_step=start_step,
      end_step=total_steps,
      train_step=step_fn,
      ckpt=ckpt,
      preemption=preemption,
      log_now=lambda step: step % config.log_every_steps == 0,
      flush=flush,
      evaluate_now=lambda step: step % eval_every == 0 or step == total_steps,
      evaluate=evaluate_step,
      checkpoint_every=config.checkpoint_every_steps,
    )
  finally:
    for report in reports:
      report.close()
  state = outcome.state
  if outcome.preempted_at is not None:
    this_call = dict(
      profile.seconds(), trained_steps=outcome.preempted_at - start_step
    )
    return [
      {
        "mode": config.mode,
        "preempted": True,
        "step": outcome.preempted_at,
        "signal": preemption.signal,
        "saved": outcome.saved,
        "workdir": os.path.abspath(w),
        "profile": this_call,
      }
      for w in workdirs
    ]

  # ----- Each member's results: its best checkpoint on validation. -----
  results = [
    trainer.best_results(
      configs[k],
      workdirs[k],
      member_state(state, k),
      evaluate,
      replicated,
      profile,
      total_steps,
    )
    for k in members
  ]
  this_call = dict(profile.seconds(), trained_steps=total_steps - start_step)
  seeds = [c.seed for c in configs]
  return [
    trainer.write_results(w, dict(r, members=seeds), this_call)
    for w, r in zip(workdirs, results)
  ]
