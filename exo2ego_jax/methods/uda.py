"""Shared pieces of the unsupervised domain adaptation baselines, which show
what synchronization buys: labeled source windows plus unlabeled target
windows (config.uda.target_split / target_view) drawn independently of them,
synchronization ignored. The unsupervised term ramps up with
domain.reversal_schedule over the run's length."""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from exo2ego_jax.data import input_pipeline
from exo2ego_jax.methods import base
from exo2ego_jax.models import c2f_tcn
from exo2ego_jax.models import domain
from exo2ego_jax.training import losses


@dataclasses.dataclass(frozen=True, kw_only=True)
class DomainAdaptation(base.Method):
  """Supervised loss on the source windows plus an unsupervised term on the
  target windows; subclasses set the term's weights."""

  # Frame- and sequence-level domain classifier (None: none).
  domain_classifier: nn.Module | None = None
  frame_domain_weight: float = 0.0
  sequence_domain_weight: float = 0.0
  # Entropy of the target predictions, minus diversity_weight times the
  # entropy of their mean.
  entropy_weight: float = 0.0
  diversity_weight: float = 0.0
  ramp_steps: int = 1  # the run's length (set by for_run_length)

  @classmethod
  def check_config(cls, config: ml_collections.ConfigDict, info) -> None:
    super().check_config(config, info)
    if (
      config.uda.target_split not in info.splits
      or config.uda.target_split.startswith("test")
      or config.uda.target_view not in input_pipeline.VIEWS
    ):
      raise ValueError(
        f"config.uda.target_split={config.uda.target_split!r} and "
        f"target_view={config.uda.target_view!r} must name a non-test "
        f"split of {info.name} and 'exo' or 'ego'"
      )

  def training_windows(
    self,
    train_ds,
    sources: dict,
    config: ml_collections.ConfigDict,
    batch_size: int,
  ):
    """Adds unlabeled target windows, drawn independently (seed + 1)."""
    return input_pipeline.with_target_windows(
      train_ds,
      sources[config.uda.target_split],
      view=config.uda.target_view,
      batch_size=batch_size,
      max_frames=config.data.max_frames,
      chunk_size=config.data.chunk_size,
      zoom=config.data.zoom,
      seed=config.seed + 1,
      shard_index=jax.process_index(),
      shard_count=jax.process_count(),
    )

  def for_run_length(self, total_steps: int) -> "DomainAdaptation":
    return dataclasses.replace(self, ramp_steps=total_steps)

  def loss(
    self, params: dict, state: dict, batch: dict
  ) -> tuple[jax.Array, tuple[dict, dict]]:
    """Source and target windows go through the model as one batch, so
    BatchNorm normalises with (and keeps running statistics of) both
    domains: the statistics the model predicts ego with have seen ego
    features."""
    source, target = batch[self.train_view], batch["target"]
    num_source = source.shape[0]
    mask = jnp.concatenate([batch["mask"], batch["target_mask"]])
    model_params = (
      params["model"] if self.domain_classifier is not None else params
    )
    outputs, updates = self.model.apply(
      {"params": model_params, "batch_stats": state["batch_stats"]},
      jnp.concatenate([source, target]),
      mask,
      train=True,
      mutable=["batch_stats"],
    )
    probs = c2f_tcn.ensemble_probs(outputs, self.ensemble_weights)
    loss, logs = losses.supervised_loss(
      probs[:num_source], batch["labels"], batch["mask"], self.smooth_weight
    )
    progress = jnp.clip(state["step"] / self.ramp_steps, 0.0, 1.0)
    ramp = domain.reversal_schedule(progress)
    logs = dict(logs, ramp=ramp)
    if self.entropy_weight:
      target_probs, target_mask = probs[num_source:], batch["target_mask"]
      target_entropy = losses.entropy(target_probs, target_mask)
      diversity = losses.marginal_entropy(target_probs, target_mask)
      loss = loss + self.entropy_weight * ramp * (
        target_entropy - self.diversity_weight * diversity
      )
      logs.update(target_entropy=target_entropy, target_diversity=diversity)
    if self.domain_classifier is not None:
      # The classifier learns at full strength; the model gets -ramp times
      # its gradient, so it learns features the classifier cannot tell apart.
      features = domain.gradient_reversal(outputs["features"], ramp)
      logits = self.domain_classifier.apply(
        {"params": params["domain"]}, features, mask
      )
      is_target = (jnp.arange(mask.shape[0]) >= num_source).astype(jnp.float32)
      frame_loss = losses.domain_cross_entropy(
        logits["frame"], is_target[:, None], mask
      )
      correct = (logits["frame"] > 0) == (is_target[:, None] > 0)
      logs["domain_frame"] = frame_loss
      logs["domain_frame_accuracy"] = jnp.sum(correct * mask) / jnp.maximum(
        jnp.sum(mask), 1.0
      )
      loss = loss + self.frame_domain_weight * frame_loss
      if "sequence" in logits:
        sequence_loss = losses.domain_cross_entropy(
          logits["sequence"], is_target, jnp.ones_like(is_target)
        )
        logs["domain_sequence"] = sequence_loss
        loss = loss + self.sequence_domain_weight * sequence_loss
    return loss, (updates["batch_stats"], logs)
