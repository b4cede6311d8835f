"""align_pseudo_label: does not trust timestamps. The ego steps are aligned
to the exo steps by DTW (`dtw.py`) on the teacher's decoder features of both
views (an embedding shared by construction, if blurred on ego by the domain
gap), and each ego step takes the argmax of the mean teacher probabilities
of the exo steps aligned to it (config.pseudo_labels.metric,
band_fraction)."""

from __future__ import annotations

import ml_collections
import numpy as np

from exo2ego_jax.methods import pseudo_labels
from exo2ego_jax.methods import registry


@registry.register("align_pseudo_label")
class AlignPseudoLabel(pseudo_labels.PseudoLabel):
  """Teacher labels moved along a DTW alignment."""

  reads_ego_outputs = True
  # A clock error is in the streams it aligns, as on a real rig.
  sync_offset_at_source = True

  def step_labels(
    self, exo, ego, config: ml_collections.ConfigDict
  ) -> np.ndarray:
    exo_probs, exo_features = exo
    return pseudo_labels.aligned_labels(
      exo_features,
      ego[1],
      exo_probs,
      metric=config.pseudo_labels.metric,
      band_fraction=config.pseudo_labels.band_fraction,
    )
