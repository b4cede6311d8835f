"""Shared pieces of the synchronization-based distillations: the student
sees the ego view, a frozen exo teacher the synchronized exo view, and the
student starts from the teacher. Teacher and student are two parameter trees
of the same C2F-TCN module; no ego label is read."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections

from exo2ego_jax.methods import base
from exo2ego_jax.models import c2f_tcn
from exo2ego_jax.training import losses

# Head names in the order C2F-TCN returns them; "y" is the final head.
HEADS = c2f_tcn.HEAD_NAMES + ("y",)
# The frozen part a student of another network than its teacher's starts
# from (config.student_init_workdir).
STUDENT_INIT = "student_init"


def check_heads(heads, weights, key: str) -> None:
  """Heads must be C2F-TCN heads with one weight each (`key`: the config
  section holding `<...>heads` and `<...>weights`, for the message)."""
  heads = tuple(heads)
  unknown = [h for h in heads if h not in HEADS]
  if unknown or len(heads) != len(weights):
    raise ValueError(
      f"config.{key}heads={heads} must name heads among "
      f"{HEADS} with one weight each in config.{key}weights"
    )


def selected_heads(outputs: dict, names) -> tuple[list, list]:
  """Logits and masks of the named heads (mask None: the frame mask)."""
  heads = list(outputs["head_logits"]) + [outputs["logits"]]
  masks = list(outputs["head_masks"]) + [None]
  index = [HEADS.index(name) for name in names]
  return [heads[i] for i in index], [masks[i] for i in index]


def at_student_rate(student: dict, teacher: dict) -> dict:
  """The teacher's outputs with every head at the input rate when the
  student's heads run there (a causal student; masks: the frame mask)."""
  if c2f_tcn.HEADS_AT_INPUT_RATE not in student or (
    c2f_tcn.HEADS_AT_INPUT_RATE in teacher
  ):
    return teacher
  heads = c2f_tcn.upsampled_heads(teacher)
  return dict(
    teacher,
    head_logits=tuple(heads[:-1]),
    head_masks=tuple(student["head_masks"]),
  )


def start_from_teacher(frozen: dict) -> tuple[dict, dict]:
  """(params, batch_stats) of a student that starts as the teacher."""
  return frozen["teacher"]["params"], frozen["teacher"]["batch_stats"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Distillation(base.Method):
  """Head distillation (MSE of the teacher's and student's logits of
  config.loss.distill_heads), plus an optional cross-entropy on the
  teacher's hard labels (config.loss.pseudo_label_weight)."""

  loads_teacher = True
  trains_on_sync_pairs = True
  reads_labels = False

  distill_heads: tuple[str, ...] = ("y5", "y4", "y3", "y2")
  distill_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)
  pseudo_label_weight: float = 0.0

  @property
  def input_views(self) -> tuple[str, ...]:
    return ("exo", self.train_view)

  @classmethod
  def check_config(cls, config: ml_collections.ConfigDict, info) -> None:
    check_heads(
      config.loss.distill_heads, config.loss.distill_weights, "loss.distill_"
    )
    super().check_config(config, info)

  @classmethod
  def settings(cls, config: ml_collections.ConfigDict, info) -> dict:
    return {
      "label_key": None,
      "distill_heads": tuple(config.loss.distill_heads),
      "distill_weights": tuple(config.loss.distill_weights),
      "pseudo_label_weight": config.loss.pseudo_label_weight,
    }

  def frozen_parts(self, config, info, loaded: dict) -> dict:
    """With config.student_init_workdir (for a student of another network
    than its teacher's, e.g. causal): that run's trained network, the
    student's start, as `student_init`."""
    workdir = config.get("student_init_workdir")
    if not workdir:
      return {}
    from exo2ego_jax.runtime import frozen as frozen_lib  # pylint: disable=g-import-not-at-top

    if self.teacher_model is None:
      raise ValueError(
        f"config.student_init_workdir={workdir} but this student is its "
        "teacher's network and starts from the teacher: leave it unset"
      )
    start = frozen_lib.restore_variables(workdir, loaded, STUDENT_INIT)
    if not base.params_fit(self.model, start["params"], info.feature_dim):
      raise ValueError(
        f"config.student_init_workdir={workdir} holds another network than "
        "this run's student (config.model): give a run trained with the "
        "student's model config, e.g. the causal exo-only run of the study"
      )
    return {STUDENT_INIT: start}

  def init_params(
    self, rng: jax.Array, frozen: dict, feature_dim: int
  ) -> tuple[dict, dict]:
    if STUDENT_INIT in frozen:  # a trained run of the student's network
      start = frozen[STUDENT_INIT]
      return start["params"], start["batch_stats"]
    if self.teacher_model is not None:  # another network: a fresh start
      return super().init_params(rng, frozen, feature_dim)
    del rng, feature_dim
    return start_from_teacher(frozen)

  def head_loss(
    self, outputs: dict, teacher: dict, mask: jax.Array
  ) -> tuple[jax.Array, dict]:
    """The distillation term between student and (stopped) teacher
    outputs; returns it and its logs."""
    student_heads, head_masks = selected_heads(outputs, self.distill_heads)
    teacher_heads, _ = selected_heads(teacher, self.distill_heads)
    head_masks = [mask if m is None else m for m in head_masks]
    loss = losses.head_distillation(
      student_heads, teacher_heads, head_masks, self.distill_weights
    )
    return loss, {"head_mse": loss}

  def loss(
    self, params: dict, state: dict, batch: dict
  ) -> tuple[jax.Array, tuple[dict, dict]]:
    mask = batch["mask"]
    outputs, updates, probs = self.train_forward(params, state, batch)
    teacher = self.teacher_net.apply(
      state["frozen"]["teacher"], batch["exo"], mask, train=False
    )
    teacher = jax.tree.map(jax.lax.stop_gradient, teacher)
    loss, logs = self.head_loss(
      outputs, at_student_rate(outputs, teacher), mask
    )
    if self.pseudo_label_weight:
      teacher_probs = c2f_tcn.ensemble_probs(teacher, self.ensemble_weights)
      pseudo = jnp.argmax(teacher_probs, axis=-1)
      pseudo_loss, _ = losses.supervised_loss(
        probs, pseudo, mask, self.smooth_weight
      )
      loss = loss + self.pseudo_label_weight * pseudo_loss
      logs["pseudo_label"] = pseudo_loss
    return loss, (updates["batch_stats"], logs)
