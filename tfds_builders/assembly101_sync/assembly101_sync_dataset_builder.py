"""TFDS builder for Assembly101 exo/ego coarse action segmentation (dataset `assembly101_sync`).

Reads the public per-frame features (LMDB, TSM or DINOv2 release) of one static
(exo) and one head-mounted (ego) view, paired by frame index, and the coarse
segment annotations. The official DINOv2 release (ViT-g/14) has the exo view
only: its configs read the ego view from the user's own extraction (npy or
LMDB, `exo2ego_jax.extract_features`). Multi-view configs
(`make_multiview_config`, e.g. `tsm_c10119_8exo_hmc84358933`) hold all 8
static cameras of a recording as exo views of one example (`exo_views`,
`exo_present`; a camera a recording lacks is absent). Manual download; see
README.md for the files and layout.

  builder = Builder(config="tsm_c10119_hmc84358933", data_dir=d,
                    file_format="array_record")
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=m))

Reading, alignment and repairs live in `tfds_builders.common`.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow_datasets as tfds

from tfds_builders.common.alignment import Loaded, Recording, Stream
from tfds_builders.common.annotations import parse_segments, read_class_table
from tfds_builders.common.annotations import segments_to_labels
from tfds_builders.common.errors import DataError, MissingData, require
from tfds_builders.common.repair import repair_fix
from tfds_builders.common.features import LmdbViews, load_feature_file
from tfds_builders.common.layout import check_lmdb_layout, last_frame
from tfds_builders.common.layout import rows_of_frames
from tfds_builders.common.splits import hash_partition, read_split_list
from tfds_builders.common.splits import user_splits
from tfds_builders.common.sync_builder import Plan, SyncConfig
from tfds_builders.common.sync_builder import SyncFeatureBuilder

# Where each public feature release lives under the manual dir, and its keys.
FEATURE_TYPES = {
  "tsm": {
    "feature_dim": 2048,
    "lmdb_dir": "TSM_features/{view}",
    "key_format": "{recording}/{view}/{view}_{frame:010d}.jpg",
  },
  "dinov2": {
    "feature_dim": 1024,
    "lmdb_dir": "DINOv2_features/{view}",
    "key_format": "{video}_{frame:010d}.jpg",
  },
  # The official DINOv2_features.zip (download scripts' README; HandFormer's
  # feeder): ViT-g/14, 1536-D, the TSM key layout, exo view C10119_rgb only.
  "dinov2_vitg14": {
    "feature_dim": 1536,
    "lmdb_dir": "DINOv2_features/lmdb_fullImg",
    "key_format": "{recording}/{view}/{view}_{frame:010d}.jpg",
  },
}
# The backbone whose features a release holds: ego features must come from it.
BACKBONES = {
  "dinov2_vitg14": "DINOv2 ViT-g/14 (extract_features with "
  "dinov2_vitg14 weights, model vit_giant2)"
}
EGO_FORMATS = ("npy", "lmdb")
# The static (exo) RGB cameras of a recording, as the official loader lists
# them; a multi-view config's views are its exo_view, then the others in this
# order.
EXO_CAMERAS = (
  "C10095_rgb",
  "C10115_rgb",
  "C10118_rgb",
  "C10119_rgb",
  "C10379_rgb",
  "C10390_rgb",
  "C10395_rgb",
  "C10404_rgb",
)
TASK_PREFIXES = ("assembly_", "disassembly_")
# Recording names (download scripts' recording_names.txt): nusar-2021_...
RECORDING_KEYS = {"recording": r"nusar-[^/_]+_[^/]+"}
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
      raise ValueError(
        f"feature_type must be one of {list(FEATURE_TYPES)}, "
        f"not {self.feature_type!r}"
      )
    for field, value in FEATURE_TYPES[self.feature_type].items():
      if not getattr(self, field):
        setattr(self, field, value)
    super().__post_init__()
    if self.frame_stride < 1:
      raise ValueError("frame_stride must be >= 1")
    self.background_classes = tuple(self.background_classes)


@dataclasses.dataclass(eq=False)
class Assembly101ReleaseConfig(Assembly101Config):
  """Exo from a public release that lacks the ego view; ego from the user's
  own extraction (`make_release_config` names it).

  Attributes:
    ego_format: "npy" (`<ego_dir>/<recording>.npy`, (frames, D), row 0 =
      frame `ego_first_frame`) or "lmdb" (an LMDB environment at `ego_dir`,
      keys `ego_key_format`, key frame = annotation frame), as
      `extract_features --format npy|lmdb` writes them for videos named
      `<recording>.mp4`.
    ego_dir: where the ego features are, relative to the manual dir; {view}
      is the ego view.
    ego_key_format: LMDB key of an ego frame; fields as `key_format`.
    ego_first_frame: annotation frame of row 0 of an ego npy (annotation
      frames count the video's frames from 1).
  """

  feature_type: str = "dinov2_vitg14"
  ego_format: str = "npy"
  ego_dir: str = "ego_features/{view}"
  ego_key_format: str = "{recording}_{frame:010d}.jpg"
  ego_first_frame: int = 1

  def __post_init__(self):
    super().__post_init__()
    if self.ego_format not in EGO_FORMATS:
      raise ValueError(
        f"config {self.name!r}: ego_format must be one of "
        f"{list(EGO_FORMATS)}, not {self.ego_format!r}"
      )


@dataclasses.dataclass(eq=False)
class Assembly101MultiviewConfig(Assembly101Config):
  """Every static camera of a recording as an exo view of one example
  (`make_multiview_config` names it).

  Attributes:
    exo_views: the exo cameras in view order (at least 2); view 0 is the
      `exo` field and sets `exo_view`. Empty: `exo_view`, then the other
      cameras of `EXO_CAMERAS` in that order.

  A recording without a camera's features (no key of it in the view's LMDB)
  gets that view absent (`exo_present` 0, features 0), as are the frames a
  view lacks; it needs its ego view and at least one exo view.
  """

  exo_views: tuple[str, ...] = ()

  def __post_init__(self):
    super().__post_init__()
    if self.exo_views:
      self.exo_view = self.exo_views[0]
    else:
      self.exo_views = (self.exo_view,) + tuple(
        c for c in EXO_CAMERAS if c != self.exo_view
      )
    self.exo_views = tuple(self.exo_views)
    if len(self.exo_views) < 2 or len(set(self.exo_views)) != len(
      self.exo_views
    ):
      raise ValueError(
        f"config {self.name!r}: exo_views must name at least 2 distinct "
        f"cameras, not {list(self.exo_views)} (one view: make_config)"
      )


def _short(view: str) -> str:
  """C10119_rgb -> c10119, HMC_84358933_mono10bit -> hmc84358933."""
  parts = view.lower().split("_")
  return (
    parts[0] + parts[1] if parts[0] == "hmc" and len(parts) > 1 else parts[0]
  )


def make_config(
  exo_view: str,
  ego_view: str,
  feature_type: str = "tsm",
  storage_dtype: str = "float32",
  name: str | None = None,
  **kwargs,
) -> Assembly101Config:
  """A config named `<feature_type>_<exo>_<ego>[_fp16]`, e.g. tsm_c10119_hmc84358933."""
  if name is None:
    name = f"{feature_type}_{_short(exo_view)}_{_short(ego_view)}"
    name += "_fp16" if storage_dtype == "float16" else ""
  return Assembly101Config(
    name=name,
    exo_view=exo_view,
    ego_view=ego_view,
    feature_type=feature_type,
    storage_dtype=storage_dtype,
    description=(
      f"exo {exo_view}, ego {ego_view}, {feature_type} features stored as "
      f"{storage_dtype}."
    ),
    **kwargs,
  )


def make_release_config(
  exo_view: str,
  ego_view: str,
  ego_format: str = "npy",
  storage_dtype: str = "float32",
  feature_type: str = "dinov2_vitg14",
  name: str | None = None,
  **kwargs,
) -> Assembly101ReleaseConfig:
  """A config named `<feature_type>_<exo>_<ego>_<ego_format>[_fp16]`."""
  if name is None:
    name = f"{feature_type}_{_short(exo_view)}_{_short(ego_view)}_{ego_format}"
    name += "_fp16" if storage_dtype == "float16" else ""
  return Assembly101ReleaseConfig(
    name=name,
    exo_view=exo_view,
    ego_view=ego_view,
    feature_type=feature_type,
    ego_format=ego_format,
    storage_dtype=storage_dtype,
    description=(
      f"exo {exo_view} from the {feature_type} release, ego {ego_view} "
      f"from your own {ego_format} extraction, stored as {storage_dtype}."
    ),
    **kwargs,
  )


def make_multiview_config(
  exo_views: tuple[str, ...] | None = None,
  ego_view: str = "HMC_84358933_mono10bit",
  feature_type: str = "tsm",
  storage_dtype: str = "float32",
  name: str | None = None,
  **kwargs,
) -> Assembly101MultiviewConfig:
  """A config named `<feature_type>_<exo0>_<K>exo_<ego>[_fp16]`, e.g.
  tsm_c10119_8exo_hmc84358933: views `exo_views` (default: C10119_rgb, then
  the other 7 of `EXO_CAMERAS`)."""
  if exo_views is None:
    exo_views = ("C10119_rgb",) + tuple(
      c for c in EXO_CAMERAS if c != "C10119_rgb"
    )
  exo_views = tuple(exo_views)
  if name is None:
    name = f"{feature_type}_{_short(exo_views[0])}_{len(exo_views)}exo_"
    name += _short(ego_view) + ("_fp16" if storage_dtype == "float16" else "")
  return Assembly101MultiviewConfig(
    name=name,
    exo_views=exo_views,
    ego_view=ego_view,
    feature_type=feature_type,
    storage_dtype=storage_dtype,
    description=(
      f"{len(exo_views)} exo views ({', '.join(exo_views)}; view 0 is "
      f"`exo`), ego {ego_view}, {feature_type} features stored as "
      f"{storage_dtype}; a camera a recording lacks is absent."
    ),
    **kwargs,
  )


class Builder(SyncFeatureBuilder):
  """Assembly101: synchronized static and head-mounted views of toy assembly."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = (
    [
      make_config("C10119_rgb", "HMC_84358933_mono10bit", features, dtype)
      for features in ("tsm", "dinov2")
      for dtype in ("float32", "float16")
    ]
    + [
      make_release_config("C10119_rgb", "HMC_84358933_mono10bit", ego, dtype)
      for ego in EGO_FORMATS
      for dtype in ("float32", "float16")
    ]
    + [  # all 8 static cameras as exo views (issue #20)
      make_multiview_config(None, "HMC_84358933_mono10bit", features, dtype)
      for features in ("tsm", "dinov2")
      for dtype in ("float32", "float16")
    ]
  )
  DEFAULT_CONFIG_NAME = "tsm_c10119_hmc84358933"
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Put the public Assembly101 files in the manual dir (see
  tfds_builders/assembly101_sync/README.md):
    coarse-annotations/actions.csv
    coarse-annotations/coarse_labels/{assembly,disassembly}_<recording>.txt
    coarse-annotations/coarse_splits/{train,val}_coarse_{assembly,disassembly}.txt
    TSM_features/<view>/data.mdb        (TSM configs: one LMDB per view;
        the *_8exo_* configs read all 8 static cameras C10095_rgb ...)
    DINOv2_features/<view>/data.mdb     (DINOv2 configs: one LMDB per view)
    DINOv2_features/lmdb_fullImg/data.mdb   (dinov2_vitg14 configs: the
        official DINOv2_features.zip's full-frame LMDB, exo C10119_rgb)
    ego_features/<ego view>/<recording>.npy, or an LMDB there
        (dinov2_vitg14 configs: your ego extraction, see README.md)
  Optional: splits/{train,sync_pairs,validation,test}.txt (your split lists),
  ego_coarse_labels/<video>.txt (an ego-view annotation).
  """

  def _download_and_prepare(self, dl_manager, download_config=None):
    try:
      super()._download_and_prepare(dl_manager, download_config)
    finally:  # a build retried in this process can open the LMDBs again
      if getattr(self, "_lmdb", None) is not None:
        self._lmdb.close()

  def _exo_view_names(self) -> list[str] | None:
    config = self.builder_config
    if isinstance(config, Assembly101MultiviewConfig):
      return list(config.exo_views)
    return None

  def _plan(self, manual_dir: str) -> Plan:
    config = self.builder_config
    annotations = os.path.join(manual_dir, "coarse-annotations")
    table = require(
      os.path.join(annotations, "actions.csv"),
      "class table",
      "Download coarse-annotations/actions.csv from the Assembly101 "
      "annotations (github.com/assembly-101/assembly101-annotations).",
    )
    class_names = read_class_table(table)
    classes = {n: i for i, n in enumerate(class_names)}
    missing = [b for b in config.background_classes if b not in classes]
    if missing:
      raise DataError(f"background_classes {missing} are not in {table}")
    release = isinstance(config, Assembly101ReleaseConfig)
    exo_views = self._exo_view_names() or [config.exo_view]
    for view in exo_views + ([] if release else [config.ego_view]):
      path = os.path.join(manual_dir, config.lmdb_dir.format(view=view))
      require(
        os.path.join(path, "data.mdb"),
        f"{config.feature_type} features of view {view}",
        "Put the view's LMDB environment there (see README)."
        + (
          " A multi-view config reads every camera of exo_views; for "
          "fewer, build make_multiview_config(exo_views=...)."
          if len(exo_views) > 1
          else ""
        ),
      )
    split_ids, split_source = self._split_ids(manual_dir, annotations)
    lmdb = self._lmdb = LmdbViews()
    extra = {}
    if release:
      _check_release(config, manual_dir, lmdb)
      extra = {"ego_format": config.ego_format, "ego_dir": config.ego_dir}
    splits = {
      split: [
        self._recording(manual_dir, annotations, video, classes, table, lmdb)
        for video in ids
      ]
      for split, ids in split_ids.items()
    }
    return Plan(
      class_names,
      list(config.background_classes),
      splits,
      {
        "fps": FPS / config.frame_stride,
        "exo_view": config.exo_view,
        "ego_view": config.ego_view,
        "feature_type": config.feature_type,
        "split_source": split_source,
        **extra,
      },
    )

  def _split_ids(
    self, manual_dir: str, annotations: str
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
            os.path.join(
              annotations, "coarse_splits", f"{part}_coarse_{task}.txt"
            ),
            "public split list",
            "Download coarse-annotations/coarse_splits, or give "
            "your own splits/{train,sync_pairs,validation,test}.txt.",
          )
          public[part] += read_split_list(path)
      recording = lambda video: video.split("_", 1)[-1]
      sync, train = hash_partition(
        public["train"], config.sync_fraction, recording
      )
      test, validation = hash_partition(
        public["val"], config.test_fraction, recording
      )
      lists = {
        "train": train,
        "sync_pairs": sync,
        "validation": validation,
        "test": test,
      }
    for split, ids in lists.items():
      bad = [v for v in ids if not v.startswith(TASK_PREFIXES)]
      if bad:
        raise DataError(
          f"split `{split}`: video ids must be annotation names "
          f"`assembly_<recording>` or `disassembly_<recording>`, got "
          f"{bad[:3]}"
        )
    return lists, source

  def _recording(self, manual_dir, annotations, video, classes, table, lmdb):
    config = self.builder_config
    recording = video.split("_", 1)[1]
    label_path = _label_file(os.path.join(annotations, "coarse_labels"), video)
    ego_path = _label_file(
      os.path.join(manual_dir, "ego_coarse_labels"), video, required=False
    )

    def load() -> Loaded:
      labels = segments_to_labels(
        parse_segments(label_path),
        classes,
        source=label_path,
        class_table=table,
        policy=self.policy,
      )
      origin, step = labels.start, config.frame_stride
      streams = {"labels": labels.subsample(origin, step)}
      if ego_path:
        streams["ego_labels"] = segments_to_labels(
          parse_segments(ego_path),
          classes,
          source=ego_path,
          class_table=table,
          policy=self.policy,
        ).subsample(origin, step)
      frames = range(origin, labels.start + len(labels.values), step)
      release = isinstance(config, Assembly101ReleaseConfig)
      multiview = isinstance(config, Assembly101MultiviewConfig)

      def read(view, fix=None):
        path = os.path.join(manual_dir, config.lmdb_dir.format(view=view))
        keys = [
          config.key_format.format(
            video=video,
            recording=recording,
            view=view,
            frame=f + config.frame_offset,
          )
          for f in frames
        ]
        values, present = lmdb.read(path, keys, config.feature_dim, fix)
        return Stream(values, f"{path} keys {keys[0]!r}...", 0, present)

      if multiview:  # every exo view; one without a key is absent
        views = [read(config.exo_views[0])] + [
          read(view, _view_fix(config, view)) for view in config.exo_views[1:]
        ]
        streams["ego"] = read(config.ego_view)
        return Loaded(streams, origin, step, views, list(config.exo_views))
      for name, view in (("exo", config.exo_view), ("ego", config.ego_view)):
        if name == "ego" and release:
          streams[name] = _user_ego(
            config, manual_dir, lmdb, video, recording, frames, self.policy
          )
          continue
        streams[name] = read(view)
      return Loaded(streams, origin, step)

    return Recording(video, recording, config.exo_view, config.ego_view, load)


def _view_fix(config: Assembly101MultiviewConfig, view: str) -> str:
  """What to do about an exo view whose vectors have another size than the
  config's (and the other views')."""
  return (
    f"config {config.name!r} reads every view as {config.feature_dim}-D: "
    f"re-extract view {view} with the backbone of the other views, or "
    f"leave {view} out of exo_views (make_multiview_config(exo_views=...))"
  )


def _label_file(folder: str, video: str, required: bool = True) -> str | None:
  """`<folder>/<video>.txt`; some releases spell disassembly files `disassebly_`."""
  candidates = [os.path.join(folder, f"{video}.txt")]
  if video.startswith("disassembly_"):
    candidates.append(
      os.path.join(
        folder, "disassebly_" + video[len("disassembly_") :] + ".txt"
      )
    )
  for path in candidates:
    if os.path.exists(path):
      return path
  if required:
    raise DataError(
      f"{video}: no annotation file {candidates[0]}; download "
      "coarse-annotations/coarse_labels or drop the video from "
      "the split lists"
    )
  return None


def _release_fix(config: Assembly101ReleaseConfig, side: str) -> str:
  """How to get the features a release config reads (error messages)."""
  backbone = BACKBONES.get(config.feature_type, config.feature_type)
  if side == "exo":
    return (
      f"Config {config.name!r} reads the {config.feature_type} release "
      f"as downloaded: unzip it and put its full-frame LMDB (the folder "
      f"holding data.mdb) at {config.lmdb_dir.format(view='<view>')}; "
      "for another layout set lmdb_dir/key_format (see README.md)."
    )
  return (
    f"Extract the ego videos with {backbone}, the release's backbone, "
    f"named <recording>.mp4, with --format {config.ego_format} into "
    f"{config.ego_dir.format(view=config.ego_view)} (see README.md)."
  )


def _check_release(
  config: Assembly101ReleaseConfig, manual_dir: str, lmdb: LmdbViews
) -> None:
  """The exo LMDB (and an ego LMDB) have the layout and dimension the config
  reads; the ego folder exists. Refused naming the file otherwise."""
  exo = os.path.join(manual_dir, config.lmdb_dir.format(view=config.exo_view))
  check_lmdb_layout(
    lmdb,
    exo,
    config.key_format,
    config.exo_view,
    config.feature_dim,
    config.name,
    _release_fix(config, "exo"),
    RECORDING_KEYS,
  )
  ego = os.path.join(manual_dir, config.ego_dir.format(view=config.ego_view))
  if config.ego_format == "lmdb":
    require(
      os.path.join(ego, "data.mdb"),
      f"ego features of view {config.ego_view} (LMDB)",
      _release_fix(config, "ego"),
    )
    check_lmdb_layout(
      lmdb,
      ego,
      config.ego_key_format,
      config.ego_view,
      config.feature_dim,
      config.name,
      _release_fix(config, "ego"),
      RECORDING_KEYS,
    )
  else:
    require(
      ego,
      f"ego features of view {config.ego_view} (a folder of <recording>.npy)",
      _release_fix(config, "ego"),
    )


def _user_ego(
  config: Assembly101ReleaseConfig,
  manual_dir: str,
  lmdb: LmdbViews,
  video: str,
  recording: str,
  frames: range,
  policy,
) -> Stream:
  """The ego stream of a recording from the user's extraction, after checking
  that its length matches the exo release's within `max_trim_frames`."""
  ego_dir = os.path.join(
    manual_dir, config.ego_dir.format(view=config.ego_view)
  )
  fields = dict(video=video, recording=recording, view=config.ego_view)
  if config.ego_format == "npy":
    path = os.path.join(ego_dir, f"{recording}.npy")
    if not os.path.exists(path):
      raise MissingData("missing_view", f"{video}: no ego features {path}")
    values = load_feature_file(path)
    if values.shape[1] != config.feature_dim:
      raise DataError(
        f"{path}: {values.shape[1]}-D ego features, but config "
        f"{config.name!r} reads {config.feature_dim}-D ones; "
        f"{_release_fix(config, 'ego')}"
      )
    ego_last = config.ego_first_frame + len(values) - 1
    values, present = rows_of_frames(values, frames, config.ego_first_frame)
    source = path
  else:
    keys = [config.ego_key_format.format(frame=f, **fields) for f in frames]
    values, present = lmdb.read(ego_dir, keys, config.feature_dim)
    ego_last = last_frame(lmdb, ego_dir, config.ego_key_format, **fields)
    if ego_last is None:
      raise MissingData(
        "missing_view",
        f"{video}: no ego features of "
        f"{recording} in {ego_dir} (keys {keys[0]!r}...)",
      )
    source = f"{ego_dir} keys {keys[0]!r}..."
  exo_dir = os.path.join(
    manual_dir, config.lmdb_dir.format(view=config.exo_view)
  )
  exo_last = last_frame(
    lmdb, exo_dir, config.key_format, **dict(fields, view=config.exo_view)
  )
  if exo_last is not None and ego_last is not None:
    exo_last -= config.frame_offset
    if abs(ego_last - exo_last) > policy.max_trim_frames:
      raise DataError(
        f"{video}: ego features {source} end at frame {ego_last} but the exo "
        f"release {exo_dir} at frame {exo_last}: {abs(ego_last - exo_last)} "
        f"frames apart, more than max_trim_frames={policy.max_trim_frames}. "
        "Check that the ego video is this recording's, or "
        f"{repair_fix(max_trim_frames=abs(ego_last - exo_last))}"
      )
  return Stream(np.asarray(values), source, 0, present)
