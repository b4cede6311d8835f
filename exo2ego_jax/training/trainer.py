"""Training: one run of a temporal action segmentation model or an exo->ego
transfer, from config to best checkpoint (`train_and_evaluate`).

What is trained (config.mode) is a method of exo2ego_jax.methods: the
supervised models, the exo->ego transfers from synchronized pairs and the
baselines, each registered under its name (docs/methods.md). Re-running the
same command resumes from the workdir's latest checkpoint; a finished run
only re-reports its results.

Workdir contents: config.json, metrics.jsonl (one JSON object per log/eval),
checkpoints/ (latest two), best/ (best by the validation metric),
results.json. Kills, Ctrl-C, full disks, damaged files:
docs/failure_behaviour.md.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from exo2ego_jax.runtime import checkpoints
from exo2ego_jax.data import datasets
from exo2ego_jax.runtime import distributed
from exo2ego_jax.runtime import frozen as frozen_lib
from exo2ego_jax.runtime import programs
from exo2ego_jax.evaluation import evaluator
from exo2ego_jax.data import input_pipeline
from exo2ego_jax.training import loop
from exo2ego_jax.training import losses
from exo2ego_jax.methods import base as methods_base
from exo2ego_jax.methods import registry
from exo2ego_jax.runtime import run_log
from exo2ego_jax.runtime import sharding as sharding_lib
from exo2ego_jax.runtime import time_profile
from exo2ego_jax.runtime import workdir as workdir_lib
from exo2ego_jax.models import c2f_tcn
from exo2ego_jax.models import causal_tcn
from exo2ego_jax.methods import distillation
from exo2ego_jax.sync import resync

log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
  """Training produced a NaN/inf loss; the last good checkpoint is kept."""


def added_option(config: ml_collections.ConfigDict, key: str):
  """The field `key` ("section.name" or a top-level "name") of
  workdir.ADDED_FIELDS; runs made before it existed (their config.json lacks
  it) get the value that reproduces them."""
  section, _, name = key.rpartition(".")
  return (config[section] if section else config).get(
    name, workdir_lib.ADDED_FIELDS[key]
  )


def eval_chunk_sizes(config: ml_collections.ConfigDict) -> tuple[int, ...]:
  """Chunk sizes averaged at evaluation (test-time augmentation)."""
  sizes = added_option(config, "data.eval_chunk_sizes") or (
    config.data.chunk_size,
  )
  return tuple(int(c) for c in sizes)


MODEL_NAMES = ("c2f_tcn", causal_tcn.NAME)


def build_model(config: ml_collections.ConfigDict, num_classes: int):
  """The temporal network of a run's config (config.model.name)."""
  name = added_option(config, "model.name")
  if name not in MODEL_NAMES:
    raise ValueError(
      f"config.model.name={name!r} is unknown: use one of "
      f"{', '.join(MODEL_NAMES)}"
    )
  if name == causal_tcn.NAME:
    return causal_tcn.CausalTCN(
      num_classes=num_classes,
      receptive_field=int(config.model.get("receptive_field", 256)),
      kernel_size=int(config.model.get("kernel_size", 3)),
      features=int(config.model.get("features", 128)),
      stages=int(config.model.get("stages", 1)),
      bn_unbiased_var=added_option(config, "model.bn_unbiased_var"),
    )
  conv_impl = added_option(config, "model.conv_impl")
  if conv_impl not in c2f_tcn.CONV_IMPLS:
    raise ValueError(
      f"config.model.conv_impl={conv_impl!r} is unknown: use "
      f"one of {', '.join(c2f_tcn.CONV_IMPLS)}"
    )
  return c2f_tcn.C2FTCN(
    num_classes=num_classes,
    conv_impl=conv_impl,
    bn_unbiased_var=added_option(config, "model.bn_unbiased_var"),
  )


def causal_student_parts(config, info, method) -> dict:
  """For a causal_tcn run: the offline teacher's own network, built from
  the teacher run's config (it keeps its C2F-TCN settings). Modes that
  predict with the teacher or an adapter cannot have a causal student."""
  if added_option(config, "model.name") != causal_tcn.NAME:
    return {}
  head_distiller = issubclass(method, distillation.Distillation) and not (
    method.trains_adapter or method.loads_adapter
  )
  if (
    method.trains_adapter
    or method.loads_adapter
    or (method.loads_teacher and not head_distiller)
  ):
    raise ValueError(
      f"mode {config.mode} cannot train config.model.name="
      f"{causal_tcn.NAME!r} (it predicts through the offline teacher or an "
      f"adapter): use a supervised, uda_* or head-distillation mode"
    )
  if not (method.loads_teacher and config.teacher_workdir):
    return {}  # (the method's own check names a missing teacher)
  teacher_config = ml_collections.ConfigDict(
    read_run_config(config.teacher_workdir)
  )
  return {"teacher_model": build_model(teacher_config, info.num_classes)}


def build_mode(
  config: ml_collections.ConfigDict, info: datasets.DatasetInfo
) -> methods_base.Method:
  """Checks the config against the dataset and builds the run's method."""
  method = registry.get(config.mode)
  for split in (config.data.train_split, config.data.eval_split):
    if split not in info.splits:
      raise ValueError(
        f"dataset {info.name} has no split {split!r} (it has "
        f"{', '.join(info.splits)}): fix config.data.*_split"
      )
  if config.data.train_split.startswith("test") or (
    config.data.eval_split.startswith("test")
  ):
    raise ValueError(
      "the test split must never train or select models: set "
      "config.data.eval_split to a validation split"
    )
  for view in (config.data.view, config.data.eval_view):
    if view not in input_pipeline.VIEWS:
      raise ValueError(f"view {view!r} is unknown: use 'exo' or 'ego'")
  input_pipeline.check_fraction(added_option(config, "data.train_fraction"))
  offset = added_option(config, "data.sync_offset")
  offset_mode = added_option(config, "data.sync_offset_mode")

  def takes_offset(m) -> bool:
    return m.trains_on_sync_pairs or m.sync_offset_at_source

  if offset and not takes_offset(method):
    names = registry.names(where=takes_offset)
    raise ValueError(
      f"config.data.sync_offset shifts the student's view against the "
      f"teacher's; mode {config.mode} trains on no synchronized pair: "
      f"leave it 0, or use one of {', '.join(names)}"
    )
  if offset and method.sync_offset_at_source and offset_mode == "per_window":
    raise ValueError(
      f"mode {config.mode} reads whole recordings, so config.data."
      "sync_offset is put into each recording once: use "
      "sync_offset_mode 'fixed' or 'per_video', not 'per_window'"
    )
  resync.check_config(config, method)
  if offset_mode not in input_pipeline.OFFSET_MODES:
    raise ValueError(
      f"config.data.sync_offset_mode={offset_mode!r} is "
      f"unknown: use one of "
      f"{', '.join(input_pipeline.OFFSET_MODES)}"
    )
  if any(int(c) < 1 for c in eval_chunk_sizes(config)):
    raise ValueError(
      f"config.data.eval_chunk_sizes="
      f"{eval_chunk_sizes(config)} must be positive integers"
    )
  recipe_choices = (
    ("loss.smooth_average", losses.SMOOTH_AVERAGES),
    ("data.windows", input_pipeline.WINDOW_MODES),
  )
  for key, choices in recipe_choices:
    if added_option(config, key) not in choices:
      raise ValueError(
        f"config.{key}={added_option(config, key)!r} is "
        f"unknown: use one of {', '.join(choices)}"
      )
  if config.best_metric not in evaluator.SELECTION_METRICS:
    raise ValueError(
      f"config.best_metric={config.best_metric!r} is unknown: "
      f"use one of {', '.join(evaluator.SELECTION_METRICS)}"
    )
  if added_option(config, "early_stopping_patience") < 0:
    raise ValueError("config.early_stopping_patience must be >= 0 (0: off)")
  model = build_model(config, info.num_classes)
  return method.from_config(  # the method checks its own settings
    config,
    info,
    model=model,
    **causal_student_parts(config, info, method),
    ensemble_weights=tuple(config.model.ensemble_weights),
    smooth_weight=config.loss.smooth_weight,
    smooth_average=added_option(config, "loss.smooth_average"),
    train_view=config.data.view,
  )


def load_frozen(
  config: ml_collections.ConfigDict,
  info: datasets.DatasetInfo,
  mode: methods_base.Method,
  loaded: dict | None = None,
) -> dict:
  """Parameters a run uses without training: teacher, adapter. `loaded`
  gets where each came from (runtime/frozen.py records it)."""
  frozen = {}
  if mode.loads_teacher:
    teacher_config = read_run_config(config.teacher_workdir)
    if teacher_config.get("mode") not in registry.names(
      where=lambda m: m.is_teacher
    ):
      raise ValueError(
        f"teacher {config.teacher_workdir} is a "
        f"{teacher_config.get('mode')} run: the teacher must "
        f"be {methods_base.TEACHER_RUN}"
      )
    frozen["teacher"] = frozen_lib.restore_variables(
      config.teacher_workdir, loaded, "teacher"
    )
    check_teacher(frozen["teacher"], config, info, mode)
  if mode.loads_adapter:
    adapter_state = frozen_lib.restore(
      config.adapter_workdir, loaded, "adapter"
    )
    frozen["adapter"] = adapter_state["params"]
  frozen.update(mode.frozen_parts(config, info, loaded))
  return frozen


def check_teacher(
  teacher: dict,
  config,
  info,
  mode: methods_base.Method,
  workdir: str | None = None,
) -> None:
  """The teacher (of `workdir`, default config.teacher_workdir) must be a
  C2F-TCN for this dataset's features and classes."""
  if not methods_base.params_fit(
    mode.teacher_net, teacher["params"], info.feature_dim
  ):
    raise ValueError(
      f"teacher {workdir or config.teacher_workdir} does not match this run's "
      f"C2F-TCN for {info.name} ({info.feature_dim}-d features, "
      f"{info.num_classes} classes): train the teacher on this dataset"
    )


def read_run_config(workdir: str) -> dict:
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise FileNotFoundError(
      f"{path} not found: {workdir} is not a run directory of exo2ego_jax.train"
    )
  return workdir_lib.read_json(
    path, "restore it from a copy, or pass the run's config with --config"
  )


def make_optimizer(
  config: ml_collections.ConfigDict,
) -> optax.GradientTransformation:
  """Adam with L2 weight decay added to the gradient (PyTorch's Adam). It
  reads `config.optim` alone (`optimizer_key` relies on it)."""
  return optax.chain(
    optax.add_decayed_weights(config.optim.weight_decay),
    optax.adam(config.optim.learning_rate),
  )


def optimizer_key(config: ml_collections.ConfigDict) -> str:
  """What `make_optimizer` builds from, as a program cache key."""
  return config.optim.to_json(sort_keys=True)


def init_state(
  mode: methods_base.Method,
  frozen: dict,
  optimizer,
  feature_dim: int,
  seed: int,
) -> dict:
  """Fresh state, as the method initialises it (students: the teacher)."""
  params, batch_stats = mode.init_params(
    jax.random.key(seed), frozen, feature_dim
  )
  params = jax.tree.map(jnp.array, params)  # own copies, never the teacher's
  batch_stats = jax.tree.map(jnp.array, batch_stats)
  return {
    "step": jnp.zeros((), jnp.int32),
    "params": params,
    "batch_stats": batch_stats,
    "opt_state": optimizer.init(params),
    "frozen": jax.tree.map(jnp.asarray, frozen),
  }


def initial_state(
  mode: methods_base.Method,
  frozen: dict,
  optimizer,
  feature_dim: int,
  seed: int,
  replicated,
  optimizer_key: str | None = None,
) -> dict:
  """`init_state`, compiled with the seed and the frozen parts as arguments
  (not constants baked into the program) and its output replicated. Given
  `optimizer_key` (what `optimizer` was built from), the program is kept for
  the process (runtime/programs.py): every seed of a study reuses it."""

  def build():
    return jax.jit(
      lambda frozen, seed: init_state(
        mode, frozen, optimizer, feature_dim, seed
      ),
      out_shardings=replicated,
    )

  init = (
    build()
    if optimizer_key is None
    else programs.cached(
      ("init", mode, optimizer_key, feature_dim, replicated), build
    )
  )
  return init(frozen, np.int32(seed))


def make_train_step(
  mode: methods_base.Method, optimizer, skip_nonfinite: bool = False
):
  """The jitted update. With `skip_nonfinite`, a batch whose loss or gradient
  is NaN/inf leaves the state unchanged (its log says finite=0)."""

  def train_step(state: dict, batch: dict) -> tuple[dict, dict]:
    grad_fn = jax.value_and_grad(
      lambda p: mode.loss(p, state, batch), has_aux=True
    )
    (loss, (batch_stats, logs)), grads = grad_fn(state["params"])
    updates, opt_state = optimizer.update(
      grads, state["opt_state"], state["params"]
    )
    params = optax.apply_updates(state["params"], updates)
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    logs = dict(
      logs, loss=loss, grad_norm=grad_norm, finite=finite.astype(jnp.float32)
    )
    new_state = dict(
      state,
      step=state["step"] + 1,
      params=params,
      batch_stats=batch_stats,
      opt_state=opt_state,
    )
    if skip_nonfinite:  # drop the update, keep counting steps
      new_state = jax.tree.map(
        lambda new, old: jnp.where(finite, new, old),
        new_state,
        dict(state, step=new_state["step"]),
      )
    return new_state, logs

  return train_step


def make_predictor(
  mode: methods_base.Method, parallel: sharding_lib.DataParallel
):
  """(state, windows, masks) -> probabilities on the host. Compiled once per
  window shape: every evaluation of a run reuses the program (jitting a new
  function per evaluation compiled it again each time)."""
  # Multi-host: every process passes the same windows and gets all the
  # probabilities back (replicated output), so scoring needs no gather.
  predict = programs.cached(
    ("predict", mode, parallel.replicated),
    lambda: jax.jit(mode.predict_probs, out_shardings=parallel.replicated),
  )

  def predictor(state: dict, windows: np.ndarray, masks: np.ndarray):
    return np.asarray(
      predict(
        state,
        parallel.from_host_array(windows),
        parallel.from_host_array(masks),
      )
    )

  return predictor


def make_predict_fn(
  mode: methods_base.Method, state: dict, parallel: sharding_lib.DataParallel
):
  """Host-callable (windows, masks) -> probabilities of `state`."""
  return functools.partial(make_predictor(mode, parallel), state)


def patience_exhausted(
  step: int, best_step: int | None, eval_every: int, patience: int
) -> bool:
  """Early stopping: `patience` evaluations (every `eval_every` steps) have
  passed since the best checkpoint without a better one."""
  if best_step is None:
    return False
  return (step - best_step) // eval_every >= patience


def append_jsonl(workdir: str, record: dict) -> None:
  if jax.process_index() == 0:
    workdir_lib.append_metrics(workdir, record)


def train_and_evaluate(
  config: ml_collections.ConfigDict,
  workdir: str,
  allow_config_change: bool = False,
) -> dict:
  """Runs (or resumes, or re-reports) one training run; returns results.

  The workdir is locked for the duration; SIGTERM or Ctrl-C makes the run
  save its state and return early with results["preempted"] set (and
  results["signal"] naming it). results["profile"]: where this call's time
  went (runtime/time_profile.py).
  """
  distributed.initialize()  # multi-host runs only; see distributed.py
  profile = time_profile.RunProfile()
  created = not os.path.exists(workdir)
  os.makedirs(workdir, exist_ok=True)
  # Multi-host: the hosts share the workdir, and process 0 locks it for all.
  lock = (
    workdir_lib.locked(workdir)
    if jax.process_index() == 0
    else contextlib.nullcontext()
  )
  try:
    with lock, workdir_lib.PreemptionFlag() as preemption:
      return _run(config, workdir, allow_config_change, preemption, profile)
  except BaseException:
    if created:
      remove_if_empty(workdir)
    raise
  finally:
    profile.close()


def make_evaluate(
  config: ml_collections.ConfigDict,
  info: datasets.DatasetInfo,
  sources: dict,
  mode: methods_base.Method,
  parallel: sharding_lib.DataParallel,
):
  """(state, split, view) -> the split's summary (no per-video list)."""
  predictor = make_predictor(mode, parallel)

  def evaluate(state: dict, split: str, view: str) -> dict:
    summary = evaluator.evaluate_split(
      functools.partial(predictor, state),
      sources[split],
      view=view,
      chunk_sizes=eval_chunk_sizes(config),
      max_frames=config.data.max_frames,
      batch_size=config.data.eval_batch_size,
      class_names=info.class_names,
      background_classes=info.background_classes,
      background_policy=config.background_policy,
    )
    summary.pop("per_video")
    return summary

  return evaluate


def log_training(
  workdir: str,
  config: ml_collections.ConfigDict,
  sources: dict,
  report: run_log.RunReport,
  step: int,
  pending: list,
  *,
  steps_per_epoch: int,
  seconds: float,
) -> None:
  """Checks the pending (step, batch indices, host logs) are finite, then
  logs their mean at `step` (`seconds`: since the run started or resumed)."""
  host = [logs for _, _, logs in pending]
  _check_finite(
    workdir,
    [(s, i, bool(l["finite"])) for s, i, l in pending],
    sources,
    config.data.train_split,
    config.skip_nonfinite_batches,
  )
  kept = [l for l in host if l["finite"]]  # skipped steps: not averaged
  mean = {
    k: float(np.mean([l[k] for l in kept])) if kept else None
    for k in host[0]
    if k != "finite"
  }
  mean["skipped"] = len(host) - len(kept)
  rate = report.trained(step, mean)
  append_jsonl(
    workdir,
    dict(
      mean,
      step=step,
      split="train",
      epoch=step / steps_per_epoch,
      seconds_since_resume=round(seconds, 2),
      steps_per_second=rate and round(rate, 3),
    ),
  )


def log_evaluation(
  workdir: str,
  config: ml_collections.ConfigDict,
  report: run_log.RunReport,
  step: int,
  summary: dict,
) -> dict:
  """Logs a validation summary; returns the metric best/ is chosen by."""
  append_jsonl(
    workdir,
    dict(
      summary,
      step=step,
      split=config.data.eval_split,
      view=config.data.eval_view,
    ),
  )
  report.evaluated(step, config.data.eval_split, config.data.eval_view, summary)
  return {config.best_metric: summary[config.best_metric]}


def remove_if_empty(workdir: str) -> None:
  """A start refused by the checks leaves no empty workdir behind."""
  if jax.process_index() == 0 and set(os.listdir(workdir)) <= {".lock"}:
    for name in os.listdir(workdir):
      os.remove(os.path.join(workdir, name))
    os.rmdir(workdir)


def _check_finite(
  workdir: str, pending: list, sources, split: str, skip: bool
) -> None:
  """Raises (or, when skipping, warns) for the first non-finite step."""
  for step, indices, finite in pending:
    if finite:
      continue
    videos = sorted(
      {evaluator.decode_id(sources[split][int(i)]["video_id"]) for i in indices}
    )
    if skip:
      log.warning(
        "step %d: non-finite loss or gradient, update skipped (videos %s)",
        step,
        ", ".join(videos),
      )
      continue
    raise NonFiniteLossError(
      f"non-finite loss or gradient at step {step} (batch of videos "
      f"{', '.join(videos)}); {workdir} keeps its last good checkpoint. "
      "Check those videos' features, lower config.optim.learning_rate, or "
      "set --config.skip_nonfinite_batches=True to skip such batches."
    )


def training_data(
  config: ml_collections.ConfigDict,
  info: datasets.DatasetInfo,
  sources: dict,
  mode: methods_base.Method,
  frozen: dict,
  workdir: str,
  profile: time_profile.RunProfile,
):
  """The run's training batches (a grain MapDataset, one element a step)."""
  per_process_batch = config.data.batch_size // jax.process_count()
  train_source = sources[config.data.train_split]
  # With config.sync.estimate: the pairs re-synchronized by estimated clocks
  # (the deliberate offset, if any, applied to the recordings first); for a
  # method that reads whole recordings, the offset put into them.
  train_source = resync.synced_source(
    mode, frozen, train_source, config, workdir, train_and_evaluate
  )
  offset = added_option(config, "data.sync_offset")
  # E.g. with teacher pseudo-labels, made once.
  with profile.part("pseudo_labels"):
    train_source = mode.train_source(frozen, train_source, config, workdir)
  train_ds = input_pipeline.train_dataset(
    train_source,
    views=mode.input_views,
    label_key=mode.label_key,
    batch_size=per_process_batch,
    num_epochs=config.num_epochs,
    max_frames=config.data.max_frames,
    chunk_size=config.data.chunk_size,
    zoom=config.data.zoom,
    seed=config.seed,
    shard_index=jax.process_index(),
    shard_count=jax.process_count(),
    feature_dim=info.feature_dim,
    num_classes=info.num_classes,
    fraction=added_option(config, "data.train_fraction"),
    subset_seed=added_option(config, "data.subset_seed"),
    sync_offset=(
      input_pipeline.SyncOffset(
        offset,
        added_option(config, "data.sync_offset_mode"),
        view=config.data.view,
        seed=config.seed,
      )
      if offset and not resync.offset_in_recordings(mode, config)
      else None
    ),
    windows=added_option(config, "data.windows"),
    ignore_classes=(
      info.background_classes
      if added_option(config, "loss.ignore_background")
      else ()
    ),
  )
  # E.g. unlabeled target windows, drawn independently (domain adaptation).
  train_ds = mode.training_windows(train_ds, sources, config, per_process_batch)
  return train_ds


def _run(
  config: ml_collections.ConfigDict,
  workdir: str,
  allow_config_change: bool,
  preemption,
  profile: time_profile.RunProfile,
) -> dict:
  # ----- Setup: workdir, dataset, checks before any compute. -----
  with profile.part("dataset"):
    info, sources = datasets.open_dataset(
      config.dataset.name, config.dataset.data_dir
    )
  mode = build_mode(config, info)
  sources = mode.data_sources(sources)
  loaded = {}
  with profile.part("checkpoints"):
    frozen = load_frozen(config, info, mode, loaded)
  workdir_lib.check_same_config(workdir, config.to_json(), allow_config_change)
  if jax.process_index() == 0:
    workdir_lib.write_atomic(
      os.path.join(workdir, "config.json"), config.to_json(indent=2)
    )

  # ----- Device mesh: data parallel over every device of every host. -----
  parallel = sharding_lib.data_parallel()
  replicated = parallel.replicated
  parallel.check_divides("config.data.batch_size", config.data.batch_size)
  parallel.check_divides(
    "config.data.eval_batch_size", config.data.eval_batch_size
  )

  # ----- Input pipeline. -----
  train_ds = training_data(
    config, info, sources, mode, frozen, workdir, profile
  )
  total_steps = len(train_ds)
  mode = mode.for_run_length(total_steps)
  steps_per_epoch = max(1, total_steps // config.num_epochs)
  eval_every = max(1, int(config.eval_every_epochs * steps_per_epoch))

  # ----- Model, optimiser and state (restored if the run exists). -----
  optimizer, opt_key = make_optimizer(config), optimizer_key(config)
  state = initial_state(
    mode, frozen, optimizer, info.feature_dim, config.seed, replicated, opt_key
  )
  # Checkpoints hold what trains; the frozen parts are re-attached (older
  # workdirs' checkpoints hold them too, and those copies are used).
  ckpt = checkpoints.RunCheckpoints(
    workdir, config.best_metric, unsaved=(frozen_lib.STATE_KEY,)
  )
  ckpt.save = profile.timed("checkpoints", ckpt.save)
  if ckpt.unsaved:
    try:
      frozen_lib.check_or_record(
        workdir,
        frozen_lib.describe(loaded, frozen),
        first_start=ckpt.latest_step() is None,
      )
    except BaseException:
      ckpt.close()
      raise
  if ckpt.latest_step() is not None:
    recorded = {
      s: {config.best_metric: r[config.best_metric]}
      for s, r in workdir_lib.evaluations(
        workdir, config.data.eval_split
      ).items()
      if config.best_metric in r
    }
    with profile.part("checkpoints"):
      restored = ckpt.restore_latest(checkpoints.abstract_like(state), recorded)
    state = jax.device_put(dict(state, **restored), replicated)
  start_step = int(state["step"])
  if jax.process_index() == 0:
    workdir_lib.rewind_metrics(workdir, start_step)
  patience = added_option(config, "early_stopping_patience")
  stopped_early = None
  if (
    patience
    and start_step
    and patience_exhausted(start_step, ckpt.best_step(), eval_every, patience)
  ):
    stopped_early = start_step  # a finished, early-stopped run: report it

  # ----- Compiled steps. -----
  step_key = (
    "train_step",
    mode,
    opt_key,
    bool(config.skip_nonfinite_batches),
    replicated,
  )
  step_reused = programs.holds(step_key)
  train_step = programs.cached(
    step_key,
    lambda: jax.jit(
      make_train_step(mode, optimizer, config.skip_nonfinite_batches),
      donate_argnums=0,
      out_shardings=(replicated, replicated),
    ),
  )

  evaluate = profile.timed(
    "evaluation", make_evaluate(config, info, sources, mode, parallel)
  )

  # ----- Train loop (training/loop.py): this run's step, logs, evaluation.
  batches = iter(
    train_ds[start_step:].to_iter_dataset(
      input_pipeline.grain.ReadOptions(num_threads=2, prefetch_buffer_size=4)
    )
  )
  report = run_log.RunReport(
    workdir,
    config.mode,
    total_steps,
    start_step,
    progress=jax.process_index() == 0 and config.progress,
    write_events=jax.process_index() == 0,
  )
  t0 = time.time()

  @profile.timed("train_steps")
  def step_fn(state: dict, step: int) -> tuple[dict, tuple]:
    with profile.part("input_wait"):
      batch = next(batches)
    indices = batch.pop("index")
    global_batch = {k: parallel.from_process_rows(v) for k, v in batch.items()}
    if step == start_step + 1:
      report.compiling(step_reused)
    state, logs = train_step(state, global_batch)
    report.step(step)
    return state, (step, indices, logs)

  @profile.timed("train_steps")
  def flush(step: int, pending: list) -> None:
    """Checks the pending steps are finite, then logs their mean."""
    host = jax.device_get([logs for _, _, logs in pending])
    log_training(
      workdir,
      config,
      sources,
      report,
      step,
      [(s, i, l) for (s, i, _), l in zip(pending, host)],
      steps_per_epoch=steps_per_epoch,
      seconds=time.time() - t0,
    )

  def evaluate_step(step: int, state: dict) -> dict:
    summary = evaluate(state, config.data.eval_split, config.data.eval_view)
    return log_evaluation(workdir, config, report, step, summary)

  def stop_early(step: int) -> bool:
    if not (
      patience
      and patience_exhausted(step, ckpt.best_step(), eval_every, patience)
    ):
      return False
    report.write(
      f"step {step}: no better {config.best_metric} in "
      f"{patience} evaluations; stopping early"
    )
    return True

  try:
    outcome = loop.run(
      state,
      start_step=start_step,
      end_step=stopped_early or total_steps,
      train_step=step_fn,
      ckpt=ckpt,
      preemption=preemption,
      log_now=lambda step: step % config.log_every_steps == 0,
      flush=flush,
      evaluate_now=lambda step: step % eval_every == 0 or step == total_steps,
      evaluate=evaluate_step,
      checkpoint_every=config.checkpoint_every_steps,
      stop_after_evaluation=stop_early,
    )
  finally:
    report.close()
  state = outcome.state
  if outcome.preempted_at is not None:
    return {
      "mode": config.mode,
      "preempted": True,
      "step": outcome.preempted_at,
      "signal": preemption.signal,
      "saved": outcome.saved,
      "workdir": os.path.abspath(workdir),
      "profile": dict(
        profile.seconds(), trained_steps=outcome.preempted_at - start_step
      ),
    }
  stopped_early = outcome.stopped_early or stopped_early
  trained_steps = (stopped_early or total_steps) - start_step

  # ----- Results of the best checkpoint on the validation split. -----
  results = best_results(
    config, workdir, state, evaluate, replicated, profile, total_steps
  )
  results["stopped_early_at"] = stopped_early
  return write_results(
    workdir, results, dict(profile.seconds(), trained_steps=trained_steps)
  )


def best_results(
  config: ml_collections.ConfigDict,
  workdir: str,
  state: dict,
  evaluate,
  replicated,
  profile: time_profile.RunProfile,
  total_steps: int,
) -> dict:
  """The results of the run's best checkpoint on the validation split
  (`state`: the trained state, frozen parts attached)."""
  with profile.part("checkpoints"):
    best_step, best = checkpoints.restore_state(
      workdir,
      target=checkpoints.abstract_like(state),
      optional=(frozen_lib.STATE_KEY,),
    )
  state = jax.device_put(dict(state, **best), replicated)
  return {
    "mode": config.mode,
    "workdir": os.path.abspath(workdir),
    "total_steps": total_steps,
    "best_step": best_step,
    "best_metric": config.best_metric,
    "stopped_early_at": None,
    "validation": evaluate(
      state, config.data.eval_split, config.data.eval_view
    ),
  }


def write_results(workdir: str, results: dict, this_call: dict) -> dict:
  """Writes results.json; returns the results with this call's profile.
  The file keeps the profile of the call that trained the run (a re-report,
  which trains nothing, keeps the stored one)."""
  stored = this_call if this_call["trained_steps"] else _stored_profile(workdir)
  if stored is not None:
    results = dict(results, profile=stored)
  if jax.process_index() == 0:
    workdir_lib.write_atomic(
      os.path.join(workdir, "results.json"), json.dumps(results, indent=2)
    )
  return dict(results, profile=this_call)


def _stored_profile(workdir: str) -> dict | None:
  """The profile in the run's results.json (None: none, or unreadable)."""
  try:
    with open(os.path.join(workdir, "results.json")) as f:
      return json.load(f).get("profile")
  except (OSError, ValueError):
    return None


def restored_predictor(
  config: ml_collections.ConfigDict,
  workdir: str,
  split: str,
  which: str = checkpoints.BEST,
):
  """(info, sources, step, predict_fn) of a run's checkpoint `which`: the
  dataset's sources as the run's mode reads them (which must hold `split`)
  and the jitted predictor of that checkpoint, frozen parts re-attached."""
  info, sources = datasets.open_dataset(
    config.dataset.name, config.dataset.data_dir
  )
  if split not in sources:
    raise ValueError(
      f"dataset {info.name} has no split {split!r}: choose "
      f"one of {', '.join(sources)}"
    )
  mode = build_mode(config, info)
  sources = mode.data_sources(sources)
  step, state = checkpoints.restore_state(workdir, which)
  if frozen_lib.STATE_KEY not in state:  # re-attach, unless an older layout
    loaded = {}
    frozen = load_frozen(config, info, mode, loaded)
    frozen_lib.check_or_record(
      workdir, frozen_lib.describe(loaded, frozen), first_start=False
    )
    state[frozen_lib.STATE_KEY] = frozen
  parallel = sharding_lib.data_parallel()
  state = jax.device_put(state, parallel.replicated)
  return info, sources, step, make_predict_fn(mode, state, parallel)


def evaluate_run(
  config: ml_collections.ConfigDict,
  workdir: str,
  split: str,
  view: str | None = None,
  chunk_sizes=None,
  which: str = checkpoints.BEST,
  write_predictions: bool = True,
) -> dict:
  """Scores a run's checkpoint on `split`; returns the metrics dict."""
  distributed.initialize()
  view = view or config.data.eval_view
  chunk_sizes = (
    tuple(int(c) for c in chunk_sizes)
    if chunk_sizes
    else eval_chunk_sizes(config)
  )
  info, sources, step, predict_fn = restored_predictor(
    config, workdir, split, which
  )
  out_dir = os.path.join(workdir, "eval", f"{split}_{view}")
  summary = evaluator.evaluate_split(
    predict_fn,
    sources[split],
    view=view,
    chunk_sizes=chunk_sizes,
    max_frames=config.data.max_frames,
    batch_size=config.data.eval_batch_size,
    class_names=info.class_names,
    background_classes=info.background_classes,
    background_policy=config.background_policy,
    predictions_dir=(
      os.path.join(out_dir, "predictions") if write_predictions else None
    ),
    progress=config.progress,
  )
  summary.update(
    mode=config.mode,
    split=split,
    view=view,
    step=int(step),
    checkpoint=which,
    chunk_sizes=list(chunk_sizes),
    class_names=list(info.class_names),
  )
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "metrics.json"), "w") as f:
    json.dump(summary, f, indent=2)
  return summary
