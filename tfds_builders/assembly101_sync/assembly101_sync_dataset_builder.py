"""TFDS builder for Assembly101 exo/ego coarse action segmentation (dataset `assembly101_sync`).

Reads the public per-frame features (LMDB, TSM or DINOv2 release) of one static
(exo) and one head-mounted (ego) view, paired by frame index, and the coarse
segment annotations. Manual download; see README.md for the files and layout.

  builder = Builder(config="tsm_c10119_hmc84358933", data_dir=d,
                    file_format="array_record")
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=m))

Reading, alignment and repairs live in `tfds_builders.common`.
"""

from __future__ import annotations

import dataclasses
import os

import tensorflow_datasets as tfds

from tfds_builders.common.alignment import Loaded, Recording, Stream
from tfds_builders.common.annotations import parse_segments, read_class_table
from tfds_builders.common.annotations import segments_to_labels
from tfds_builders.common.errors import DataError, require
from tfds_builders.common.features import LmdbViews
from tfds_builders.common.splits import hash_partition, read_split_list
from tfds_builders.common.splits import user_splits
from tfds_builders.common.sync_builder import Plan, SyncConfig
from tfds_builders.common.sync_builder import SyncFeatureBuilder

# Where each public feature release lives under the manual dir, and its keys.
FEATURE_TYPES = {
    "tsm": {"feature_dim": 2048, "lmdb_dir": "TSM_features/{view}",
            "key_format": "{recording}/{view}/{view}_{frame:010d}.jpg"},
    "dinov2": {"feature_dim": 1024, "lmdb_dir": "DINOv2_features/{view}",
               "key_format": "{video}_{frame:010d}.jpg"},
}
TASK_PREFIXES = ("assembly_", "disassembly_")
FPS = 30  # annotation and feature frame rate


@dataclasses.dataclass(eq=False)
class Assembly101Config(SyncConfig):
  """One (exo view, ego view, feature release) pair; `make_config` names it.

  Attributes:
    exo_view, ego_view: Assembly101 camera names, e.g. "C10119_rgb",
      "HMC_84358933_mono10bit".
    feature_type: "tsm" or "dinov2"; fills `feature_dim`, `lmdb_dir` and
      `key_format` when they are left empty/0.
    lmdb_dir: LMDB environment of a view, relative to the manual dir.
    key_format: LMDB key of a frame; fields {video} (annotation name, e.g.
      `assembly_nusar-...`), {recording} (without the task prefix), {view},
      {frame} (annotation frame number + `frame_offset`).
    frame_offset: added to annotation frame numbers to get key frame numbers.
    frame_stride: keep every k-th frame (labels likewise); 1 keeps 30 fps.
    sync_fraction: default splits only: share of the public training
      recordings that go to `sync_pairs` (the rest is `train`).
    test_fraction: default splits only: share of the public validation
      recordings that go to `test` (the rest is `validation`).
    background_classes: class names excluded from segments by the metrics
      (the public class table has none).
  """
  exo_view: str = "C10119_rgb"
  ego_view: str = "HMC_84358933_mono10bit"
  feature_type: str = "tsm"
  lmdb_dir: str = ""
  key_format: str = ""
  frame_offset: int = 0
  frame_stride: int = 1
  sync_fraction: float = 0.5
  test_fraction: float = 0.5
  background_classes: tuple[str, ...] = ()

  def __post_init__(self):
    if self.feature_type not in FEATURE_TYPES:
      raise ValueError(f"feature_type must be one of {list(FEATURE_TYPES)}, "
                       f"not {self.feature_type!r}")
    for field, value in FEATURE_TYPES[self.feature_type].items():
      if not getattr(self, field):
        setattr(self, field, value)
    super().__post_init__()
    if self.frame_stride < 1:
      raise ValueError("frame_stride must be >= 1")
    self.background_classes = tuple(self.background_classes)


def _short(view: str) -> str:
  """C10119_rgb -> c10119, HMC_84358933_mono10bit -> hmc84358933."""
  parts = view.lower().split("_")
  return parts[0] + parts[1] if parts[0] == "hmc" and len(parts) > 1 else parts[0]


def make_config(exo_view: str, ego_view: str, feature_type: str = "tsm",
                storage_dtype: str = "float32", name: str | None = None,
                **kwargs) -> Assembly101Config:
  """A config named `<feature_type>_<exo>_<ego>[_fp16]`, e.g. tsm_c10119_hmc84358933."""
  if name is None:
    name = f"{feature_type}_{_short(exo_view)}_{_short(ego_view)}"
    name += "_fp16" if storage_dtype == "float16" else ""
  return Assembly101Config(
      name=name, exo_view=exo_view, ego_view=ego_view, feature_type=feature_type,
      storage_dtype=storage_dtype, description=(
          f"exo {exo_view}, ego {ego_view}, {feature_type} features stored as "
          f"{storage_dtype}."), **kwargs)


class Builder(SyncFeatureBuilder):
  """Assembly101: synchronized static and head-mounted views of toy assembly."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [
      make_config("C10119_rgb", "HMC_84358933_mono10bit", features, dtype)
      for features in FEATURE_TYPES for dtype in ("float32", "float16")]
  DEFAULT_CONFIG_NAME = "tsm_c10119_hmc84358933"
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Put the public Assembly101 files in the manual dir (see
  tfds_builders/assembly101_sync/README.md):
    coarse-annotations/actions.csv
    coarse-annotations/coarse_labels/{assembly,disassembly}_<recording>.txt
    coarse-annotations/coarse_splits/{train,val}_coarse_{assembly,disassembly}.txt
    TSM_features/<view>/data.mdb        (TSM configs: one LMDB per view)
    DINOv2_features/<view>/data.mdb     (DINOv2 configs: one LMDB per view)
  Optional: splits/{train,sync_pairs,validation,test}.txt (your split lists),
  ego_coarse_labels/<video>.txt (an ego-view annotation).
  """

  def _plan(self, manual_dir: str) -> Plan:
    config = self.builder_config
    annotations = os.path.join(manual_dir, "coarse-annotations")
    table = require(os.path.join(annotations, "actions.csv"), "class table",
                    "Download coarse-annotations/actions.csv from the Assembly101 "
                    "annotations (github.com/assembly-101/assembly101-annotations).")
    class_names = read_class_table(table)
    classes = {n: i for i, n in enumerate(class_names)}
    missing = [b for b in config.background_classes if b not in classes]
    if missing:
      raise DataError(f"background_classes {missing} are not in {table}")
    for view in (config.exo_view, config.ego_view):
      path = os.path.join(manual_dir, config.lmdb_dir.format(view=view))
      require(os.path.join(path, "data.mdb"), f"{config.feature_type} features of "
              f"view {view}", "Put the view's LMDB environment there (see README).")
    split_ids, split_source = self._split_ids(manual_dir, annotations)
    lmdb = LmdbViews()
    splits = {split: [self._recording(manual_dir, annotations, video, classes, table,
                                      lmdb) for video in ids]
              for split, ids in split_ids.items()}
    return Plan(class_names, list(config.background_classes), splits, {
        "fps": FPS / config.frame_stride,
        "exo_view": config.exo_view, "ego_view": config.ego_view,
        "feature_type": config.feature_type, "split_source": split_source})

  def _split_ids(self, manual_dir: str, annotations: str
                 ) -> tuple[dict[str, list[str]], str]:
    """User split lists, else the public train/val lists partitioned by hash."""
    config = self.builder_config
    lists = user_splits(os.path.join(manual_dir, "splits"))
    source = "splits/<split>.txt"
    if lists is None:
      source = "coarse_splits, partitioned by hash"
      public = {}
      for part in ("train", "val"):
        public[part] = []
        for task in ("assembly", "disassembly"):
          path = require(
              os.path.join(annotations, "coarse_splits", f"{part}_coarse_{task}.txt"),
              "public split list", "Download coarse-annotations/coarse_splits, or give "
              "your own splits/{train,sync_pairs,validation,test}.txt.")
          public[part] += read_split_list(path)
      recording = lambda video: video.split("_", 1)[-1]
      sync, train = hash_partition(public["train"], config.sync_fraction, recording)
      test, validation = hash_partition(public["val"], config.test_fraction,
                                        recording)
      lists = {"train": train, "sync_pairs": sync, "validation": validation,
               "test": test}
    for split, ids in lists.items():
      bad = [v for v in ids if not v.startswith(TASK_PREFIXES)]
      if bad:
        raise DataError(f"split `{split}`: video ids must be annotation names "
                        f"`assembly_<recording>` or `disassembly_<recording>`, got "
                        f"{bad[:3]}")
    return lists, source

  def _recording(self, manual_dir, annotations, video, classes, table, lmdb):
    config = self.builder_config
    recording = video.split("_", 1)[1]
    label_path = _label_file(os.path.join(annotations, "coarse_labels"), video)
    ego_path = _label_file(os.path.join(manual_dir, "ego_coarse_labels"), video,
                           required=False)

    def load() -> Loaded:
      labels = segments_to_labels(
          parse_segments(label_path), classes, source=label_path,
          class_table=table, policy=self.policy)
      origin, step = labels.start, config.frame_stride
      streams = {"labels": labels.subsample(origin, step)}
      if ego_path:
        streams["ego_labels"] = segments_to_labels(
            parse_segments(ego_path), classes, source=ego_path,
            class_table=table, policy=self.policy).subsample(origin, step)
      frames = range(origin, labels.start + len(labels.values), step)
      for name, view in (("exo", config.exo_view), ("ego", config.ego_view)):
        path = os.path.join(manual_dir, config.lmdb_dir.format(view=view))
        keys = [config.key_format.format(video=video, recording=recording, view=view,
                                         frame=f + config.frame_offset) for f in frames]
        values, present = lmdb.read(path, keys, config.feature_dim)
        streams[name] = Stream(values, f"{path} keys {keys[0]!r}...", 0, present)
      return Loaded(streams, origin, step)

    return Recording(video, recording, config.exo_view, config.ego_view, load)


def _label_file(folder: str, video: str, required: bool = True) -> str | None:
  """`<folder>/<video>.txt`; some releases spell disassembly files `disassebly_`."""
  candidates = [os.path.join(folder, f"{video}.txt")]
  if video.startswith("disassembly_"):
    candidates.append(os.path.join(folder, "disassebly_" + video[len("disassembly_"):]
                                   + ".txt"))
  for path in candidates:
    if os.path.exists(path):
      return path
  if required:
    raise DataError(f"{video}: no annotation file {candidates[0]}; download "
                    "coarse-annotations/coarse_labels or drop the video from "
                    "the split lists")
  return None
