"""The builder class that the real-data builders share: fields, metadata,
planning checks and the assembly of one aligned example per recording.

Subclasses only say where the pieces of each recording are (`_plan`);
recordings are loaded one at a time, so a build never holds a split in memory.
"""

from __future__ import annotations

import abc
import collections
import dataclasses
import json
import os
from typing import Mapping, Sequence

import numpy as np
import tensorflow_datasets as tfds

from exo2ego_jax.data.constants import IGNORE_LABEL, SPLITS, VIEWS
from tfds_builders.common.alignment import Recording, Stream, align
from tfds_builders.common.alignment import align_views, check_finite
from tfds_builders.common.annotations import Labels
from tfds_builders.common.build_hooks import (
  BuildMessages,
  KeepPreviousBuild,
  NotOnBucket,
)
from tfds_builders.common.build_hooks import deterministic_serialization
from tfds_builders.common.errors import DataError, MissingData
from tfds_builders.common.repair import RepairLog, RepairPolicy
from tfds_builders.common.repair import read_repair_file, repair_fix
from tfds_builders.common.splits import check_disjoint

STORAGE_DTYPES = {"float32": np.float32, "float16": np.float16}


def example_features(
  feature_dim: int, storage_dtype: str, num_views: int = 0
) -> tfds.features.FeaturesDict:
  """The fields every real-data example has (those of `synthetic_sync` and more).

  Multi-view configs (`num_views` K >= 2 exo views) add `exo_views` (K, T, D),
  `exo_present` (K, T) int32 and `exo_view_ids` (the camera of each view,
  comma-separated, "" where the recording has none); `exo` is view 0.
  """
  dtype = STORAGE_DTYPES[storage_dtype]
  views = {}
  if num_views:
    views = {
      "exo_views": tfds.features.Tensor(
        shape=(num_views, None, feature_dim), dtype=dtype
      ),
      "exo_present": tfds.features.Tensor(
        shape=(num_views, None), dtype=np.int32
      ),
      "exo_view_ids": tfds.features.Text(),
    }
  return tfds.features.FeaturesDict(
    {
      **views,
      "exo": tfds.features.Tensor(shape=(None, feature_dim), dtype=dtype),
      "ego": tfds.features.Tensor(shape=(None, feature_dim), dtype=dtype),
      "labels": tfds.features.Tensor(shape=(None,), dtype=np.int32),
      "ego_labels": tfds.features.Tensor(shape=(None,), dtype=np.int32),
      "video_id": tfds.features.Text(),
      "recording_id": tfds.features.Text(),
      "exo_view": tfds.features.Text(),
      "ego_view": tfds.features.Text(),
      "start_frame": tfds.features.Scalar(dtype=np.int32),
    }
  )


@dataclasses.dataclass(eq=False)
class SyncConfig(tfds.core.BuilderConfig):
  """Options every real-data builder has.

  feature_dim: the features' dimension; a build fails naming the file if the
    data differ (it is a config field because `info` must know it before the
    data are read, e.g. when a dataset is only read back).
  storage_dtype: "float32" or "float16" (half the disk; the trainer casts back
    to float32).
  policy: what may be repaired instead of failing (`RepairPolicy`, or a
    dict of its fields, as `tfds build --config='{...}'` passes it); a
    `repair.json` in the manual dir overrides its fields.
  """

  feature_dim: int = 0
  storage_dtype: str = "float32"
  policy: RepairPolicy = RepairPolicy()

  def __post_init__(self):
    if isinstance(self.policy, dict):
      known = [f.name for f in dataclasses.fields(RepairPolicy)]
      unknown = sorted(set(self.policy) - set(known))
      if unknown:
        raise ValueError(
          f"config {self.name!r}: policy field {unknown[0]!r} "
          f"is unknown; use some of {', '.join(known)}"
        )
      self.policy = RepairPolicy(**self.policy)
    if self.feature_dim <= 0:
      raise ValueError(f"config {self.name!r}: feature_dim must be set (> 0)")
    if self.storage_dtype not in STORAGE_DTYPES:
      raise ValueError(
        f"storage_dtype must be one of {list(STORAGE_DTYPES)}, "
        f"not {self.storage_dtype!r}"
      )


@dataclasses.dataclass
class Plan:
  """What a builder found in the manual dir: classes and recordings per split."""

  class_names: list[str]
  background_classes: list[str]
  splits: dict[str, list[Recording]]
  metadata: dict = dataclasses.field(default_factory=dict)


class SyncFeatureBuilder(
  NotOnBucket, KeepPreviousBuild, BuildMessages, tfds.core.GeneratorBasedBuilder
):
  """Aligned exo/ego feature sequences from manually downloaded files.

  Subclasses implement `_plan(manual_dir)`; this class does the rest: fields,
  metadata (`class_names`, `background_classes`, `feature_dim`, `repairs`,
  `summary`, `policy`), alignment, repairs and byte-deterministic
  serialization. `self.policy` is the repair policy in force: the config's,
  with the fields of `<manual_dir>/repair.json`.

  Multi-view configs (`_exo_view_names` gives K >= 2 names) load every exo
  view of a recording (`Loaded.exo_views`) into one example with
  `exo_views` and `exo_present` (`align_views`), and name the views in
  `metadata["exo_view_names"]`.
  """

  @abc.abstractmethod
  def _plan(self, manual_dir: str) -> Plan:
    """Reads annotations and lists the recordings of each split (no features yet)."""

  def _exo_view_names(self) -> list[str] | None:
    """The exo views of a multi-view config, in view order; None: one view."""
    return None

  def _info(self) -> tfds.core.DatasetInfo:
    config = self.builder_config
    names = self._exo_view_names()
    metadata = {
      "feature_dim": config.feature_dim,
      "storage_dtype": config.storage_dtype,
      "config": _jsonable(config),
    }
    if names:
      metadata["exo_view_names"] = list(names)
    return self.dataset_info_from_configs(
      features=example_features(
        config.feature_dim, config.storage_dtype, len(names or ())
      ),
      supervised_keys=None,
      metadata=tfds.core.MetadataDict(metadata),
    )

  def _download_and_prepare(self, dl_manager, download_config=None):
    self._repairs = RepairLog()
    self._summary = {}
    with deterministic_serialization():
      super()._download_and_prepare(dl_manager, download_config)
    self.info.metadata["summary"] = {
      s: self._summary[s] for s in SPLITS if s in self._summary
    }
    self.info.metadata["repairs"] = self._repairs.to_metadata()

  @property
  def policy(self) -> RepairPolicy:
    return getattr(self, "_policy", None) or self.builder_config.policy

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manual_dir = os.fspath(dl_manager.manual_dir)
    self._policy = read_repair_file(manual_dir, self.builder_config.policy)
    self.info.metadata["policy"] = dataclasses.asdict(self._policy)
    plan = self._plan(manual_dir)
    if set(plan.splits) != set(SPLITS):
      raise DataError(
        f"{self.name}: splits {sorted(plan.splits)} instead of {list(SPLITS)}"
      )
    for split, recordings in plan.splits.items():
      if not recordings:
        raise DataError(
          f"{self.name}: split `{split}` lists no recording; check "
          f"the split lists in {manual_dir}"
        )
      ids = [r.video_id for r in recordings]
      if len(set(ids)) != len(ids):
        raise DataError(
          f"{self.name}: split `{split}` lists a video twice: "
          f"{[i for i, c in collections.Counter(ids).items() if c > 1][:3]}"
        )
    check_disjoint(
      {
        s: sorted({r.recording_id for r in rs}) for s, rs in plan.splits.items()
      },
      f"{self.name} in {manual_dir}",
    )
    self.info.metadata.update(
      {
        "class_names": list(plan.class_names),
        "background_classes": list(plan.background_classes),
        **plan.metadata,
      }
    )
    return {
      split: self._generate_examples(
        split,
        plan.splits[split],
        {n: i for i, n in enumerate(plan.class_names)},
      )
      for split in SPLITS
    }

  def _generate_examples(
    self,
    split: str,
    recordings: Sequence[Recording],
    classes: Mapping[str, int],
  ):
    summary = self._summary.setdefault(
      split,
      {"listed": len(recordings), "examples": 0, "skipped": 0, "frames": 0},
    )
    names = self._exo_view_names()
    if names:  # per view: examples it is in, frames it sees
      summary["view_examples"] = [0] * len(names)
      summary["view_frames"] = [0] * len(names)
    for recording in recordings:
      example = self._example(split, recording, len(classes))
      if example is None:
        summary["skipped"] += 1
        continue
      summary["examples"] += 1
      summary["frames"] += int(len(example["labels"]))
      if names:
        seen = example["exo_present"].sum(axis=1)
        for k, frames in enumerate(seen):
          summary["view_examples"][k] += int(frames > 0)
          summary["view_frames"][k] += int(frames)
      yield recording.video_id, example
    if not summary["examples"]:
      reasons = [
        e["detail"] for e in self._repairs.entries if e["split"] == split
      ]
      raise DataError(
        f"split `{split}`: no example left, all {len(recordings)} "
        f"listed recordings were skipped: {reasons[:3]}"
      )

  def _example(
    self, split: str, recording: Recording, num_classes: int
  ) -> dict | None:
    """One aligned example, or None if the policy skips the recording."""
    config = self.builder_config
    policy = self.policy
    video_id = recording.video_id

    def report(kind, frames, detail):
      self._repairs.add(split, video_id, kind, frames, detail)

    try:
      loaded = recording.load()
      origin, step = loaded.frame_origin, loaded.frame_step
      streams = {}
      for name, value in loaded.streams.items():
        if isinstance(value, Labels):
          for kind, frames, detail in value.repairs:
            report(kind, frames, detail)
          value = Stream(value.values, value.source, value.start)
        streams[name] = value
      dtype = STORAGE_DTYPES[config.storage_dtype]
      multiview = loaded.exo_views is not None
      if multiview:
        arrays, start = align_views(
          video_id,
          streams,
          loaded.exo_views,
          self._exo_view_names(),
          policy,
          config.feature_dim,
          report,
          origin,
          step,
          dtype,
        )
      else:
        arrays, start = align(
          video_id, streams, policy, config.feature_dim, report, origin, step
        )
    except MissingData as e:
      field = "missing_view" if e.kind == "missing_view" else "empty"
      if getattr(policy, field) == "error":
        raise MissingData(
          e.kind,
          f"{e}; {repair_fix(**{field: 'skip'})} to skip such recordings",
        ) from None
      report(f"skipped_{e.kind}", 0, str(e))
      return None
    length = len(arrays["exo"])
    for view in VIEWS:
      if view == "exo" and multiview:
        continue  # the views were checked and cast by align_views
      source = streams[view].source
      values = check_finite(
        video_id,
        view,
        source,
        arrays[view],
        policy,
        report,
        origin + step * start,
        step,
      )
      values = np.asarray(values, dtype)
      if not np.isfinite(values).all():
        raise DataError(
          f"{video_id}: {view} features from {source} exceed the "
          f"{config.storage_dtype} range; store them as float32"
        )
      arrays[view] = values
    if "labels" not in arrays:
      arrays["labels"] = np.full(length, IGNORE_LABEL, np.int32)
    if "ego_labels" not in arrays:
      arrays["ego_labels"] = arrays["labels"]
    for name in ("labels", "ego_labels"):
      bad = (arrays[name] != IGNORE_LABEL) & (
        (arrays[name] < 0) | (arrays[name] >= num_classes)
      )
      if bad.any():
        # a field without a stream of its own: name the exo (or ego) file
        stream = streams.get(name) or streams.get("exo") or streams["ego"]
        raise DataError(
          f"{video_id}: {name} ({stream.source}) "
          f"has ids outside 0..{num_classes - 1}"
        )
    example = {
      "exo": arrays["exo"],
      "ego": arrays["ego"],
      "labels": np.asarray(arrays["labels"], np.int32),
      "ego_labels": np.asarray(arrays["ego_labels"], np.int32),
      "video_id": video_id,
      "recording_id": recording.recording_id,
      "exo_view": recording.exo_view,
      "ego_view": recording.ego_view,
      "start_frame": np.int32(origin + step * start),
    }
    if multiview:
      ids = loaded.exo_view_ids or [""] * len(loaded.exo_views)
      example.update(
        exo_views=arrays["exo_views"],
        exo_present=arrays["exo_present"],
        exo_view_ids=",".join(
          i if seen else ""
          for i, seen in zip(ids, arrays["exo_present"].any(axis=1))
        ),
      )
    return example


def _jsonable(config: SyncConfig) -> dict:
  """The config's own fields (not tfds' name/version/...), JSON-friendly."""
  skip = {f.name for f in dataclasses.fields(tfds.core.BuilderConfig)}
  out = {}
  for field in dataclasses.fields(config):
    if field.name in skip:
      continue
    value = getattr(config, field.name)
    if dataclasses.is_dataclass(value):
      value = dataclasses.asdict(value)
    elif isinstance(value, tuple):
      value = list(value)
    out[field.name] = value
  json.dumps(out)  # fail early on a non-JSON field
  return out
