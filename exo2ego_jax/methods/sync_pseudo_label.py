"""sync_pseudo_label: trusts the synchronization; ego step t gets the
teacher's hard prediction on exo step t."""

from __future__ import annotations

import ml_collections
import numpy as np

from exo2ego_jax.methods import pseudo_labels
from exo2ego_jax.methods import registry


@registry.register("sync_pseudo_label")
class SyncPseudoLabel(pseudo_labels.PseudoLabel):
  """Teacher labels moved across the synchronization."""

  trains_on_sync_pairs = True

  def step_labels(
    self, exo, ego, config: ml_collections.ConfigDict
  ) -> np.ndarray:
    del ego, config
    exo_probs, _ = exo
    return exo_probs.argmax(axis=-1).astype(np.int32)
