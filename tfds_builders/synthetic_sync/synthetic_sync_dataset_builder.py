"""TFDS builder for the synthetic synchronized exo/ego benchmark (dataset `synthetic_sync`).

Needs no download and no TensorFlow when prepared with `file_format="array_record"`:

  builder = Builder(config="tiny", data_dir=d, file_format="array_record")
  builder.download_and_prepare()
  sources = tfds.data_source("synthetic_sync/tiny", data_dir=d)

The generator lives in `exo2ego_jax.data.synthetic`; this file only maps it onto TFDS.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from exo2ego_jax.data import synthetic
from tfds_builders.common.build_hooks import (
  BuildMessages,
  KeepPreviousBuild,
  NotOnBucket,
)
from tfds_builders.common.build_hooks import deterministic_serialization


@dataclasses.dataclass(eq=False)
class SyntheticSyncConfig(tfds.core.BuilderConfig):
  """A named set of generation parameters.

  For other parameters (e.g. synchronization jitter) pass a new config, e.g.
  `SyntheticSyncConfig(name="jitter5", params=dataclasses.replace(synthetic.DEFAULT,
  jitter_mode="fixed", jitter_frames=5))`.
  """

  params: synthetic.SyntheticConfig = synthetic.DEFAULT


class Builder(
  NotOnBucket, KeepPreviousBuild, BuildMessages, tfds.core.GeneratorBasedBuilder
):
  """Procedural multi-step activities rendered by an exo and an ego camera.

  A failed forced rebuild keeps the previous build (KeepPreviousBuild)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [
    SyntheticSyncConfig(
      name="default",
      params=synthetic.DEFAULT,
      description="Main benchmark: D=64, 1000-2000 frames per video (~125 MB).",
    ),
    SyntheticSyncConfig(
      name="tiny",
      params=synthetic.TINY,
      description="For tests: D=16, 150-350 frames per video (~1 MB).",
    ),
    # The clock sweep of the self-synchronization study: the default world
    # (train, validation and test as in "default", plus `ego_time`), its
    # sync_pairs recorded by rigs whose clocks disagree.
    SyntheticSyncConfig(
      name="clock_offset",
      params=synthetic.CLOCK_OFFSET,
      description="default, sync_pairs ego clocks offset by up to 300 "
      "frames (10 s at 30 fps).",
    ),
    SyntheticSyncConfig(
      name="clock_rate",
      params=synthetic.CLOCK_RATE,
      description="clock_offset plus a rate error of up to 0.3%.",
    ),
    SyntheticSyncConfig(
      name="clock_drops",
      params=synthetic.CLOCK_DROPS,
      description="clock_rate plus 3 runs of up to 8 dropped ego frames.",
    ),
    # The multi-view study (docs/multiview.md): the default world seen by
    # three more exo cameras, each absent during stretches of its own.
    SyntheticSyncConfig(
      name="multiview",
      params=synthetic.MULTIVIEW,
      description="default plus exo views 1-3 (`exo_views`, K=4) and their "
      "absences (`exo_present`); view 0 is default's exo.",
      version="1.1.0",
      release_notes={
        "1.1.0": "Exo view 0 is the default world's exo view byte for "
        "byte (never absent), so the single-view rows are the main study's.",
        "1.0.0": "Initial release (view 0 absent at times like views 1-3).",
      },
    ),
    SyntheticSyncConfig(
      name="tiny_multiview",
      params=synthetic.TINY_MULTIVIEW,
      description="tiny with four exo views, for tests.",
    ),
  ]
  DEFAULT_CONFIG_NAME = "default"

  def _info(self) -> tfds.core.DatasetInfo:
    params = self.builder_config.params
    d = params.feature_dim
    clock = {}
    if params.jitter_mode == "clock":  # the true map of each ego frame
      clock["ego_time"] = tfds.features.Tensor(shape=(None,), dtype=np.float32)
    views = {}
    if params.exo_views > 1 or params.exo_occlusions:  # (K, T, D), (K, T)
      k = params.exo_views
      views["exo_views"] = tfds.features.Tensor(
        shape=(k, None, d), dtype=np.float32
      )
      views["exo_present"] = tfds.features.Tensor(
        shape=(k, None), dtype=np.int32
      )
    return self.dataset_info_from_configs(
      features=tfds.features.FeaturesDict(
        {
          **clock,
          **views,
          "exo": tfds.features.Tensor(shape=(None, d), dtype=np.float32),
          "ego": tfds.features.Tensor(shape=(None, d), dtype=np.float32),
          "labels": tfds.features.Tensor(shape=(None,), dtype=np.int32),
          "ego_labels": tfds.features.Tensor(shape=(None,), dtype=np.int32),
          "video_id": tfds.features.Text(),
          "task_id": tfds.features.Scalar(dtype=np.int32),
          "jitter": tfds.features.Scalar(dtype=np.int32),
        }
      ),
      supervised_keys=None,
      metadata=tfds.core.MetadataDict(synthetic.metadata(params)),
    )

  def _download_and_prepare(self, dl_manager, download_config=None):
    with deterministic_serialization():
      super()._download_and_prepare(dl_manager, download_config)

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # Nothing to download.
    return {split: self._generate_examples(split) for split in synthetic.SPLITS}

  def _generate_examples(self, split: str):
    yield from synthetic.generate_split(self.builder_config.params, split)
