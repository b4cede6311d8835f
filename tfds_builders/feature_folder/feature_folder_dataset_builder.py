"""TFDS builder for your own synchronized exo/ego features in plain files (`feature_folder`).

  <manual_dir>/features/<exo_view>/<video>.npy    (T, D) per frame, exo camera
  <manual_dir>/features/<ego_view>/<video>.npy    (T, D) per frame, ego camera, same clock
  <manual_dir>/labels/<video>.txt                 segments `start end label` or one label a line
  <manual_dir>/splits/{train,sync_pairs,validation,test}.txt
  <manual_dir>/classes.txt

Exo and ego are paired by frame index. See README.md; reading, alignment and
repairs live in `tfds_builders.common`.
"""

from __future__ import annotations

import dataclasses
import glob
import os

import numpy as np
import tensorflow_datasets as tfds

from exo2ego_jax.data.constants import IGNORE_LABEL, SPLITS
from tfds_builders.common.alignment import Loaded, Recording, Stream
from tfds_builders.common.annotations import Labels, frame_labels
from tfds_builders.common.annotations import looks_like_segments, parse_segments
from tfds_builders.common.annotations import read_class_table
from tfds_builders.common.annotations import segments_to_labels
from tfds_builders.common.errors import DataError, MissingData, require
from tfds_builders.common.features import load_feature_file
from tfds_builders.common.splits import user_splits
from tfds_builders.common.sync_builder import Plan, SyncConfig
from tfds_builders.common.sync_builder import SyncFeatureBuilder

LABEL_FORMATS = ("auto", "segments", "frames")
DIMS = (
  64,
  256,
  512,
  768,
  1024,
  1536,
  2048,
)  # one ready-made config per common size


@dataclasses.dataclass(eq=False)
class FeatureFolderConfig(SyncConfig):
  """Your folder's view names, label format and background classes.

  Attributes:
    exo_view, ego_view: folder names under features/ (and ego labels go in
      `<ego_view>_labels/` when the ego view has its own annotation).
    label_format: "segments" (`start end label` lines, frames, end exclusive),
      "frames" (one label name per line), or "auto" (segments if every line
      is `<int> <int> <label>`).
    background_classes: those of these names that classes.txt has are the
      background; frames no segment covers get the first of them (or -100,
      unscored, if there is none).
  """

  exo_view: str = "exo"
  ego_view: str = "ego"
  label_format: str = "auto"
  background_classes: tuple[str, ...] = ("background",)

  def __post_init__(self):
    super().__post_init__()
    if self.label_format not in LABEL_FORMATS:
      raise ValueError(f"label_format must be one of {LABEL_FORMATS}")
    self.background_classes = tuple(self.background_classes)


def config_for(
  manual_dir: str, name: str = "custom", **kwargs
) -> FeatureFolderConfig:
  """A config whose feature_dim is read from the folder's first exo feature file."""
  exo_view = kwargs.get("exo_view", "exo")
  files = sorted(
    glob.glob(
      os.path.join(
        glob.escape(manual_dir), "features", glob.escape(exo_view), "*.npy"
      )
    )
  )
  if not files:
    raise DataError(f"no features/{exo_view}/*.npy in {manual_dir}")
  dim = int(load_feature_file(files[0]).shape[1])
  return FeatureFolderConfig(name=name, feature_dim=dim, **kwargs)


class Builder(SyncFeatureBuilder):
  """Synchronized exo/ego features and labels of your own recordings."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [
    FeatureFolderConfig(
      name=f"d{dim}{suffix}",
      feature_dim=dim,
      storage_dtype=dtype,
      description=f"{dim}-D features stored as {dtype}.",
    )
    for dim in DIMS
    for suffix, dtype in (("", "float32"), ("_fp16", "float16"))
  ]
  DEFAULT_CONFIG_NAME = "d1024"
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Lay out your data in the manual dir (see tfds_builders/feature_folder/README.md):
    features/exo/<video>.npy, features/ego/<video>.npy   (T, D) float arrays
    labels/<video>.txt          `start end label` segments, or one label per line
    splits/{train,sync_pairs,validation,test}.txt        one video per line
    classes.txt                 class names (`<id> <name>` or one per line)
  Pick the config whose feature_dim matches D (d768, d1024, ...), or build with
  feature_folder.config_for(manual_dir).
  """

  def _plan(self, manual_dir: str) -> Plan:
    config = self.builder_config
    table = require(
      os.path.join(manual_dir, "classes.txt"),
      "class table",
      "List the class names, one per line (id = line number) or `<id> <name>`.",
    )
    class_names = read_class_table(table)
    classes = {n: i for i, n in enumerate(class_names)}
    background = [b for b in config.background_classes if b in classes]
    gap_label = classes[background[0]] if background else IGNORE_LABEL
    lists = user_splits(os.path.join(manual_dir, "splits"))
    if lists is None:
      raise DataError(
        f"no split lists: write {os.path.join(manual_dir, 'splits')}"
        f"/<split>.txt for the splits {list(SPLITS)}, one video "
        "per line"
      )
    splits = {
      split: [
        self._recording(manual_dir, split, video, classes, table, gap_label)
        for video in ids
      ]
      for split, ids in lists.items()
    }
    return Plan(
      class_names,
      background,
      splits,
      {"exo_view": config.exo_view, "ego_view": config.ego_view},
    )

  def _recording(self, manual_dir, split, video, classes, table, gap_label):
    config = self.builder_config
    features = {
      name: os.path.join(manual_dir, "features", view, f"{video}.npy")
      for name, view in (("exo", config.exo_view), ("ego", config.ego_view))
    }
    label_files = {
      "labels": os.path.join(manual_dir, "labels", f"{video}.txt"),
      "ego_labels": os.path.join(
        manual_dir, f"{config.ego_view}_labels", f"{video}.txt"
      ),
    }
    if split != "sync_pairs" and not os.path.exists(label_files["labels"]):
      raise DataError(
        f"{video}: no label file {label_files['labels']}; only "
        "sync_pairs videos may be unlabeled"
      )

    def load() -> Loaded:
      streams = {}
      for name, path in features.items():
        if not os.path.exists(path):
          raise MissingData(
            "missing_view", f"{video}: no {name} features {path}"
          )
        streams[name] = Stream(load_feature_file(path), path)
      for name, path in label_files.items():
        if os.path.exists(path):
          streams[name] = self._labels(path, classes, table, gap_label)
      return Loaded(streams)

    return Recording(video, video, config.exo_view, config.ego_view, load)

  def _labels(self, path, classes, table, gap_label) -> Labels:
    config = self.builder_config
    fmt = config.label_format
    if fmt == "auto":
      fmt = "segments" if looks_like_segments(path) else "frames"
    if fmt == "frames":
      return frame_labels(path, classes, class_table=table, policy=self.policy)
    segments = parse_segments(path)
    if not segments:
      return Labels(np.zeros(0, np.int32), 0, path)
    return segments_to_labels(
      segments,
      classes,
      source=path,
      class_table=table,
      policy=self.policy,
      start=0,
      gap_label=gap_label,
    )
