"""Frame-level feature distillation of the ViT backbone (the library of
`python -m exo2ego_jax.distill_backbone`, whose docstring says what it does
and writes): synchronized (exo, ego) frames, the frozen teacher and the
trained student, and the run on the shared loop (training/loop.py).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm

from exo2ego_jax.interop import dinov2
from exo2ego_jax.backbone import features as features_lib
from exo2ego_jax.runtime import checkpoints
from exo2ego_jax.runtime import distributed
from exo2ego_jax.runtime import sharding
from exo2ego_jax.data import synthetic_video
from exo2ego_jax.training import loop
from exo2ego_jax.training import trainer
from exo2ego_jax.runtime import workdir as workdir_lib
from exo2ego_jax.models import vit

BEST_METRIC = "neg_val_mse"  # best checkpoints keep the highest value


# ----- Data: synchronized (exo, ego) frames. -----


def _video_pairs(video_dir: str) -> list[tuple[str, str, str]]:
  pairs = []
  for exo in sorted(glob.glob(os.path.join(video_dir, "exo", "*"))):
    name = features_lib.video_name(exo)
    ego = glob.glob(os.path.join(video_dir, "ego", name + ".*"))
    if ego:
      pairs.append((name, exo, ego[0]))
  if not pairs:
    raise FileNotFoundError(
      f"no synchronized pairs in {video_dir}: expected "
      "exo/<name>.mp4 and ego/<name>.mp4"
    )
  return pairs


def load_pairs(config: ml_collections.ConfigDict) -> list[dict]:
  """[{"name", "exo": (T, S, S, 3) uint8, "ego": same}], preprocessed."""
  prep = preprocessing(config)
  pairs = []
  if config.data.video_dir:
    for name, exo_path, ego_path in _video_pairs(config.data.video_dir):
      views = {}
      for view, path in (("exo", exo_path), ("ego", ego_path)):
        try:
          views[view] = np.stack(
            [
              prep.frame(image)
              for _, image in features_lib.decode_frames(path, config.data.fps)
            ]
          )
        except Exception as e:  # damaged file: name it
          raise ValueError(f"cannot read {path}: {e}") from e
      length = min(len(views["exo"]), len(views["ego"]))
      pairs.append(
        {
          "name": name,
          "exo": views["exo"][:length],
          "ego": views["ego"][:length],
        }
      )
  else:
    video_config = synthetic_video.VideoConfig(**config.data.synthetic)
    for index in range(config.data.num_videos):
      pair = synthetic_video.render_pair(index, video_config)
      pairs.append(
        {
          "name": f"pair{index:03d}",
          **{
            view: np.stack([prep.frame(f) for f in pair[view]])
            for view in ("exo", "ego")
          },
        }
      )
  if len(pairs) <= config.data.num_validation_videos:
    raise ValueError(
      f"{len(pairs)} pairs cannot hold out "
      f"{config.data.num_validation_videos} for validation"
    )
  return pairs


def preprocessing(config) -> features_lib.Preprocessing:
  return features_lib.Preprocessing(
    config.data.resize, config.data.crop, config.data.normalisation
  )


# ----- Model. -----


def load_teacher(config: ml_collections.ConfigDict) -> tuple[vit.ViT, dict]:
  """The frozen backbone: converted weights, or a seeded random init."""
  if config.backbone.params:
    return dinov2.load_backbone(config.backbone.params)
  model = vit.vit_from_name(
    config.backbone.model, **config.backbone.overrides.to_dict()
  )
  return model, vit.random_params(model, config.seed)


def trainable_names(params: dict, depth: int, last_blocks: int) -> set[str]:
  """Top-level parameter names the student trains."""
  if not last_blocks:
    return set(params)
  if not 0 < last_blocks <= depth:
    raise ValueError(
      f"config.train_last_blocks={last_blocks} must be in "
      f"0..{depth} (0 trains everything)"
    )
  return {f"block{i}" for i in range(depth - last_blocks, depth)} | {"norm"}


def make_optimizer(config) -> optax.GradientTransformation:
  return optax.adamw(
    config.optim.learning_rate, weight_decay=config.optim.weight_decay
  )


def _batched(
  fn, frames: np.ndarray, batch_size: int, parallel: sharding.DataParallel
) -> np.ndarray:
  """fn over frames in fixed-size (padded) batches; returns host features
  (fn's output is replicated, so every process can read it)."""
  outs = []
  for start in range(0, len(frames), batch_size):
    chunk = frames[start : start + batch_size]
    padded = np.zeros((batch_size,) + frames.shape[1:], frames.dtype)
    padded[: len(chunk)] = chunk
    outs.append((fn(parallel.from_shared_batch(padded)), len(chunk)))
  return np.concatenate([np.asarray(o)[:n] for o, n in outs])


# ----- Training. -----


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Distils (or resumes); exports the best student; returns results.

  As trainer.train_and_evaluate: the workdir is locked, and SIGTERM or
  Ctrl-C saves the state and returns early with results["preempted"] set.
  """
  distributed.initialize()  # multi-host runs only
  os.makedirs(workdir, exist_ok=True)
  lock = (
    workdir_lib.locked(workdir)
    if jax.process_index() == 0
    else contextlib.nullcontext()
  )
  with lock, workdir_lib.PreemptionFlag() as preemption:
    return _run(config, workdir, preemption)


def _run(config: ml_collections.ConfigDict, workdir: str, preemption) -> dict:
  # ----- Setup. -----
  if config.backbone.params and os.path.abspath(config.backbone.params) == (
    os.path.abspath(workdir)
  ):
    raise ValueError(
      "config.backbone.params is the workdir: the export would "
      "overwrite the teacher; use another --workdir"
    )
  if jax.process_index() == 0:
    workdir_lib.write_atomic(
      os.path.join(workdir, "config.json"), config.to_json(indent=2)
    )

  # ----- Device mesh: data parallel over all devices (an Auto axis, as
  # the backbone needs: runtime/sharding.py). -----
  parallel = sharding.data_parallel(auto_axes=True)
  replicated, data = parallel.replicated, parallel.batch
  batch_size = config.data.batch_size
  parallel.check_divides("config.data.batch_size", batch_size)

  # ----- Teacher, student state (restored if the run exists). -----
  model, teacher = load_teacher(config)
  teacher = jax.device_put(teacher, replicated)
  names = trainable_names(teacher, model.depth, config.train_last_blocks)
  # The student is {**frozen, **trained}: below the trained blocks it is the
  # teacher. `frozen` is passed to compiled steps as an argument, never a
  # closure constant, so a large backbone is not baked into the programs.
  frozen = {k: v for k, v in teacher.items() if k not in names}
  optimizer = make_optimizer(config)

  def init_state(start):
    trained = jax.tree.map(jnp.copy, start)  # own buffers: state is donated
    return {
      "step": jnp.zeros((), jnp.int32),
      "params": trained,
      "opt_state": optimizer.init(trained),
    }

  state = jax.jit(init_state, out_shardings=replicated)(
    {k: teacher[k] for k in names}
  )
  ckpt = checkpoints.RunCheckpoints(workdir, BEST_METRIC)
  if ckpt.latest_step() is not None:
    recorded = {
      s: {BEST_METRIC: -r["val_mse"]}
      for s, r in workdir_lib.evaluations(workdir, "validation").items()
    }
    state = jax.device_put(
      ckpt.restore_latest(checkpoints.abstract_like(state), recorded),
      replicated,
    )
  start_step, num_steps = int(state["step"]), config.num_steps
  if jax.process_index() == 0:  # the step-0 record is written again below
    workdir_lib.rewind_metrics(workdir, start_step if start_step else -1)

  # ----- Compiled steps. -----
  features = features_lib.make_feature_fn(
    model, preprocessing(config), config.loss.feature
  )
  embed = jax.jit(
    features, in_shardings=(replicated, data), out_shardings=replicated
  )

  def loss_fn(trained, frozen, ego, target):
    pred = features({**frozen, **trained}, ego)
    return jnp.mean(jnp.square(pred.astype(jnp.float32) - target))

  def train_step(state, frozen, ego, target):
    loss, grads = jax.value_and_grad(loss_fn)(
      state["params"], frozen, ego, target
    )
    updates, opt_state = optimizer.update(
      grads, state["opt_state"], state["params"]
    )
    return (
      {
        "step": state["step"] + 1,
        "params": optax.apply_updates(state["params"], updates),
        "opt_state": opt_state,
      },
      {"loss": loss, "grad_norm": optax.tree.norm(grads)},
    )

  train_step = jax.jit(
    train_step,
    donate_argnums=0,
    in_shardings=(replicated, replicated, data, data),
    out_shardings=(replicated, replicated),
  )

  if start_step < num_steps:
    # ----- Data; the teacher's exo features, computed once. -----
    pairs = load_pairs(config)
    split = len(pairs) - config.data.num_validation_videos
    train_exo, train_ego, val_exo, val_ego = (
      np.concatenate([p[view] for p in part])
      for part in (pairs[:split], pairs[split:])
      for view in ("exo", "ego")
    )
    del pairs
    train_targets = _batched(
      lambda x: embed(teacher, x), train_exo, batch_size, parallel
    )
    val_targets = _batched(
      lambda x: embed(teacher, x), val_exo, batch_size, parallel
    )
    del train_exo, val_exo

    def val_mse(trained) -> float:
      pred = _batched(
        lambda x: embed({**frozen, **trained}, x), val_ego, batch_size, parallel
      )
      return float(np.mean(np.square(pred - val_targets)))

    # ----- Train loop (training/loop.py). -----
    if start_step == 0:
      # The student is still the teacher: val_mse is the view gap. A student
      # that outputs the mean target would score the targets' variance.
      trainer.append_jsonl(
        workdir,
        {
          "step": 0,
          "split": "validation",
          "val_mse": val_mse(state["params"]),
          "val_target_variance": float(val_targets.var(0).mean()),
          "train_frames": len(train_ego),
          "validation_frames": len(val_ego),
        },
      )
    bar = tqdm.tqdm(
      total=num_steps,
      initial=start_step,
      desc="distill",
      disable=jax.process_index() != 0 or not config.progress,
      dynamic_ncols=True,
    )
    t0 = time.time()

    def step_fn(state, step):
      # Batches depend on (seed, step) only: a resumed run sees the same.
      index = np.random.default_rng((config.seed, step)).integers(
        0, len(train_ego), batch_size
      )
      state, logs = train_step(
        state,
        frozen,
        parallel.from_shared_batch(train_ego[index]),
        parallel.from_shared_batch(train_targets[index]),
      )
      bar.update(1)
      return state, logs

    def flush(step, window):
      logs = jax.tree.map(lambda *v: float(np.mean(v)), *window)
      if not np.isfinite(logs["loss"]):
        raise trainer.NonFiniteLossError(
          f"non-finite loss {logs['loss']} at step {step} of {workdir}; "
          "the last good checkpoint is kept. Lower "
          "config.optim.learning_rate"
        )
      trainer.append_jsonl(
        workdir,
        dict(
          logs,
          step=step,
          split="train",
          seconds_since_resume=round(time.time() - t0, 2),
        ),
      )
      bar.set_postfix(loss=f"{logs['loss']:.4g}")

    def evaluate(step, state):
      mse = val_mse(state["params"])
      trainer.append_jsonl(
        workdir, {"step": step, "split": "validation", "val_mse": mse}
      )
      return {BEST_METRIC: -mse}

    try:
      outcome = loop.run(
        state,
        start_step=start_step,
        end_step=num_steps,
        train_step=step_fn,
        ckpt=ckpt,
        preemption=preemption,
        log_now=lambda step: (
          step % config.log_every_steps == 0 or step == num_steps
        ),
        flush=flush,
        evaluate_now=lambda step: (
          step % config.eval_every_steps == 0 or step == num_steps
        ),
        evaluate=evaluate,
        flush_before_save=False,
      )
    finally:
      bar.close()
    state = outcome.state
    if outcome.preempted_at is not None:  # the last step included: saved
      return {
        "preempted": True,
        "signal": preemption.signal,
        "step": outcome.preempted_at,
        "saved": outcome.saved,
        "workdir": os.path.abspath(workdir),
      }
  else:
    ckpt.close()
    preemption.release()  # all is saved: Ctrl-C now stops at once

  # ----- Export the best student as a backbone. -----
  best_step, best = checkpoints.restore_state(
    workdir, target=checkpoints.abstract_like(state)
  )
  student = jax.device_get({**frozen, **best["params"]})
  if jax.process_index() == 0:
    dinov2.save_backbone(workdir, student, vit.config_of(model))
  val = workdir_lib.evaluations(workdir, "validation")
  results = {
    "workdir": os.path.abspath(workdir),
    "steps": num_steps,
    "trained": sorted(names),
    "best_step": int(best_step),
    "initial_val_mse": val[0]["val_mse"],
    "best_val_mse": val[int(best_step)]["val_mse"],
    "val_target_variance": val[0]["val_target_variance"],
    "train_frames": val[0]["train_frames"],
    "validation_frames": val[0]["validation_frames"],
  }
  if jax.process_index() == 0:
    workdir_lib.write_atomic(
      os.path.join(workdir, "results.json"), json.dumps(results, indent=2)
    )
  return results
