"""Training modes: what each method trains, on what, and how it predicts.

A run's state is a plain dict of pytrees:
  step, params (what the optimiser updates), batch_stats (BatchNorm statistics
  of the model being trained, empty when none), opt_state,
  frozen (parameters the run uses but never updates: the teacher, a trained
  adapter; empty for supervised runs).
Teacher and student are two parameter trees of the same C2F-TCN module.
`uda_adversarial` trains a domain classifier next to the model:
params = {"model": C2F-TCN params, "domain": classifier params}.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from exo2ego_jax.training import losses
from exo2ego_jax.models import c2f_tcn
from exo2ego_jax.models import domain

SUPERVISED_MODES = ("exo_supervised", "ego_oracle")
DISTILL_MODES = ("distill_model", "distill_feature", "distill_both")
# Baselines that show what synchronization buys. Unsupervised domain
# adaptation: labeled exo windows plus unlabeled ego windows drawn
# independently of them (synchronization ignored).
UDA_MODES = ("uda_adversarial", "uda_entropy")
# Supervised training of an ego model on teacher labels of the ego frames,
# transferred through a DTW alignment or through the synchronization.
PSEUDO_LABEL_MODES = ("align_pseudo_label", "sync_pseudo_label")
MODES = SUPERVISED_MODES + DISTILL_MODES + UDA_MODES + PSEUDO_LABEL_MODES
# Modes that need a trained exo teacher (config.teacher_workdir).
TEACHER_MODES = DISTILL_MODES + PSEUDO_LABEL_MODES
# Modes that train on synchronized pairs as such, where config.data.sync_offset
# (a deliberate synchronization error) means something.
SYNC_OFFSET_MODES = DISTILL_MODES + ("sync_pseudo_label",)
PSEUDO_LABEL_KEY = "pseudo_labels"  # field that pseudo_labels.py adds
# Head names in the order C2F-TCN returns them; "y" is the final head.
HEADS = c2f_tcn.HEAD_NAMES + ("y",)


@dataclasses.dataclass(frozen=True)
class Mode:
  """Static description of a run: the pieces a step function closes over."""
  name: str
  model: nn.Module
  adapter: nn.Module | None
  ensemble_weights: tuple[float, ...]
  smooth_weight: float
  distill_heads: tuple[str, ...]
  distill_weights: tuple[float, ...]
  pseudo_label_weight: float
  train_view: str   # the view the trained network is fed
  label_key: str | None  # labels read by the training pipeline (None: none)
  # UDA_MODES: frame- and sequence-level domain classifier (uda_adversarial),
  # entropy of the target predictions (uda_entropy); both terms ramp up with
  # reversal_schedule over `ramp_steps` (the run's length).
  domain_classifier: nn.Module | None = None
  frame_domain_weight: float = 0.0
  sequence_domain_weight: float = 0.0
  entropy_weight: float = 0.0
  diversity_weight: float = 0.0
  ramp_steps: int = 1
  # How the supervised loss averages its smoothing term (losses.SMOOTH_AVERAGES).
  smooth_average: str = "valid_pairs"

  @property
  def input_views(self) -> tuple[str, ...]:
    """Views a training batch must carry."""
    if self.name in DISTILL_MODES:
      return ("exo", self.train_view)
    return (self.train_view,)

  @property
  def uses_teacher(self) -> bool:
    """Whether the loss runs the frozen teacher (distillation)."""
    return self.name in DISTILL_MODES

  @property
  def loads_teacher(self) -> bool:
    """Whether the run starts from (and keeps frozen) a trained teacher."""
    return self.name in TEACHER_MODES

  @property
  def trains_adapter(self) -> bool:
    return self.name == "distill_feature"

  @property
  def uses_trained_adapter(self) -> bool:
    return self.name == "distill_both"


def model_variables(mode: Mode, state: dict) -> dict:
  """The C2F-TCN variables a run predicts with."""
  if mode.trains_adapter:
    return state["frozen"]["teacher"]
  params = state["params"]
  if mode.domain_classifier is not None:
    params = params["model"]
  return {"params": params, "batch_stats": state["batch_stats"]}


def adapt(mode: Mode, state: dict, features: jax.Array, mask: jax.Array
          ) -> jax.Array:
  """Ego features through the run's adapter (identity if it has none)."""
  if mode.trains_adapter:
    return mode.adapter.apply({"params": state["params"]}, features, mask)
  if mode.uses_trained_adapter:
    return mode.adapter.apply({"params": state["frozen"]["adapter"]},
                              features, mask)
  return features


def predict_probs(mode: Mode, state: dict, features: jax.Array,
                  mask: jax.Array) -> jax.Array:
  """Ensemble class probabilities (B, T, C) for features of the run's view."""
  x = adapt(mode, state, features, mask)
  outputs = mode.model.apply(model_variables(mode, state), x, mask, train=False)
  return c2f_tcn.ensemble_probs(outputs, mode.ensemble_weights)


def _selected_heads(outputs: dict, names) -> tuple[list, list]:
  """Logits and masks of the named heads (mask None: the frame mask)."""
  heads = list(outputs["head_logits"]) + [outputs["logits"]]
  masks = list(outputs["head_masks"]) + [None]
  index = [HEADS.index(name) for name in names]
  return [heads[i] for i in index], [masks[i] for i in index]


def loss_fn(mode: Mode, params: dict, state: dict, batch: dict
            ) -> tuple[jax.Array, tuple[dict, dict]]:
  """The training objective of `mode`. Returns loss, (new batch_stats, logs)."""
  mask = batch["mask"]
  if mode.trains_adapter:
    adapted = mode.adapter.apply({"params": params}, batch[mode.train_view],
                                 mask)
    loss = losses.masked_mse(adapted, batch["exo"], mask)
    return loss, (state["batch_stats"], {"feature_mse": loss})
  if mode.name in UDA_MODES:
    return _domain_adaptation_loss(mode, params, state, batch)

  variables = {"params": params, "batch_stats": state["batch_stats"]}
  x = adapt(mode, state, batch[mode.train_view], mask)
  outputs, updates = mode.model.apply(variables, x, mask, train=True,
                                      mutable=["batch_stats"])
  probs = c2f_tcn.ensemble_probs(outputs, mode.ensemble_weights)
  if not mode.uses_teacher:
    loss, logs = losses.supervised_loss(probs, batch["labels"], mask,
                                        mode.smooth_weight,
                                        mode.smooth_average)
    return loss, (updates["batch_stats"], logs)

  teacher = mode.model.apply(state["frozen"]["teacher"], batch["exo"], mask,
                             train=False)
  teacher = jax.tree.map(jax.lax.stop_gradient, teacher)
  student_heads, head_masks = _selected_heads(outputs, mode.distill_heads)
  teacher_heads, _ = _selected_heads(teacher, mode.distill_heads)
  head_masks = [mask if m is None else m for m in head_masks]
  loss = losses.head_distillation(student_heads, teacher_heads, head_masks,
                                  mode.distill_weights)
  logs = {"head_mse": loss}
  if mode.pseudo_label_weight:
    teacher_probs = c2f_tcn.ensemble_probs(teacher, mode.ensemble_weights)
    pseudo = jnp.argmax(teacher_probs, axis=-1)
    pseudo_loss, _ = losses.supervised_loss(probs, pseudo, mask,
                                            mode.smooth_weight)
    loss = loss + mode.pseudo_label_weight * pseudo_loss
    logs["pseudo_label"] = pseudo_loss
  return loss, (updates["batch_stats"], logs)


def _domain_adaptation_loss(mode: Mode, params: dict, state: dict,
                            batch: dict) -> tuple[jax.Array, tuple[dict, dict]]:
  """Supervised loss on the labeled source windows plus an unsupervised term
  on the `target` windows (unlabeled, drawn independently of the source).

  Source and target windows go through the model as one batch, so BatchNorm
  normalises with (and keeps running statistics of) both domains: the
  statistics the model predicts ego with have seen ego features.
  """
  source, target = batch[mode.train_view], batch["target"]
  num_source = source.shape[0]
  mask = jnp.concatenate([batch["mask"], batch["target_mask"]])
  model_params = (params["model"] if mode.domain_classifier is not None
                  else params)
  outputs, updates = mode.model.apply(
      {"params": model_params, "batch_stats": state["batch_stats"]},
      jnp.concatenate([source, target]), mask, train=True,
      mutable=["batch_stats"])
  probs = c2f_tcn.ensemble_probs(outputs, mode.ensemble_weights)
  loss, logs = losses.supervised_loss(probs[:num_source], batch["labels"],
                                      batch["mask"], mode.smooth_weight)
  progress = jnp.clip(state["step"] / mode.ramp_steps, 0.0, 1.0)
  ramp = domain.reversal_schedule(progress)
  logs = dict(logs, ramp=ramp)
  if mode.entropy_weight:
    target_probs, target_mask = probs[num_source:], batch["target_mask"]
    target_entropy = losses.entropy(target_probs, target_mask)
    diversity = losses.marginal_entropy(target_probs, target_mask)
    loss = loss + mode.entropy_weight * ramp * (
        target_entropy - mode.diversity_weight * diversity)
    logs.update(target_entropy=target_entropy, target_diversity=diversity)
  if mode.domain_classifier is not None:
    # The classifier learns at full strength; the model gets -ramp times its
    # gradient, so it learns features the classifier cannot tell apart.
    features = domain.gradient_reversal(outputs["features"], ramp)
    logits = mode.domain_classifier.apply({"params": params["domain"]},
                                          features, mask)
    is_target = (jnp.arange(mask.shape[0]) >= num_source).astype(jnp.float32)
    frame_loss = losses.domain_cross_entropy(logits["frame"],
                                             is_target[:, None], mask)
    correct = ((logits["frame"] > 0) == (is_target[:, None] > 0))
    logs["domain_frame"] = frame_loss
    logs["domain_frame_accuracy"] = (jnp.sum(correct * mask) /
                                     jnp.maximum(jnp.sum(mask), 1.0))
    loss = loss + mode.frame_domain_weight * frame_loss
    if "sequence" in logits:
      sequence_loss = losses.domain_cross_entropy(
          logits["sequence"], is_target, jnp.ones_like(is_target))
      logs["domain_sequence"] = sequence_loss
      loss = loss + mode.sequence_domain_weight * sequence_loss
  return loss, (updates["batch_stats"], logs)
