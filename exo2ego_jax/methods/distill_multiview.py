"""Multi-view teachers (issue #20, docs/multiview.md).

A rig with K synchronized exo cameras gives K teachers' views of every ego
frame; a view that misses a moment (absent, or occluded and unsure) is
outvoted by the others instead of teaching the student noise.

exo_multiview: the teacher, supervised on the labelled exo recordings of
every view used (each (recording, view) pair one training recording; frames
a view misses are not trained on). distill_multiview: the ego student
matches, head by head, a per-frame combination of the frozen teacher's
logits on the views present there: their mean, or ("confidence") their
mean weighted by each view's confidence 1 - H(p) / log C. Steps no view
sees are not trained on (logged as `unseen_steps`). Both read
`config.multiview` (absent: every view, mean); on a single-view dataset
they are exo_supervised and distill_model.

One teacher per view instead of the shared one: exo_multiview with
`config.multiview.view = k` trains (and is validated and tested) on view k
alone, and distill_multiview with `config.multiview.teachers` (one teacher
workdir per view used, in view order; the first is config.teacher_workdir,
the one the student starts from) runs teacher k on view k.
"""

from __future__ import annotations

import dataclasses
import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from exo2ego_jax.data import input_pipeline
from exo2ego_jax.data.constants import IGNORE_LABEL
from exo2ego_jax.methods import distillation
from exo2ego_jax.methods import registry
from exo2ego_jax.methods import supervised
from exo2ego_jax.models import c2f_tcn
from exo2ego_jax.runtime import workdir as workdir_lib
from exo2ego_jax.training import losses

# How the views' teacher outputs are combined per frame; "vote" is
# sync_pseudo_label's (majority of the views' hard labels).
COMBINES = ("mean", "confidence")
VOTE = "vote"
# Temporal downsampling of each head's logits (y1..y5, y) in C2F-TCN.
HEAD_FACTORS = dict(zip(distillation.HEADS, (32, 16, 8, 4, 2, 1)))
EPS = 1e-6


def options(config: ml_collections.ConfigDict) -> dict:
  """config.multiview's settings, with defaults for configs without it."""
  section = config.get("multiview") or {}
  return {
    "num_views": section.get("num_views", None),  # None: every view
    "view": section.get("view", None),  # one view k alone (None: see above)
    "combine": section.get("combine", "mean"),
    # One teacher workdir per view used (empty: config.teacher_workdir's
    # teacher on every view).
    "teachers": tuple(section.get("teachers", None) or ()),
  }


def used_views(config: ml_collections.ConfigDict, info) -> tuple[int, ...]:
  """Indices of the dataset's exo views a run uses: view k alone
  (multiview.view), else the first num_views (None: all)."""
  count, view = options(config)["num_views"], options(config)["view"]
  names = info.exo_views
  if view is not None:
    if count is not None or not 0 <= int(view) < len(names):
      raise ValueError(
        f"config.multiview.view={view} but dataset {info.name} has "
        f"{len(names)} exo views ({', '.join(names)}): use 0 to "
        f"{len(names) - 1}, and leave config.multiview.num_views unset"
      )
    return (int(view),)
  if count is None:
    return tuple(range(len(names)))
  if not 1 <= int(count) <= len(names):
    raise ValueError(
      f"config.multiview.num_views={count} but dataset {info.name} has "
      f"{len(names)} exo views ({', '.join(names)}): use 1 to {len(names)}"
    )
  return tuple(range(int(count)))


def is_multiview(info) -> bool:
  return len(info.exo_views) > 1


class SelectedViews:
  """A source whose `exo_views`/`exo_present` keep only `views`."""

  def __init__(self, source, views: tuple[int, ...]):
    self.source, self.views = source, list(views)

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, index: int) -> dict:
    example = dict(self.source[index])
    for key in (input_pipeline.EXO_VIEWS, input_pipeline.EXO_PRESENT):
      example[key] = np.asarray(example[key])[self.views]
    return example


class ViewAsExo:
  """A multi-view source whose `exo` is view k (labels as they are): what
  a one-view teacher is validated and tested on."""

  def __init__(self, source, view: int):
    self.source, self.view = source, int(view)

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, index: int) -> dict:
    example = dict(self.source[index])
    example["exo"] = np.asarray(example[input_pipeline.EXO_VIEWS][self.view])
    return example


class ViewsAsRecordings:
  """Each (recording, view) pair of a multi-view source as one recording:
  `exo` is that view, and its labels are IGNORE_LABEL where it is absent."""

  def __init__(self, source, views: tuple[int, ...]):
    self.source, self.views = source, tuple(views)

  def __len__(self) -> int:
    return len(self.source) * len(self.views)

  def __getitem__(self, index: int) -> dict:
    recording, k = divmod(int(index), len(self.views))
    example = self.source[recording % len(self.source)]
    view = self.views[k]
    present = np.asarray(example[input_pipeline.EXO_PRESENT][view]) > 0
    out = {
      key: value
      for key, value in example.items()
      if key not in (input_pipeline.EXO_VIEWS, input_pipeline.EXO_PRESENT)
    }
    out["exo"] = np.asarray(example[input_pipeline.EXO_VIEWS][view])
    for key in ("labels", "ego_labels"):
      if key in example:
        out[key] = np.where(present, example[key], IGNORE_LABEL).astype(
          np.int32
        )
    return out


@registry.register("exo_multiview")
@dataclasses.dataclass(frozen=True, kw_only=True)
class ExoMultiview(supervised.Supervised):
  """The multi-view teacher: the views as augmentation (one C2F-TCN)."""

  views: tuple[int, ...] = (0,)
  multiview: bool = False

  @classmethod
  def settings(cls, config: ml_collections.ConfigDict, info) -> dict:
    return {
      **super().settings(config, info),
      "views": used_views(config, info),
      "multiview": is_multiview(info),
    }

  def train_source(self, frozen, source, config, workdir):
    del frozen, config, workdir
    return ViewsAsRecordings(source, self.views) if self.multiview else source

  def data_sources(self, sources: dict) -> dict:
    """A one-view teacher (multiview.view = k) is validated and tested on
    view k as `exo`."""
    if not self.multiview or self.views[0] == 0 or len(self.views) > 1:
      return sources
    return {split: ViewAsExo(s, self.views[0]) for split, s in sources.items()}


def teacher_views(
  config: ml_collections.ConfigDict, info, workdir: str | None = None
) -> tuple[str, ...]:
  """Names of the exo views a teacher run (`workdir`, default the run's
  config.teacher_workdir) was trained on, from its config.json (None when
  there is none yet: loading it says so)."""
  workdir = config.teacher_workdir if workdir is None else workdir
  path = os.path.join(workdir or "", "config.json")
  if not os.path.exists(path):
    return None
  teacher = ml_collections.ConfigDict(workdir_lib.read_json(path, "retrain it"))
  if teacher.dataset.name == config.dataset.name:
    teacher_info = info
  else:
    from exo2ego_jax.data import datasets  # pylint: disable=g-import-not-at-top

    teacher_info, _ = datasets.open_dataset(
      teacher.dataset.name, teacher.dataset.get("data_dir")
    )
  names = teacher_info.exo_views
  if teacher.mode != "exo_multiview":  # a single-view teacher: `exo`, view 0
    return names[:1]
  return tuple(names[k] for k in used_views(teacher, teacher_info))


def check_teacher_views(config: ml_collections.ConfigDict, info) -> None:
  """Every view the student combines must be one its teacher learnt (with
  one teacher per view: view k one that teacher k learnt)."""
  wanted = tuple(info.exo_views[k] for k in used_views(config, info))
  teachers = options(config)["teachers"]
  if not teachers:
    learnt = teacher_views(config, info)
    if learnt is not None and not set(wanted) <= set(learnt):
      raise ValueError(
        f"teacher {config.teacher_workdir} was trained on exo views "
        f"({', '.join(learnt)}) but dataset {info.name} gives this run views "
        f"({', '.join(wanted)}): train the teacher with mode exo_multiview "
        "on this dataset, or lower config.multiview.num_views"
      )
    return
  if len(teachers) != len(wanted):
    raise ValueError(
      f"config.multiview.teachers lists {len(teachers)} teachers for "
      f"{len(wanted)} exo views ({', '.join(wanted)}): give one teacher "
      "workdir per view used, in view order"
    )
  if os.path.abspath(teachers[0]) != os.path.abspath(
    config.teacher_workdir or ""
  ):
    raise ValueError(
      f"config.teacher_workdir={config.teacher_workdir} is not "
      f"config.multiview.teachers[0]={teachers[0]}: set it to the first "
      "view's teacher (the student starts from it)"
    )
  for view, workdir in zip(wanted, teachers):
    learnt = teacher_views(config, info, workdir)
    if learnt is not None and view not in learnt:
      raise ValueError(
        f"teacher {workdir} was trained on exo views ({', '.join(learnt)}) "
        f"but config.multiview.teachers gives it view {view} of dataset "
        f"{info.name}: list each view's teacher in view order"
      )


def pooled_weights(weights: jax.Array, factor: int, length: int) -> jax.Array:
  """(B, K, T) per-step weights averaged over each `factor` steps of a head
  of `length` steps (zero past the window, as the model's padding)."""
  b, k, t = weights.shape
  total = length * factor
  if total > t:
    weights = jnp.pad(weights, ((0, 0), (0, 0), (0, total - t)))
  return weights[..., :total].reshape(b, k, length, factor).mean(-1)


def combine_heads(
  heads: list, weights: jax.Array, names, count: int
) -> tuple[list, list]:
  """Per head: the views' logits (B * K, T_h, C) combined with (B, K, T)
  `weights`, and where any view has weight (B, T_h) as a float mask."""
  combined, seen = [], []
  for name, logits in zip(names, heads):
    b_k, length, c = logits.shape
    logits = logits.reshape(b_k // count, count, length, c)
    w = pooled_weights(weights, HEAD_FACTORS[name], length)
    total = w.sum(1)
    combined.append(
      (w[..., None] * logits).sum(1) / jnp.maximum(total, EPS)[..., None]
    )
    seen.append((total > 0).astype(logits.dtype))
  return combined, seen


@registry.register("distill_multiview")
@dataclasses.dataclass(frozen=True, kw_only=True)
class DistillMultiview(distillation.Distillation):
  """Head distillation towards the combined views' teacher logits."""

  views: tuple[int, ...] = (0,)
  multiview: bool = False
  combine: str = "mean"
  # Number of per-view teachers (0: the shared teacher on every view).
  view_teachers: int = 0

  @property
  def input_views(self) -> tuple[str, ...]:
    if not self.multiview:
      return ("exo", self.train_view)
    return (
      self.train_view,
      input_pipeline.EXO_VIEWS,
      input_pipeline.EXO_PRESENT,
    )

  @classmethod
  def check_config(cls, config: ml_collections.ConfigDict, info) -> None:
    super().check_config(config, info)
    if options(config)["combine"] not in COMBINES:
      raise ValueError(
        f"config.multiview.combine={options(config)['combine']!r} is "
        f"unknown for mode {cls.name}: use one of {', '.join(COMBINES)}"
      )
    check_teacher_views(config, info)
    model = config.get("model", {}).get("name", "c2f_tcn")
    if model != "c2f_tcn":
      raise ValueError(
        f"mode {cls.name} combines the teacher's heads at C2F-TCN's rates; "
        f"config.model.name={model!r} is not supported: use c2f_tcn, or "
        "distill_model for a causal student"
      )

  @classmethod
  def settings(cls, config: ml_collections.ConfigDict, info) -> dict:
    return {
      **super().settings(config, info),
      "views": used_views(config, info),
      "multiview": is_multiview(info),
      "combine": options(config)["combine"],
      "view_teachers": len(options(config)["teachers"]),
    }

  def frozen_parts(self, config, info, loaded: dict) -> dict:
    """The teachers of views 2, 3, ... (per-view teachers; the first is
    the run's `teacher`), frozen as `teacher_view1`, ..."""
    from exo2ego_jax.runtime import frozen as frozen_lib  # pylint: disable=g-import-not-at-top
    from exo2ego_jax.training import trainer  # pylint: disable=g-import-not-at-top

    parts = super().frozen_parts(config, info, loaded)
    for k, workdir in enumerate(options(config)["teachers"][1:], 1):
      role = f"teacher_view{k}"
      parts[role] = frozen_lib.restore_variables(workdir, loaded, role)
      trainer.check_teacher(parts[role], config, info, self, workdir)
    return parts

  def train_source(self, frozen, source, config, workdir):
    del frozen, config, workdir
    return SelectedViews(source, self.views) if self.multiview else source

  def view_stack(self, batch: dict) -> tuple[jax.Array, jax.Array]:
    """Exo views (B, K, T, D) and presence (B, K, T) of a batch."""
    if not self.multiview:
      exo = batch["exo"][:, None]
      return exo, jnp.ones(exo.shape[:3], exo.dtype)
    return batch[input_pipeline.EXO_VIEWS], batch[input_pipeline.EXO_PRESENT]

  def loss(
    self, params: dict, state: dict, batch: dict
  ) -> tuple[jax.Array, tuple[dict, dict]]:
    mask = batch["mask"]
    outputs, updates, _ = self.train_forward(params, state, batch)
    exo, present = self.view_stack(batch)
    teacher = jax.tree.map(
      jax.lax.stop_gradient, self.teacher_outputs(state["frozen"], exo, mask)
    )
    student, masks = distillation.selected_heads(outputs, self.distill_heads)
    targets, seen, unseen = self.view_targets(teacher, present, mask)
    masks = [mask if m is None else m for m in masks]
    masks = [m * s for m, s in zip(masks, seen)]
    loss = losses.head_distillation(
      student, targets, masks, self.distill_weights
    )
    logs = {"head_mse": loss, "unseen_steps": unseen}
    return loss, (updates["batch_stats"], logs)

  def teacher_outputs(
    self, frozen: dict, exo: jax.Array, mask: jax.Array
  ) -> dict:
    """The teacher's outputs on each view of (B, K, T, D) `exo`, as one
    batch of B * K windows (view-major within a recording): the shared
    teacher on all of them, or teacher k on view k."""
    b, k, t, d = exo.shape
    if not self.view_teachers:
      return self.teacher_net.apply(
        frozen["teacher"],
        exo.reshape(b * k, t, d),
        jnp.repeat(mask, k, axis=0),
        train=False,
      )
    keys = ["teacher"] + [f"teacher_view{v}" for v in range(1, k)]
    outputs = [
      self.teacher_net.apply(frozen[key], exo[:, v], mask, train=False)
      for v, key in enumerate(keys)
    ]
    return jax.tree.map(
      lambda *xs: jnp.stack(xs, 1).reshape(b * k, *xs[0].shape[1:]), *outputs
    )

  def view_targets(
    self, teacher: dict, present: jax.Array, mask: jax.Array
  ) -> tuple[list, list, jax.Array]:
    """From the teacher's outputs on the B * K views (view-major within a
    recording), the combined logits of each distilled head, where each is
    seen (a float mask per head), and the count of valid steps no view
    sees."""
    b, k, t = present.shape
    weights = present * mask[:, None]
    if self.combine == "confidence":
      probs = c2f_tcn.ensemble_probs(teacher, self.ensemble_weights)
      entropy = -jnp.sum(probs * jnp.log(probs + EPS), axis=-1)
      confidence = 1.0 - entropy / math.log(probs.shape[-1])
      weights = weights * jnp.maximum(confidence, EPS).reshape(b, k, t)
    heads, _ = distillation.selected_heads(teacher, self.distill_heads)
    targets, seen = combine_heads(heads, weights, self.distill_heads, k)
    unseen = jnp.sum(mask * (present.max(1) <= 0))
    return targets, seen, unseen


# ----- sync_pseudo_label's views vote. -----


def vote(labels: np.ndarray, present: np.ndarray, num_classes: int):
  """Majority of K views' hard labels (K, S) over the views present (K, S)
  at each step; ties go to the smallest label; IGNORE_LABEL where no view
  is present."""
  votes = np.zeros((labels.shape[1], num_classes), np.int64)
  for view_labels, seen in zip(labels, present > 0):
    np.add.at(votes, (np.nonzero(seen)[0], view_labels[seen]), 1)
  out = votes.argmax(axis=1).astype(np.int32)
  out[votes.sum(axis=1) == 0] = IGNORE_LABEL
  return out


def vote_labels(mode, teacher: dict, source, config) -> dict[str, np.ndarray]:
  """Frame-level labels {video_id: (T,) int32}: on each chunked step, the
  majority of the teacher's hard labels on the exo views present there."""
  from exo2ego_jax.evaluation import evaluator  # pylint: disable=g-import-not-at-top
  from exo2ego_jax.methods import pseudo_labels  # pylint: disable=g-import-not-at-top

  chunk = config.data.chunk_size
  predict = pseudo_labels.teacher_predictor(mode, teacher)
  labels = {}
  for i in range(len(source)):
    example = source[i]
    views = np.asarray(example[input_pipeline.EXO_VIEWS], np.float32)
    outputs = pseudo_labels.teacher_outputs(
      predict,
      mode.model.num_classes,
      list(views),
      chunk_size=chunk,
      max_frames=config.data.max_frames,
      batch_size=config.data.eval_batch_size,
    )
    hard = np.stack([probs.argmax(-1) for probs, _ in outputs])
    present = np.asarray(example[input_pipeline.EXO_PRESENT], np.float32)
    seen = np.stack([input_pipeline.pooled_presence(p, chunk) for p in present])
    steps = vote(hard, seen, mode.model.num_classes)
    length = views.shape[1]
    labels[evaluator.decode_id(example["video_id"])] = (
      input_pipeline.steps_to_frames(steps, chunk, length)
    )
  return labels


# ----- The teacher ensemble's reference rows. -----


def ensemble_scores(
  config: ml_collections.ConfigDict, workdir: str, split: str
) -> dict[str, dict]:
  """A teacher run scored on each exo view it uses of `split` and, with
  several, as the views' ensemble (mean probabilities over the views
  present per frame; frames no view sees: the mean of all):
  {"exo0": summary, ..., "ensemble": summary}."""
  from exo2ego_jax.data import datasets  # pylint: disable=g-import-not-at-top
  from exo2ego_jax.evaluation import evaluator  # pylint: disable=g-import-not-at-top
  from exo2ego_jax.evaluation import metrics  # pylint: disable=g-import-not-at-top
  from exo2ego_jax.runtime import checkpoints  # pylint: disable=g-import-not-at-top
  from exo2ego_jax.training import trainer  # pylint: disable=g-import-not-at-top

  info, sources = datasets.open_dataset(
    config.dataset.name, config.dataset.data_dir
  )
  mode = trainer.build_mode(config, info)
  _, state = checkpoints.restore_state(workdir, checkpoints.BEST)
  variables = {"params": state["params"], "batch_stats": state["batch_stats"]}

  @jax.jit
  def predict(windows, masks):
    outputs = mode.model.apply(variables, windows, masks, train=False)
    return c2f_tcn.ensemble_probs(outputs, mode.ensemble_weights)

  used = used_views(config, info)
  names = [info.exo_views[k] for k in used]
  scores = {
    name: metrics.SegmentationScores(
      background_classes=info.background_classes,
      background_policy=config.background_policy,
    )
    for name in names + (["ensemble"] if len(names) > 1 else [])
  }
  source = sources[split]
  for i in range(len(source)):
    example = source[i]
    views = np.asarray(example[input_pipeline.EXO_VIEWS], np.float32)
    present = np.asarray(example[input_pipeline.EXO_PRESENT], np.float32)
    probs = evaluator.predict_recordings(
      predict,
      [views[k] for k in used],
      trainer.eval_chunk_sizes(config),
      config.data.max_frames,
      config.data.eval_batch_size,
    )
    probs = np.stack(probs)  # (K, T, C)
    labels = evaluator.labels_for_view(example, "exo")
    video = evaluator.decode_id(example["video_id"])
    for name, p in zip(names, probs):
      scores[name].add(video, p.argmax(-1), labels)
    w = present[list(used)]
    w = np.where(w.sum(0, keepdims=True) > 0, w, 1.0)[..., None]
    mean = (w * probs).sum(0) / w.sum(0)
    if "ensemble" in scores:
      scores["ensemble"].add(video, mean.argmax(-1), labels)
  return {name: s.summary() for name, s in scores.items()}
