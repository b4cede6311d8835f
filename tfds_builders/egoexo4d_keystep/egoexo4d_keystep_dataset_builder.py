"""TFDS builder for Ego-Exo4D keystep segmentation with synchronized views (`egoexo4d_keystep`).

Reads the released per-take, per-camera features (Omnivore video features by
default: `features/omnivore_video/<take_uid>_<cam_id>_<stream_id>.pt`, or .npy)
of one exo (GoPro) camera, or of every exo camera as separate examples, or of
every exo camera of a take as the views of one example (`omnivore_multi_exo`:
`exo_views`, `exo_present`), and of the ego (Aria) camera, and labels each
feature step with the keystep segment annotations
(`annotations/keystep_{train,val}.json`). Manual download; see README.md for
the files and layout.

Reading, alignment and repairs live in `tfds_builders.common`.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import math
import os

import numpy as np
import tensorflow_datasets as tfds

from tfds_builders.common.alignment import Loaded, Recording, Stream
from tfds_builders.common.annotations import Labels, Segment, read_lines
from tfds_builders.common.annotations import segments_to_labels
from tfds_builders.common.errors import DataError, MissingData, require
from tfds_builders.common.features import load_feature_file
from tfds_builders.common.splits import hash_partition, user_splits
from tfds_builders.common.sync_builder import Plan, SyncConfig
from tfds_builders.common.sync_builder import SyncFeatureBuilder

ANNOTATION_FILES = {
  "train": "annotations/keystep_train.json",
  "val": "annotations/keystep_val.json",
}
BACKGROUND = "background"


@dataclasses.dataclass(eq=False)
class EgoExo4DConfig(SyncConfig):
  """Which cameras and features to read, and how feature steps map to time.

  Attributes:
    feature_dir: folder of `<take_uid>_<cam_id>_<stream_id>.{npy,pt}` files,
      relative to the manual dir.
    exo_camera: "best_exo" (the take's `best_exo` in takes.json), a camera id
      such as "cam01", or "all" (one example per exo camera of a take).
    ego_camera: prefix of the ego camera id ("aria" matches aria01, aria02...).
    feature_fps: feature steps per second (Omnivore: a 32-frame window every
      16 frames of 30 fps video, so 30 / 16).
    feature_time_offset: time in seconds that step 0 describes (the middle of
      the first window: 16 / 30); step i describes offset + i / feature_fps.
    scenarios: keep only takes of these scenarios (empty: all).
    sync_fraction: default splits only: share of keystep_train takes that go
      to `sync_pairs` (the rest is `train`).
    test_fraction: default splits only: share of keystep_val takes that go to
      `test` (the rest is `validation`).
  """

  feature_dir: str = "features/omnivore_video"
  exo_camera: str = "best_exo"
  ego_camera: str = "aria"
  feature_fps: float = 30 / 16
  feature_time_offset: float = 16 / 30
  scenarios: tuple[str, ...] = ()
  sync_fraction: float = 0.5
  test_fraction: float = 0.5

  def __post_init__(self):
    super().__post_init__()
    if self.feature_fps <= 0:
      raise ValueError("feature_fps must be > 0")
    self.scenarios = tuple(self.scenarios)


@dataclasses.dataclass(eq=False)
class EgoExo4DMultiviewConfig(EgoExo4DConfig):
  """Every exo camera of a take as a view of one example.

  Attributes:
    exo_slots: K, the number of exo views (Ego-Exo4D takes have 4-5 GoPros).
      View 0 is `exo_camera`'s camera (the take's best_exo, or a camera id);
      views 1..K-1 are the take's other exo cameras (feature files whose
      camera id does not start with `ego_camera`) in the order of their ids;
      the views a take has no camera for are absent (`exo_present` 0,
      features 0), as are the steps a camera's file lacks. A take needs its
      Aria features and at least one exo camera's; a take with more than K
      exo cameras is an error naming it.

  Metadata `exo_view_names`: `exo_camera`, then `other1`..`other<K-1>`; each
  example's `exo_view_ids` gives the camera of each view of its take.
  """

  exo_slots: int = 5

  def __post_init__(self):
    super().__post_init__()
    if self.exo_camera == "all":
      raise ValueError(
        f"config {self.name!r}: exo_camera='all' makes one example per "
        "camera; view 0 of a multi-view config is 'best_exo' or a camera id"
      )
    if self.exo_slots < 2:
      raise ValueError(
        f"config {self.name!r}: exo_slots must be >= 2 (one view: "
        "EgoExo4DConfig)"
      )


class Builder(SyncFeatureBuilder):
  """Ego-Exo4D procedural takes: exo GoPro and ego Aria features, keystep labels."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [
    EgoExo4DConfig(
      name="omnivore_best_exo",
      feature_dim=1536,
      description="Omnivore video features (1536-D, 1.875 steps/s); "
      "exo = each take's best_exo camera.",
    ),
    EgoExo4DConfig(
      name="omnivore_best_exo_fp16",
      feature_dim=1536,
      storage_dtype="float16",
      description="As omnivore_best_exo, stored as float16.",
    ),
    EgoExo4DConfig(
      name="omnivore_all_exo",
      feature_dim=1536,
      exo_camera="all",
      description="Omnivore video features; one example per exo "
      "camera of each take.",
    ),
    # The release's MAWS CLIP 2B image features: one per frame (a 1-frame
    # window, stride 1, at 30 fps), 2048-D, computed in float16, so float16
    # storage keeps them exactly (README.md gives the sources).
    EgoExo4DConfig(
      name="maws_clip_2b_best_exo_fp16",
      feature_dir="features/maws_clip_2b",
      feature_dim=2048,
      feature_fps=30.0,
      feature_time_offset=0.0,
      storage_dtype="float16",
      description="MAWS CLIP 2B image features (2048-D, 30 steps/s, "
      "float16); exo = each take's best_exo camera.",
    ),
    # Every exo camera of a take in one example (issue #20).
    EgoExo4DMultiviewConfig(
      name="omnivore_multi_exo",
      feature_dim=1536,
      exo_slots=5,
      description="Omnivore video features; every exo camera of a take "
      "as the views of one example (exo_views, K=5): view 0 = best_exo "
      "(`exo`), views 1-4 = the take's other exo cameras by id, absent "
      "where the take has fewer.",
    ),
  ]
  DEFAULT_CONFIG_NAME = "omnivore_best_exo"
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Use the Ego-Exo4D download dir as the manual dir (see
  tfds_builders/egoexo4d_keystep/README.md):
    egoexo -o <manual_dir> --parts annotations metadata features/omnivore_video
  (or features/maws_clip_2b for the maws_clip_2b configs) so that it holds:
    annotations/keystep_train.json, annotations/keystep_val.json
    takes.json                                  (for exo_camera="best_exo")
    features/omnivore_video/<take_uid>_<cam_id>_<stream_id>.pt (or .npy)
  Optional: splits/{train,sync_pairs,validation,test}.txt (take uids or names),
  step_ids.txt (the class table: one step_unique_id per line).
  """

  def _exo_view_names(self) -> list[str] | None:
    config = self.builder_config
    if isinstance(config, EgoExo4DMultiviewConfig):
      return [config.exo_camera] + [
        f"other{k}" for k in range(1, config.exo_slots)
      ]
    return None

  def _plan(self, manual_dir: str) -> Plan:
    config = self.builder_config
    takes = {}  # take_uid -> (annotation entry, public split, file)
    for part, relative in ANNOTATION_FILES.items():
      path = require(
        os.path.join(manual_dir, relative),
        "keystep annotations",
        "Download them with `egoexo --parts annotations`.",
      )
      with open(path, encoding="utf-8") as f:
        annotations = json.load(f).get("annotations")
      if not isinstance(annotations, dict):
        raise DataError(
          f"{path}: expected {{'annotations': {{take_uid: {{...}}}}}}"
        )
      for uid, take in sorted(annotations.items()):
        if config.scenarios and take.get("scenario") not in config.scenarios:
          continue
        takes[uid] = (take, part, path)
    class_names, step_classes, table = self._classes(manual_dir, takes)
    feature_dir = require(
      os.path.join(manual_dir, config.feature_dir),
      "feature folder",
      "Download features with `egoexo "
      "--parts features/omnivore_video` or set feature_dir.",
    )
    best_exo = (
      self._best_exo(manual_dir) if config.exo_camera == "best_exo" else {}
    )

    names = {
      take.get("take_name", uid): uid for uid, (take, _, _) in takes.items()
    }
    lists = user_splits(os.path.join(manual_dir, "splits"))
    if lists is None:
      sync, train = hash_partition(
        [u for u, t in takes.items() if t[1] == "train"], config.sync_fraction
      )
      test, validation = hash_partition(
        [u for u, t in takes.items() if t[1] == "val"], config.test_fraction
      )
      lists = {
        "train": train,
        "sync_pairs": sync,
        "validation": validation,
        "test": test,
      }
    splits = {}
    for split, ids in lists.items():
      recordings = []
      for item in ids:
        uid = item if item in takes else names.get(item)
        if uid is None:
          raise DataError(
            f"split `{split}`: take {item!r} has no keystep "
            f"annotation in {list(ANNOTATION_FILES.values())}"
            + (
              f" for scenarios {list(config.scenarios)}"
              if config.scenarios
              else ""
            )
          )
        recordings += self._recordings(
          uid, takes[uid], feature_dir, best_exo, step_classes, table
        )
      splits[split] = recordings
    return Plan(
      class_names,
      [BACKGROUND],
      splits,
      {
        "fps": config.feature_fps,
        "feature_time_offset": config.feature_time_offset,
        "exo_camera": config.exo_camera,
        "step_unique_ids": [None] + sorted(step_classes, key=step_classes.get),
      },
    )

  def _classes(self, manual_dir: str, takes: dict):
    """Class 0 is background; then steps by step_unique_id (or step_ids.txt order)."""
    steps = {}
    for take, _, _ in takes.values():
      for segment in take.get("segments", []):
        key = str(segment.get("step_unique_id"))
        steps.setdefault(key, str(segment.get("step_name", key)).strip())
    table = os.path.join(manual_dir, "step_ids.txt")
    if os.path.exists(table):
      ids = [l.split()[0] for l in read_lines(table)]
      if len(set(ids)) != len(ids):
        raise DataError(f"{table}: a step_unique_id appears twice")
    else:
      table = "the step ids of the annotations"
      ids = sorted(
        steps, key=lambda s: (len(s), s)
      )  # numeric order for numeric ids
    names = [steps.get(i, i) for i in ids]
    repeated = {n for n in names if names.count(n) > 1}
    names = [f"{n} [{i}]" if n in repeated else n for n, i in zip(names, ids)]
    return [BACKGROUND] + names, {i: k + 1 for k, i in enumerate(ids)}, table

  def _best_exo(self, manual_dir: str) -> dict[str, str]:
    path = require(
      os.path.join(manual_dir, "takes.json"),
      "take metadata",
      "exo_camera='best_exo' reads each take's best_exo from it: "
      "download it with `egoexo --parts metadata`, or pick a camera.",
    )
    with open(path, encoding="utf-8") as f:
      return {t["take_uid"]: t.get("best_exo") for t in json.load(f)}

  def _recordings(self, uid, entry, feature_dir, best_exo, step_classes, table):
    config = self.builder_config
    take, _, annotation_path = entry
    name = take.get("take_name", uid)
    ego = _camera_files(feature_dir, uid, config.ego_camera + "*")

    def source(video_id: str) -> _TakeFiles:
      return _TakeFiles(
        config,
        uid,
        video_id,
        feature_dir,
        ego,
        take,
        annotation_path,
        step_classes,
        table,
        self.policy,
      )

    if isinstance(config, EgoExo4DMultiviewConfig):
      main = (
        best_exo.get(uid)
        if config.exo_camera == "best_exo"
        else config.exo_camera
      )
      others = sorted(
        {
          c
          for c in _cameras(feature_dir, uid)
          if not c.startswith(config.ego_camera) and c != main
        }
      )
      if len(others) > config.exo_slots - 1:
        cameras = sorted(set(others) | ({main} if main else set()))
        raise DataError(
          f"take {name} ({uid}) has {len(cameras)} exo cameras in "
          f"{feature_dir} ({', '.join(cameras)}), more than the "
          f"{config.exo_slots} views of config {config.name!r}: build a "
          f"config with exo_slots={len(others) + 1} "
          "(EgoExo4DMultiviewConfig), or drop the take from the split lists"
        )
      slots = [main] + others + [None] * (config.exo_slots - 1 - len(others))
      return [
        Recording(
          name,
          uid,
          str(main or ""),
          config.ego_camera,
          _views_loader(source(name), slots),
        )
      ]
    if config.exo_camera == "all":
      cameras = sorted(
        {
          c
          for c in _cameras(feature_dir, uid)
          if not c.startswith(config.ego_camera)
        }
      )
    elif config.exo_camera == "best_exo":
      cameras = [best_exo.get(uid)]
    else:
      cameras = [config.exo_camera]
    out = []
    for camera in cameras:
      video_id = f"{name}/{camera}" if config.exo_camera == "all" else name
      out.append(
        Recording(
          video_id,
          uid,
          str(camera),
          config.ego_camera,
          _loader(source(video_id), camera),
        )
      )
    return out


def _cameras(feature_dir: str, uid: str) -> list[str]:
  """Camera ids with a feature file of the take."""
  files = glob.glob(
    os.path.join(glob.escape(feature_dir), f"{glob.escape(uid)}_*.*")
  )
  return [os.path.basename(f)[len(uid) + 1 :].rsplit("_", 1)[0] for f in files]


def _camera_files(feature_dir: str, uid: str, camera: str) -> list[str]:
  """Feature files of one camera of a take (.npy before .pt)."""
  stem = os.path.join(
    glob.escape(feature_dir), f"{glob.escape(uid)}_{camera}_*"
  )
  return sorted(glob.glob(stem + ".npy")) + sorted(glob.glob(stem + ".pt"))


def _one_file(
  files: list[str], what: str, video_id: str, feature_dir: str
) -> str:
  stems = sorted({os.path.splitext(f)[0] for f in files})
  if not stems:
    raise MissingData(
      "missing_view", f"{video_id}: no {what} features in {feature_dir}"
    )
  if len(stems) > 1:
    raise DataError(
      f"{video_id}: several {what} feature files {stems}; set the "
      "camera id in the config"
    )
  return files[0]


@dataclasses.dataclass(frozen=True)
class _TakeFiles:
  """What loading one example of a take reads: its feature files, its
  keystep annotations and how they become labels."""

  config: EgoExo4DConfig
  uid: str
  video_id: str
  feature_dir: str
  ego_files: list
  take: dict
  annotation_path: str
  step_classes: dict
  table: str
  policy: object

  def exo(self, camera: str) -> Stream:
    path = _one_file(
      _camera_files(self.feature_dir, self.uid, glob.escape(camera)),
      f"exo {camera}",
      self.video_id,
      self.feature_dir,
    )
    return Stream(load_feature_file(path), path)

  def ego(self) -> Stream:
    path = _one_file(
      self.ego_files,
      f"ego {self.config.ego_camera}*",
      self.video_id,
      self.feature_dir,
    )
    return Stream(load_feature_file(path), path)

  def labels(self, lengths: list[int]) -> Labels:
    """Labels as long as the longest stream or segment."""
    segments = _segments(self.config, self.uid, self.take, self.annotation_path)
    return _labels(
      segments,
      max(list(lengths) + [s.end for s in segments]),
      f"{self.annotation_path} take {self.uid}",
      self.step_classes,
      self.table,
      self.policy,
    )


def _loader(files: _TakeFiles, camera: str | None):
  """Loads a take's exo camera, its Aria features and its labels."""

  def load() -> Loaded:
    if camera is None:
      raise MissingData(
        "missing_view", f"{files.video_id}: takes.json gives no best_exo"
      )
    exo, ego = files.exo(camera), files.ego()
    return Loaded(
      {
        "exo": exo,
        "ego": ego,
        "labels": files.labels([len(exo.values), len(ego.values)]),
      }
    )

  return load


def _views_loader(files: _TakeFiles, slots: list):
  """Loads a take's exo cameras as views (None where a slot has no camera or
  the camera no feature file), its Aria features and its labels."""

  def load() -> Loaded:
    views = [
      files.exo(camera)
      if camera
      and _camera_files(files.feature_dir, files.uid, glob.escape(camera))
      else None
      for camera in slots
    ]
    ego = files.ego()
    lengths = [len(v.values) for v in views if v is not None]
    return Loaded(
      {"ego": ego, "labels": files.labels(lengths + [len(ego.values)])},
      exo_views=views,
      exo_view_ids=[camera or "" for camera in slots],
    )

  return load


def _segments(config, uid, take, annotation_path) -> list[Segment]:
  """A take's keystep segments, in feature steps."""
  segments = []
  for number, segment in enumerate(take.get("segments", []), 1):
    try:
      start, end = float(segment["start_time"]), float(segment["end_time"])
    except (KeyError, TypeError, ValueError):
      raise DataError(
        f"{annotation_path}: take {uid} segment {number} lacks "
        "numeric start_time/end_time"
      ) from None
    first = max(_step_at(start, config), 0)
    last = max(_step_at(end, config), first)
    segments.append(
      Segment(first, last, str(segment.get("step_unique_id")), number)
    )
  return segments


def _labels(segments, length, source, step_classes, table, policy) -> Labels:
  """Per-step labels of `length` steps; steps no keystep covers are
  background (class 0)."""
  if not segments:
    return Labels(np.zeros(length, np.int32), 0, source)
  return segments_to_labels(
    segments,
    step_classes,
    source=source,
    class_table=table,
    policy=policy,
    start=0,
    length=length,
    gap_label=0,
  )


def _step_at(seconds: float, config: EgoExo4DConfig) -> int:
  """First feature step whose time (offset + i / fps) is at or after `seconds`."""
  return math.ceil(
    (seconds - config.feature_time_offset) * config.feature_fps - 1e-6
  )
