r"""Checks that `tfds build --manual_dir` works for the real-data builders.

  pip install -e ".[build]"      # `tfds build` needs TensorFlow (the `build` extra)
  python tfds_builders/check_cli_build.py [--workdir DIR] [--tfds PATH] \
    [--assembly101_config NAME ...] [--egoexo4d_config NAME ...] [--all]

For `assembly101_sync` and `egoexo4d_keystep` it writes a small manual dir in
the public layout (Assembly101: `coarse-annotations/` with `actions.csv`,
tab-separated `coarse_labels/` and `coarse_splits/`, one LMDB of raw float32
vectors per view with the release's key names; for the configs of the official
DINOv2 release, its exo LMDB `DINOv2_features/lmdb_fullImg` with the TSM key
layout and an ego extraction in the npy or LMDB layout `extract_features`
writes; Ego-Exo4D: `annotations/keystep_{train,val}.json`, `takes.json`,
`features/{omnivore_video,maws_clip_2b}/<take_uid>_<cam_id>_<stream_id>.pt`
as downloaded, or `.npy` where torch is not installed) at the real feature
dimension and sampling of a registered config (default: the DINOv2 1024-D
float16 one of Assembly101, the 1536-D Omnivore one of Ego-Exo4D), with a few
recordings and few frames. It then runs, as a user would,

  tfds build tfds_builders/<name> --config <config> --manual_dir <dir> \
    --data_dir <dir> --file_format=array_record

reads every split back (`exo2ego_jax.data.datasets.open_dataset`, i.e.
`tfds.data_source`) and checks the splits, the (T, D) shapes and dtypes, and
the features and labels of every recording against what was written. With a
release config it also gives `tfds build` three bad inputs (an exo LMDB in
another key layout, ego features of another backbone's dimension, an ego
video 31 frames longer than its exo partner) and checks that each fails with
one last line `error: <file>: ...`. Multi-view configs (every exo camera in
one example) get every camera's LMDB (Assembly101) or the takes' two exo
cameras (Ego-Exo4D), and their `exo_views`, `exo_present` and
`exo_view_ids` are checked too. `--all` checks every registered config of
both builders. Prints a summary per config; exits with status 1 and a message
naming the problem on any failure. Takes about 6 s per build (mostly
TensorFlow's start-up in `tfds`).
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
  sys.path.insert(0, REPO_ROOT)

from exo2ego_jax.data.constants import SPLITS  # noqa: E402


class CheckError(Exception):
  """A failed check; the message says what differs."""


def _check(condition: bool, message: str):
  if not condition:
    raise CheckError(message)


def _vector(dim: int, *ids: int) -> np.ndarray:
  """A recognisable float32 feature vector of (source ids..., frame)."""
  return (
    np.random.default_rng(list(ids)).standard_normal(dim).astype(np.float32)
  )


# ------------------------------------------------------------------------------------------------
# Assembly101: coarse annotations and per-view LMDBs.


A101_EXO, A101_EGO = "C10119_rgb", "HMC_84358933_mono10bit"
A101_CLASSES = [
  "attach chassis",
  "screw chassis",
  "attach arm connector",
  "detach arm connector",
]
A101_RECORDINGS = [
  "nusar-2021_action_both_9011-a01_9011_user_id_2021-02-01_153724",
  "nusar-2021_action_both_9012-b06b_9012_user_id_2021-02-02_100000",
  "nusar-2021_action_both_9013-c14a_9013_user_id_2021-02-03_100000",
  "nusar-2021_action_both_9014-a30_9014_user_id_2021-02-04_132852",
]
A101_FRAMES = 48  # feature frames 0..47 (releases: the video's frames 1..48)
# video (annotation name) -> (public split list, segments (start, end, class), end exclusive).
# Both videos of a recording are frame ranges of one recording, so they share its features.
A101_VIDEOS = {
  f"assembly_{A101_RECORDINGS[0]}": ("train", [(6, 18, 0), (18, 30, 2)]),
  f"disassembly_{A101_RECORDINGS[0]}": ("train", [(31, 40, 3), (40, 46, 1)]),
  f"assembly_{A101_RECORDINGS[1]}": ("train", [(1, 24, 1)]),
  f"assembly_{A101_RECORDINGS[2]}": ("val", [(4, 16, 2), (16, 40, 1)]),
  f"assembly_{A101_RECORDINGS[3]}": ("val", [(10, 45, 0)]),
}
A101_LAYOUTS = {  # feature_type -> (dim, LMDB folder, key of (video, recording, view, frame))
  "tsm": (
    2048,
    "TSM_features",
    lambda video, rec, view, frame: f"{rec}/{view}/{view}_{frame:010d}.jpg",
  ),
  "dinov2": (
    1024,
    "DINOv2_features",
    lambda video, rec, view, frame: f"{video}_{frame:010d}.jpg",
  ),
  # The official DINOv2_features.zip: exo only, TSM keys, frames from 1.
  "dinov2_vitg14": (
    1536,
    "DINOv2_features/lmdb_fullImg",
    lambda video, rec, view, frame: f"{rec}/{view}/{view}_{frame:010d}.jpg",
  ),
}
# Where the release configs read the user's ego extraction (README's recipe:
# extract_features --out <manual_dir>/ego_features --view <ego view>).
A101_EGO_DIR = "ego_features"


def _a101_view_id(view: str) -> int:
  """Seed id of a view's features: 0 for A101_EXO, 1 for A101_EGO, the
  camera number + 2 for the other cameras of the multi-view configs."""
  if view in (A101_EXO, A101_EGO):
    return int(view == A101_EGO)
  return 2 + int("".join(c for c in view if c.isdigit()))


def _a101_features(
  dim: int, recording: str, view: str, frame: int
) -> np.ndarray:
  return _vector(
    dim, A101_RECORDINGS.index(recording), _a101_view_id(view), frame
  )


def _write_lmdb(path: str, items) -> None:
  """An LMDB environment at `path` of (key, float32 vector) items."""
  import lmdb  # pylint: disable=import-outside-toplevel

  os.makedirs(path)
  env = lmdb.open(path, map_size=1 << 30)
  with env.begin(write=True) as txn:
    for key, vector in items:
      txn.put(key.encode(), vector.tobytes())
  env.close()


def _write_a101_annotations(root: str) -> None:
  """coarse-annotations/ of the public layout, default splits (no splits/)."""
  annotations = os.path.join(root, "coarse-annotations")
  os.makedirs(os.path.join(annotations, "coarse_labels"))
  os.makedirs(os.path.join(annotations, "coarse_splits"))
  with open(os.path.join(annotations, "actions.csv"), "w") as f:
    f.write("action_id,verb_id,noun_id,action_cls,verb_cls,noun_cls\n")
    for i, name in enumerate(A101_CLASSES):
      verb, noun = name.split(" ", 1)
      f.write(f"{i},{i},{i},{name},{verb},{noun}\n")
  for video, (_, segments) in A101_VIDEOS.items():
    with open(
      os.path.join(annotations, "coarse_labels", f"{video}.txt"), "w"
    ) as f:
      f.writelines(
        f"{s:09d}\t{e:09d}\t{A101_CLASSES[c]}\n" for s, e, c in segments
      )
  for part in ("train", "val"):
    for task in ("assembly", "disassembly"):
      lines = [
        f"{v}.txt\tnotshared\ta01\texcavator\n"
        for v, (p, _) in A101_VIDEOS.items()
        if p == part and v.startswith(task + "_")
      ]
      with open(
        os.path.join(annotations, "coarse_splits", f"{part}_coarse_{task}.txt"),
        "w",
      ) as f:
        f.writelines(lines)


def write_assembly101(
  root: str, feature_type: str, exo_views: tuple[str, ...] = (A101_EXO,)
):
  """The public Assembly101 layout: annotations and one LMDB per view."""
  dim, folder, key = A101_LAYOUTS[feature_type]
  _write_a101_annotations(root)
  for view in (*exo_views, A101_EGO):
    _write_lmdb(
      os.path.join(root, folder, view),
      [
        (
          key(video, video.split("_", 1)[1], view, frame),
          _a101_features(dim, video.split("_", 1)[1], view, frame),
        )
        for video in A101_VIDEOS
        for frame in range(A101_FRAMES)
      ],
    )


def write_assembly101_release(
  root: str,
  ego_format: str,
  exo_layout: str = "dinov2_vitg14",
  ego_dim: int | None = None,
  ego_extra_frames: int = 0,
):
  """The official DINOv2 release's exo LMDB (frames 1..A101_FRAMES, as its
  jpg names count them) and an ego extraction of every recording as
  `extract_features --format npy|lmdb` writes it for `<recording>.mp4`.

  Bad inputs for the refusal checks: `exo_layout` another layout's keys (in
  the release's folder), `ego_dim` another backbone's dimension,
  `ego_extra_frames` an ego video that many frames longer.
  """
  # extract_features's own key function: the builder must read what it writes.
  from exo2ego_jax.backbone.features import lmdb_key  # pylint: disable=import-outside-toplevel

  dim, folder, _ = A101_LAYOUTS["dinov2_vitg14"]
  key = A101_LAYOUTS[exo_layout][2]
  ego_dim = ego_dim or dim
  _write_a101_annotations(root)
  recordings = sorted({v.split("_", 1)[1]: v for v in A101_VIDEOS}.items())
  frames = range(1, A101_FRAMES + 1)
  _write_lmdb(
    os.path.join(root, folder),
    [
      (key(video, rec, A101_EXO, f), _a101_features(dim, rec, A101_EXO, f))
      for rec, video in recordings
      for f in frames
    ],
  )
  ego_dir = os.path.join(root, A101_EGO_DIR, A101_EGO)
  ego_frames = range(1, A101_FRAMES + ego_extra_frames + 1)
  if ego_format == "lmdb":
    _write_lmdb(
      ego_dir,
      [
        (
          lmdb_key(rec, f - 1).decode(),
          _a101_features(ego_dim, rec, A101_EGO, f),
        )
        for rec, _ in recordings
        for f in ego_frames
      ],
    )
    return
  os.makedirs(ego_dir)
  for rec, _ in recordings:  # row i: the video's frame i + 1
    np.save(
      os.path.join(ego_dir, f"{rec}.npy"),
      np.stack([_a101_features(ego_dim, rec, A101_EGO, f) for f in ego_frames]),
    )


def expected_assembly101(dim: int) -> dict:
  """{video: (public split, exo, ego, label names)} of the examples."""
  out = {}
  for video, (part, segments) in A101_VIDEOS.items():
    recording = video.split("_", 1)[1]
    frames = range(segments[0][0], segments[-1][1])
    out[video] = (
      part,
      np.stack([_a101_features(dim, recording, A101_EXO, f) for f in frames]),
      np.stack([_a101_features(dim, recording, A101_EGO, f) for f in frames]),
      [A101_CLASSES[c] for s, e, c in segments for _ in range(s, e)],
    )
  return out


def expected_assembly101_views(dim: int, exo_views: tuple[str, ...]) -> dict:
  """{video: (exo_views (K, T, D), exo_present (K, T), exo_view_ids)} of a
  multi-view config: every camera has every frame."""
  out = {}
  for video, (_, segments) in A101_VIDEOS.items():
    recording = video.split("_", 1)[1]
    frames = range(segments[0][0], segments[-1][1])
    out[video] = (
      np.stack(
        [
          [_a101_features(dim, recording, view, f) for f in frames]
          for view in exo_views
        ]
      ),
      np.ones((len(exo_views), len(frames)), np.int32),
      ",".join(exo_views),
    )
  return out


# ------------------------------------------------------------------------------------------------
# Ego-Exo4D: keystep JSON, takes.json and per-take, per-camera feature files.


EGOEXO_SECONDS = 20 * 16 / 30  # length of every take's features (10.7 s)
EGOEXO_CAMERAS = ("cam01_0", "cam02_0", "aria01_rgb")
# take name -> (public split, best_exo, segments (start s, end s, step_unique_id, step_name))
EGOEXO_TAKES = {
  "georgiatech_covid_01_1": (
    "train",
    "cam02",
    [(1.0, 4.0, 4001, "Open the test kit"), (4.0, 7.5, 4002, "Swab nose")],
  ),
  "upenn_cooking_02_3": ("train", "cam01", [(0.2, 3.3, 4002, "Swab nose")]),
  "cmu_bike_03_2": ("val", "cam01", [(2.5, 9.0, 4001, "Open the test kit")]),
  "iiith_cooking_04_1": (
    "val",
    "cam02",
    [(0.0, 1.5, 4013, "Stir the pot"), (6.0, 10.0, 4002, "Swab nose")],
  ),
}
# feature folder -> (steps per second, time of step 0 in seconds) of the
# release: Omnivore, 32-frame windows every 16 frames (step time: the window's
# centre); MAWS CLIP 2B, one feature per frame (step time: the frame's).
EGOEXO_SAMPLING = {
  "features/omnivore_video": (30 / 16, 16 / 30),
  "features/maws_clip_2b": (30.0, 0.0),
}


def _egoexo_steps(feature_dir: str) -> int:
  return round(EGOEXO_SECONDS * EGOEXO_SAMPLING[feature_dir][0])


def _take_uid(name: str) -> str:
  return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


def _egoexo_features(dim: int, name: str, camera: str, step: int) -> np.ndarray:
  return _vector(
    dim,
    100 + list(EGOEXO_TAKES).index(name),
    EGOEXO_CAMERAS.index(camera),
    step,
  )


def write_egoexo4d(
  root: str, dim: int, feature_dir: str, file_type: str = "pt"
):
  """The Ego-Exo4D download layout: one `torch.save`d (steps, D) tensor per
  take and camera, and the extraction's yaml beside them (as `ego4d`'s
  extract_features writes them); `file_type="npy"`: as after converting."""
  os.makedirs(os.path.join(root, "annotations"))
  features = os.path.join(root, feature_dir)
  steps = _egoexo_steps(feature_dir)
  os.makedirs(features)
  for part in ("train", "val"):
    annotations = {}
    for name, (p, _, segments) in EGOEXO_TAKES.items():
      if p != part:
        continue
      uid = _take_uid(name)
      annotations[uid] = {
        "take_uid": uid,
        "take_name": name,
        "scenario": "Covid-19 Rapid Antigen Test"
        if "covid" in name
        else "Cooking",
        "segments": [
          {
            "start_time": s,
            "end_time": e,
            "step_id": sid % 1000,
            "step_unique_id": sid,
            "step_name": step,
            "step_description": step + ".",
            "is_essential": True,
          }
          for s, e, sid, step in segments
        ],
      }
    with open(
      os.path.join(root, "annotations", f"keystep_{part}.json"), "w"
    ) as f:
      json.dump({"annotations": annotations, "taxonomy": {}}, f)
  with open(os.path.join(root, "takes.json"), "w") as f:
    json.dump(
      [
        {
          "take_uid": _take_uid(name),
          "take_name": name,
          "best_exo": best,
          "duration_sec": EGOEXO_SECONDS,
        }
        for name, (_, best, _) in EGOEXO_TAKES.items()
      ],
      f,
    )
  with open(os.path.join(features, "config.yaml"), "w") as f:
    window = 32 if "omnivore" in feature_dir else 1
    f.write(
      f"inference_config:\n  fps: 30\n  frame_window: {window}\n"
      f"  stride: {round(30 / EGOEXO_SAMPLING[feature_dir][0])}\n"
    )
  for name in EGOEXO_TAKES:
    for camera in EGOEXO_CAMERAS:
      values = np.stack(
        [_egoexo_features(dim, name, camera, t) for t in range(steps)]
      )
      path = os.path.join(features, f"{_take_uid(name)}_{camera}")
      if file_type == "pt":
        import torch  # pylint: disable=import-outside-toplevel

        torch.save(torch.from_numpy(values), path + ".pt")
      else:
        np.save(path + ".npy", values)


def expected_egoexo4d(dim: int, exo_camera: str, feature_dir: str) -> dict:
  """{video_id: (public split, exo, ego, label names)}: step t is at offset +
  t / fps (a step at a segment's start belongs to it).

  `exo_camera` "best_exo" gives one example per take (video_id = take name),
  "all" one per exo camera (`<take name>/<cam_id>`).
  """
  fps, offset = EGOEXO_SAMPLING[feature_dir]
  steps = _egoexo_steps(feature_dir)
  out = {}
  for name, (part, best, segments) in EGOEXO_TAKES.items():
    labels = []
    for t in range(steps):
      time_s = offset + t / fps + 1e-9  # not below a start it equals
      labels.append(
        next(
          (step for s, e, _, step in segments if s <= time_s < e), "background"
        )
      )
    ego = np.stack(
      [_egoexo_features(dim, name, "aria01_rgb", t) for t in range(steps)]
    )
    if exo_camera == "all":
      cameras = {
        f"{name}/{c[:-2]}": c for c in EGOEXO_CAMERAS if c.endswith("_0")
      }
    else:
      cameras = {name: f"{best if exo_camera == 'best_exo' else exo_camera}_0"}
    for video, camera in cameras.items():
      exo = np.stack(
        [_egoexo_features(dim, name, camera, t) for t in range(steps)]
      )
      out[video] = (part, exo, ego, labels)
  return out


def expected_egoexo4d_views(
  dim: int, exo_camera: str, slots: int, feature_dir: str
) -> dict:
  """{take name: (exo_views, exo_present, exo_view_ids)} of a multi-view
  config: view 0 the take's best_exo (or `exo_camera`), then its other exo
  cameras by id, the remaining views absent."""
  steps = _egoexo_steps(feature_dir)
  exo = sorted(c[:-2] for c in EGOEXO_CAMERAS if c.endswith("_0"))
  out = {}
  for name, (_, best, _) in EGOEXO_TAKES.items():
    main = best if exo_camera == "best_exo" else exo_camera
    cameras = [main] + [c for c in exo if c != main]
    cameras += [""] * (slots - len(cameras))
    views = np.zeros((slots, steps, dim), np.float32)
    present = np.zeros((slots, steps), np.int32)
    for k, camera in enumerate(cameras):
      if camera:
        views[k] = [
          _egoexo_features(dim, name, f"{camera}_0", t) for t in range(steps)
        ]
        present[k] = 1
    out[name] = (views, present, ",".join(cameras))
  return out


# ------------------------------------------------------------------------------------------------
# Build with the command line, read back, compare.


def _registered_config(name: str, config_name: str):
  """The BuilderConfig `config_name` of BUILDER_CONFIGS of tfds_builders/<name>."""
  if name == "assembly101_sync":
    from tfds_builders.assembly101_sync import Builder  # pylint: disable=import-outside-toplevel
  else:
    from tfds_builders.egoexo4d_keystep import Builder  # pylint: disable=import-outside-toplevel
  configs = {c.name: c for c in Builder.BUILDER_CONFIGS}
  _check(
    config_name in configs,
    f"{name}: {config_name!r} is not a registered config "
    f"(BUILDER_CONFIGS: {sorted(configs)})",
  )
  return configs[config_name]


def _tfds_build(
  tfds_cmd: str, name: str, config: str, manual_dir: str, data_dir: str
) -> tuple[subprocess.CompletedProcess, float]:
  """Runs `tfds build` in the repository root; returns it and its wall time."""
  cmd = [
    tfds_cmd,
    "build",
    f"tfds_builders/{name}",
    "--config",
    config,
    "--manual_dir",
    manual_dir,
    "--data_dir",
    data_dir,
    "--file_format=array_record",
  ]
  print("  $", " ".join(cmd), flush=True)
  start = time.perf_counter()
  result = subprocess.run(
    cmd, cwd=REPO_ROOT, capture_output=True, text=True, check=False
  )
  return result, time.perf_counter() - start


def run_tfds_build(
  tfds_cmd: str, name: str, config: str, manual_dir: str, data_dir: str
) -> float:
  """Runs `tfds build`, which must succeed; returns its wall time in seconds."""
  result, seconds = _tfds_build(tfds_cmd, name, config, manual_dir, data_dir)
  if result.returncode:
    tail = "\n".join((result.stdout + result.stderr).splitlines()[-40:])
    raise CheckError(
      f"{name}: `tfds build` exited with status {result.returncode}; "
      f"last lines of its output:\n{tail}"
    )
  return seconds


def check_built(
  name: str, config, data_dir: str, expected: dict, views: dict | None = None
) -> dict:
  """Reads every split back and compares it with `expected` (and a
  multi-view config's `exo_views`, `exo_present` and `exo_view_ids` with
  `views`); returns record counts."""
  from exo2ego_jax.data import datasets  # pylint: disable=import-outside-toplevel
  import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel

  full_name = f"{name}/{config.name}"
  builder = tfds.builder(full_name, data_dir=data_dir)
  # Check this before open_dataset, which would build a missing dataset from Python.
  _check(
    builder.is_prepared(),
    f"{full_name}: `tfds build` exited with status 0 but "
    f"left no prepared dataset in {data_dir}",
  )
  info, sources = datasets.open_dataset(full_name, data_dir)
  _check(
    tuple(sorted(sources)) == tuple(sorted(SPLITS)),
    f"{full_name}: splits {sorted(sources)}, expected {sorted(SPLITS)}",
  )
  _check(
    info.feature_dim == config.feature_dim,
    f"{full_name}: info feature_dim {info.feature_dim}, config {config.feature_dim}",
  )
  metadata = builder.info.metadata
  _check(
    not metadata["repairs"]["counts"],
    f"{full_name}: unexpected repairs {metadata['repairs']['counts']}",
  )
  if name == "assembly101_sync":
    _check(
      metadata["class_names"] == A101_CLASSES,
      f"{full_name}: class_names "
      f"{metadata['class_names']}, expected those of actions.csv {A101_CLASSES}",
    )
  dtype = np.dtype(config.storage_dtype)
  counts, seen = {}, {}
  for split in SPLITS:
    source = sources[split]
    counts[split] = len(source)
    _check(len(source) > 0, f"{full_name}: split `{split}` is empty")
    for i in range(len(source)):
      record = source[i]
      video = record["video_id"].decode()
      _check(
        video in expected, f"{full_name}/{split}: unexpected video {video!r}"
      )
      _check(
        video not in seen,
        f"{full_name}: {video} is in `{seen.get(video)}` and `{split}`",
      )
      seen[video] = split
      part, exo, ego, labels = expected[video]
      length = len(labels)
      for view, want in (("exo", exo), ("ego", ego)):
        got = record[view]
        _check(
          got.shape == (length, config.feature_dim) and got.dtype == dtype,
          f"{full_name}/{split}/{video}: {view} is {got.dtype}{got.shape}, "
          f"expected {dtype}{(length, config.feature_dim)}",
        )
        _check(
          np.array_equal(got, want.astype(dtype)),
          f"{full_name}/{split}/{video}: {view} features differ from those "
          "written to the manual dir",
        )
      if views is not None:
        want_views, want_present, want_ids = views[video]
        got = record["exo_views"]
        _check(
          got.shape == want_views.shape and got.dtype == dtype,
          f"{full_name}/{split}/{video}: exo_views is {got.dtype}{got.shape}, "
          f"expected {dtype}{want_views.shape}",
        )
        _check(
          np.array_equal(got, want_views.astype(dtype))
          and np.array_equal(record["exo_present"], want_present)
          and record["exo_view_ids"].decode() == want_ids,
          f"{full_name}/{split}/{video}: exo_views, exo_present or "
          "exo_view_ids differ from the views written to the manual dir",
        )
      names = metadata["class_names"]
      got_labels = [
        names[c] if c >= 0 else "<unscored>" for c in record["labels"]
      ]
      _check(
        got_labels == labels,
        f"{full_name}/{split}/{video}: labels {got_labels} != {labels}",
      )
      _check(
        np.array_equal(record["ego_labels"], record["labels"]),
        f"{full_name}/{split}/{video}: ego_labels differ from labels",
      )
      want_split = {
        "train": ("train", "sync_pairs"),
        "val": ("validation", "test"),
      }[part]
      _check(
        split in want_split,
        f"{full_name}: {video} of the public `{part}` list "
        f"is in `{split}`, expected one of {want_split}",
      )
  missing = sorted(set(expected) - set(seen))
  _check(
    not missing, f"{full_name}: recordings missing from every split: {missing}"
  )
  for split in SPLITS:  # the videos of a recording stay in one split
    recordings = {
      sources[split][i]["recording_id"] for i in range(len(sources[split]))
    }
    for other in SPLITS[SPLITS.index(split) + 1 :]:
      shared = recordings & {
        sources[other][i]["recording_id"] for i in range(len(sources[other]))
      }
      _check(
        not shared,
        f"{full_name}: recordings {sorted(shared)} are in both "
        f"`{split}` and `{other}`",
      )
  return counts


def _torch_available() -> bool:
  return importlib.util.find_spec("torch") is not None


def check_builder(
  name: str, config_name: str, tfds_cmd: str, workdir: str, file_type: str
) -> dict:
  """Writes the manual dir, runs `tfds build`, checks the result; returns a summary."""
  from tfds_builders.assembly101_sync import Assembly101MultiviewConfig  # pylint: disable=import-outside-toplevel
  from tfds_builders.assembly101_sync import Assembly101ReleaseConfig  # pylint: disable=import-outside-toplevel
  from tfds_builders.egoexo4d_keystep import EgoExo4DMultiviewConfig  # pylint: disable=import-outside-toplevel

  start = time.perf_counter()
  views = None
  config = _registered_config(name, config_name)
  root = os.path.join(workdir, name, config_name)
  if os.path.exists(root):
    shutil.rmtree(root)
  manual_dir, data_dir = (
    os.path.join(root, "manual"),
    os.path.join(root, "data"),
  )
  layout = ""
  if name == "assembly101_sync":
    dim = A101_LAYOUTS[config.feature_type][0]
    _check(
      config.feature_dim == dim,
      f"{config_name}: feature_dim "
      f"{config.feature_dim}, the public {config.feature_type} release has {dim}",
    )
    if isinstance(config, Assembly101ReleaseConfig):
      write_assembly101_release(manual_dir, config.ego_format)
      layout = f"release exo LMDB + ego {config.ego_format}"
    elif isinstance(config, Assembly101MultiviewConfig):
      write_assembly101(manual_dir, config.feature_type, config.exo_views)
      views = expected_assembly101_views(dim, config.exo_views)
      layout = f"one LMDB per view, {len(config.exo_views)} exo views"
    else:
      write_assembly101(manual_dir, config.feature_type)
      layout = "one LMDB per view"
    expected = expected_assembly101(dim)
  else:
    _check(
      config.feature_dir in EGOEXO_SAMPLING,
      f"{config_name}: feature_dir {config.feature_dir!r} is not a release "
      f"this check knows ({sorted(EGOEXO_SAMPLING)})",
    )
    fps, offset = EGOEXO_SAMPLING[config.feature_dir]
    _check(
      (config.feature_fps, config.feature_time_offset) == (fps, offset),
      f"{config_name}: feature_fps {config.feature_fps}, feature_time_offset "
      f"{config.feature_time_offset}; the release {config.feature_dir} has "
      f"{fps} and {offset}",
    )
    write_egoexo4d(
      manual_dir, config.feature_dim, config.feature_dir, file_type
    )
    expected = expected_egoexo4d(
      config.feature_dim, config.exo_camera, config.feature_dir
    )
    layout = f".{file_type} features"
    if isinstance(config, EgoExo4DMultiviewConfig):
      views = expected_egoexo4d_views(
        config.feature_dim,
        config.exo_camera,
        config.exo_slots,
        config.feature_dir,
      )
      layout += f", {config.exo_slots} exo views"
  build_seconds = run_tfds_build(
    tfds_cmd, name, config_name, manual_dir, data_dir
  )
  counts = check_built(name, config, data_dir, expected, views)
  return {
    "config": config_name,
    "layout": layout,
    "feature_dim": config.feature_dim,
    "storage_dtype": config.storage_dtype,
    "records": counts,
    "build_s": build_seconds,
    "total_s": time.perf_counter() - start,
  }


def check_refusals(config_name: str, tfds_cmd: str, workdir: str) -> list[str]:
  """Bad inputs to a release config of assembly101_sync: `tfds build` must
  fail with a last line `error: <file>: ...` naming the bad file. Returns
  those lines."""
  config = _registered_config("assembly101_sync", config_name)
  ego_dir = os.path.join(A101_EGO_DIR, A101_EGO)
  first = sorted(v.split("_", 1)[1] for v in A101_VIDEOS)[0]
  ego_file = (
    ego_dir if config.ego_format == "lmdb" else f"{ego_dir}/{first}.npy"
  )
  exo_lmdb = A101_LAYOUTS["dinov2_vitg14"][1]
  cases = {  # name -> (writer arguments, bad file, start of the message after it)
    "exo LMDB in the paper's key layout": (
      dict(exo_layout="dinov2"),
      exo_lmdb,
      ": key 'assembly_",
    ),
    "ego features of another backbone (1024-D)": (
      dict(ego_dim=1024),
      ego_file,
      ": key " if config.ego_format == "lmdb" else ": 1024-D ego features",
    ),
    "ego video 31 frames longer than its exo partner": (
      dict(ego_extra_frames=31),
      ego_file,
      "",  # the message starts with the video, then names the file
    ),
  }
  lines = []
  for case, (kwargs, bad, start) in cases.items():
    root = os.path.join(workdir, "refusals", case.split()[0] + str(len(lines)))
    if os.path.exists(root):
      shutil.rmtree(root)
    manual_dir = os.path.join(root, "manual")
    write_assembly101_release(manual_dir, config.ego_format, **kwargs)
    result, _ = _tfds_build(
      tfds_cmd,
      "assembly101_sync",
      config_name,
      manual_dir,
      os.path.join(root, "data"),
    )
    output = (result.stdout + result.stderr).strip().splitlines()
    last = output[-1] if output else ""
    path = os.path.join(manual_dir, bad)
    _check(
      result.returncode != 0,
      f"{config_name}, {case}: `tfds build` succeeded; it must refuse",
    )
    if start:
      ok = last.startswith(f"error: {path}{start}")
    else:
      ok = last.startswith("error: ") and f" {path} " in last
    _check(
      ok and "max_trim_frames" in last
      if kwargs.get("ego_extra_frames")
      else ok,
      f"{config_name}, {case}: the last line of `tfds build` is {last!r}, "
      f"expected `error: ...` naming {path}",
    )
    built = glob.glob(
      os.path.join(root, "data", "**", "dataset_info.json"), recursive=True
    )
    _check(
      not built,
      f"{config_name}, {case}: a refused build left a dataset: {built}",
    )
    lines.append(f"{case}: {last}")
  return lines


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(
    "--workdir",
    default=None,
    help="where the manual and data dirs go (default: a temporary "
    "dir, removed after a successful run)",
  )
  parser.add_argument(
    "--tfds", default="tfds", help="the tfds command (default: `tfds` on PATH)"
  )
  parser.add_argument(
    "--assembly101_config",
    action="append",
    help="registered assembly101_sync config to build (repeatable; default "
    "dinov2_c10119_hmc84358933_fp16)",
  )
  parser.add_argument(
    "--egoexo4d_config",
    action="append",
    help="registered egoexo4d_keystep config to build (repeatable; default "
    "omnivore_best_exo)",
  )
  parser.add_argument(
    "--all",
    action="store_true",
    help="build every registered config of both builders",
  )
  parser.add_argument(
    "--egoexo4d_files",
    choices=("pt", "npy"),
    default="pt" if _torch_available() else "npy",
    help="Ego-Exo4D feature files as downloaded (.pt, needs torch; the "
    "default where torch is installed) or converted (.npy)",
  )
  args = parser.parse_args()
  tfds_cmd = shutil.which(args.tfds)
  if tfds_cmd is None:
    sys.exit(
      f"FAILED: no `{args.tfds}` command found; install the build extra "
      "(pip install -e \".[build]\") or pass --tfds"
    )
  if args.all:
    from tfds_builders import assembly101_sync, egoexo4d_keystep  # pylint: disable=import-outside-toplevel

    builds = [
      ("assembly101_sync", c.name)
      for c in assembly101_sync.Builder.BUILDER_CONFIGS
    ] + [
      ("egoexo4d_keystep", c.name)
      for c in egoexo4d_keystep.Builder.BUILDER_CONFIGS
    ]
  else:
    builds = [
      ("assembly101_sync", c)
      for c in args.assembly101_config or ["dinov2_c10119_hmc84358933_fp16"]
    ] + [
      ("egoexo4d_keystep", c)
      for c in args.egoexo4d_config or ["omnivore_best_exo"]
    ]
  workdir = args.workdir or tempfile.mkdtemp(prefix="check_cli_build_")
  os.makedirs(workdir, exist_ok=True)
  failed = False
  release = None
  for name, config in builds:
    print(f"{name}:", flush=True)
    try:
      s = check_builder(name, config, tfds_cmd, workdir, args.egoexo4d_files)
    except Exception as e:  # pylint: disable=broad-except
      failed = True
      kind = "" if isinstance(e, CheckError) else f"{type(e).__name__}: "
      print(f"  FAILED: {kind}{e}", flush=True)
      continue
    if s["layout"].startswith("release") and release is None:
      release = config
    records = ", ".join(f"{k} {v}" for k, v in s["records"].items())
    print(
      f"  ok: config {s['config']} ({s['layout']}), D={s['feature_dim']} "
      f"{s['storage_dtype']}; records: {records}; tfds build "
      f"{s['build_s']:.1f} s, total {s['total_s']:.1f} s",
      flush=True,
    )
  if release is not None:  # once: the checks do not depend on the dtype
    print(f"assembly101_sync bad inputs ({release}):", flush=True)
    try:
      for line in check_refusals(release, tfds_cmd, workdir):
        print(f"  refused: {line}", flush=True)
    except Exception as e:  # pylint: disable=broad-except
      failed = True
      kind = "" if isinstance(e, CheckError) else f"{type(e).__name__}: "
      print(f"  FAILED: {kind}{e}", flush=True)
  if failed:
    print(f"FAILED; the manual and data dirs are in {workdir}")
    sys.exit(1)
  if args.workdir is None:
    shutil.rmtree(workdir)
  print("All command-line builds OK.")


if __name__ == "__main__":
  main()
