"""Shared pieces of the teacher pseudo-label baselines: an ego model
(initialised from the exo teacher) trained with the supervised loss on the
labels the teacher gives the ego frames. How a recording's steps get their
label is the method's `step_labels` (sync_pseudo_label, align_pseudo_label).

The labels are computed once per run, before training, on the chunked
timeline (`config.data.chunk_size`, whole recordings in consecutive windows,
as evaluation predicts), repeated back to frames and saved in
`<workdir>/pseudo_labels.npz` (one int32 array per video id). The training
pipeline reads them as the `pseudo_labels` field (`PseudoLabeledSource`) and
chunks them by majority like real labels. No label of the recordings is read.
"""

from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from exo2ego_jax.data import input_pipeline
from exo2ego_jax.evaluation import evaluator
from exo2ego_jax.methods import distillation
from exo2ego_jax.methods import dtw
from exo2ego_jax.methods import supervised
from exo2ego_jax.models import c2f_tcn

FILENAME = "pseudo_labels.npz"
PSEUDO_LABEL_KEY = "pseudo_labels"  # the field PseudoLabeledSource adds


class PseudoLabeledSource:
  """A data source whose examples also carry `pseudo_labels` (T,) int32."""

  def __init__(self, source, labels: dict[str, np.ndarray]):
    self.source = source
    self.labels = labels

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, index: int) -> dict:
    example = dict(self.source[index])
    example[PSEUDO_LABEL_KEY] = self.labels[
      evaluator.decode_id(example["video_id"])
    ]
    return example


def outputs_predictor(mode, variables: dict, adapt=None):
  """(windows, masks) -> the ensemble probabilities and decoder features,
  concatenated (B, T, C + F), of the C2F-TCN `variables` (fed
  `adapt(windows, masks)` when given). Compiled for this process's default
  device: every process computes the same outputs."""

  @jax.jit
  def predict(windows, masks):
    x = windows if adapt is None else adapt(windows, masks)
    outputs = mode.model.apply(variables, x, masks, train=False)
    probs = c2f_tcn.ensemble_probs(outputs, mode.ensemble_weights)
    return jnp.concatenate([probs, outputs["features"]], axis=-1)

  return predict


def teacher_predictor(mode, teacher: dict):
  """The teacher's outputs (`outputs_predictor`)."""
  return outputs_predictor(mode, teacher)


def teacher_outputs(
  predict,
  num_classes: int,
  features,
  *,
  chunk_size: int,
  max_frames: int,
  batch_size: int,
) -> list[tuple[np.ndarray, np.ndarray]]:
  """The teacher's ensemble probabilities (S, C) and decoder features (S, F)
  of each recording's S = ceil(T / chunk_size) chunked steps."""
  frames = evaluator.predict_recordings(
    predict, features, (chunk_size,), max_frames, batch_size
  )
  steps = [f[::chunk_size] for f in frames]  # frames repeat their step
  return [(s[:, :num_classes], s[:, num_classes:]) for s in steps]


def transfer_along_path(
  path: np.ndarray, exo_probs: np.ndarray, ego_length: int
) -> np.ndarray:
  """Ego labels (ego_length,): for each ego index j, the argmax of the mean
  of `exo_probs` over the exo indices i that the path pairs with j."""
  totals = np.zeros((ego_length, exo_probs.shape[-1]), np.float64)
  np.add.at(totals, path[:, 1], exo_probs[path[:, 0]])
  return totals.argmax(axis=-1).astype(np.int32)


def aligned_labels(
  exo_features: np.ndarray,
  ego_features: np.ndarray,
  exo_probs: np.ndarray,
  *,
  metric: str,
  band_fraction: float | None,
) -> np.ndarray:
  """Teacher exo predictions moved onto the ego steps along a DTW path."""
  radius = (
    None
    if band_fraction is None
    else math.ceil(band_fraction * max(len(exo_features), len(ego_features)))
  )
  _, path = dtw.dtw(exo_features, ego_features, radius=radius, metric=metric)
  return transfer_along_path(path, exo_probs, len(ego_features))


def compute(
  mode: "PseudoLabel",
  teacher: dict,
  source,
  config: ml_collections.ConfigDict,
  recordings_per_group: int = 16,
) -> dict[str, np.ndarray]:
  """Frame-level pseudo-labels {video_id: (T,) int32} of every recording."""
  chunk = config.data.chunk_size
  predict = teacher_predictor(mode, teacher)
  kwargs = dict(
    chunk_size=chunk,
    max_frames=config.data.max_frames,
    batch_size=config.data.eval_batch_size,
  )
  labels = {}
  for start in range(0, len(source), recordings_per_group):
    examples = [
      source[i]
      for i in range(start, min(start + recordings_per_group, len(source)))
    ]
    exo = teacher_outputs(
      predict,
      mode.model.num_classes,
      [np.asarray(e["exo"], np.float32) for e in examples],
      **kwargs,
    )
    ego = [None] * len(examples)
    if mode.reads_ego_outputs:
      ego = teacher_outputs(
        predict,
        mode.model.num_classes,
        [np.asarray(e["ego"], np.float32) for e in examples],
        **kwargs,
      )
    for k, example in enumerate(examples):
      steps = mode.step_labels(exo[k], ego[k], config)
      length = len(example["ego"])
      labels[evaluator.decode_id(example["video_id"])] = (
        input_pipeline.steps_to_frames(steps, chunk, length)
      )
  return labels


def pseudo_labeled_source(
  mode: "PseudoLabel",
  teacher: dict,
  source,
  config: ml_collections.ConfigDict,
  workdir: str,
  compute_fn=None,
) -> PseudoLabeledSource:
  """`source` with the run's pseudo-labels, computed once and kept in the
  workdir (a resumed run reads them back: the same labels, batch for batch).
  `compute_fn`: another way to compute them (default `compute`)."""
  path = os.path.join(workdir, FILENAME)
  if os.path.exists(path):
    with np.load(path) as saved:
      labels = {name: saved[name] for name in saved.files}
  else:
    labels = (compute_fn or compute)(mode, teacher, source, config)
    if jax.process_index() == 0:
      partial = path + ".partial.npz"
      np.savez(partial, **labels)
      os.replace(partial, path)  # never a half-written file under `path`
  return PseudoLabeledSource(source, labels)


class PseudoLabel(supervised.Supervised):
  """The supervised loss on teacher labels of the ego frames; the student
  starts from the teacher. Label-blind: only the teacher's labels are read
  (config.data.label_key must be PSEUDO_LABEL_KEY)."""

  is_teacher = False
  loads_teacher = True
  reads_labels = False  # the teacher's labels, not the dataset's
  # Whether step_labels needs the teacher's outputs on the ego view too.
  reads_ego_outputs = False

  @classmethod
  def check_config(cls, config: ml_collections.ConfigDict, info) -> None:
    super().check_config(config, info)
    if config.data.label_key != PSEUDO_LABEL_KEY:
      raise ValueError(
        f"mode {cls.name} trains on teacher pseudo-labels: "
        f"set config.data.label_key={PSEUDO_LABEL_KEY!r}"
      )

  def init_params(
    self, rng, frozen: dict, feature_dim: int
  ) -> tuple[dict, dict]:
    del rng, feature_dim
    return distillation.start_from_teacher(frozen)

  def train_source(
    self, frozen: dict, source, config: ml_collections.ConfigDict, workdir: str
  ):
    return pseudo_labeled_source(
      self, frozen["teacher"], source, config, workdir
    )

  def step_labels(
    self,
    exo: tuple[np.ndarray, np.ndarray],
    ego: tuple[np.ndarray, np.ndarray] | None,
    config: ml_collections.ConfigDict,
  ) -> np.ndarray:
    """Labels (S,) of a recording's ego steps from the teacher's (probs,
    features) of its exo steps (and of its ego steps, if read)."""
    raise NotImplementedError(self.name)
