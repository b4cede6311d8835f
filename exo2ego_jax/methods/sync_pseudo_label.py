"""sync_pseudo_label: trusts the synchronization; ego step t gets the
teacher's hard prediction on exo step t. With config.multiview.combine =
"vote" on a multi-view dataset, the majority of its hard predictions on the
exo views present at step t (docs/multiview.md)."""

from __future__ import annotations

import ml_collections
import numpy as np

from exo2ego_jax.methods import distill_multiview
from exo2ego_jax.methods import pseudo_labels
from exo2ego_jax.methods import registry


@registry.register("sync_pseudo_label")
class SyncPseudoLabel(pseudo_labels.PseudoLabel):
  """Teacher labels moved across the synchronization."""

  trains_on_sync_pairs = True

  @classmethod
  def check_config(cls, config: ml_collections.ConfigDict, info) -> None:
    super().check_config(config, info)
    if distill_multiview.options(config)["combine"] == distill_multiview.VOTE:
      distill_multiview.check_teacher_views(config, info)
      distill_multiview.used_views(config, info)  # a valid num_views
      if not distill_multiview.is_multiview(info):
        raise ValueError(
          f"config.multiview.combine='vote' needs a multi-view dataset; "
          f"{info.name} has one exo view: leave config.multiview out"
        )

  def train_source(
    self, frozen: dict, source, config: ml_collections.ConfigDict, workdir: str
  ):
    if distill_multiview.options(config)["combine"] != distill_multiview.VOTE:
      return super().train_source(frozen, source, config, workdir)
    count = distill_multiview.options(config)["num_views"]
    if count:
      source = distill_multiview.SelectedViews(source, tuple(range(count)))
    return pseudo_labels.pseudo_labeled_source(
      self,
      frozen["teacher"],
      source,
      config,
      workdir,
      compute_fn=distill_multiview.vote_labels,
    )

  def step_labels(
    self, exo, ego, config: ml_collections.ConfigDict
  ) -> np.ndarray:
    del ego, config
    exo_probs, _ = exo
    return exo_probs.argmax(axis=-1).astype(np.int32)
