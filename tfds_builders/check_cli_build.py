r"""Checks that `tfds build --manual_dir` works for the real-data builders.

  pip install -e ".[build]"      # `tfds build` needs TensorFlow (the `build` extra)
  python tfds_builders/check_cli_build.py [--workdir DIR] [--tfds PATH] \
    [--assembly101_config NAME] [--egoexo4d_config NAME]

For `assembly101_sync` and `egoexo4d_keystep` it writes a small manual dir in
the public layout (Assembly101: `coarse-annotations/` with `actions.csv`,
tab-separated `coarse_labels/` and `coarse_splits/`, one LMDB of raw float32
vectors per view with the release's key names; Ego-Exo4D:
`annotations/keystep_{train,val}.json`, `takes.json`,
`features/omnivore_video/<take_uid>_<cam_id>_<stream_id>.npy`) at the real
feature dimension of a registered config (default: the DINOv2 1024-D float16
one of Assembly101, the 1536-D Omnivore one of Ego-Exo4D), with a few
recordings and few frames. It then runs, as a user would,

  tfds build tfds_builders/<name> --config <config> --manual_dir <dir> \
    --data_dir <dir> --file_format=array_record

reads every split back (`exo2ego_jax.data.datasets.open_dataset`, i.e.
`tfds.data_source`) and checks the splits, the (T, D) shapes and dtypes, and
the features and labels of every recording against what was written. Prints a
summary per builder; exits with status 1 and a message naming the problem on
any failure. Takes well under a minute (mostly TensorFlow's start-up in `tfds`).
"""

from __future__ import annotations

import argparse
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
A101_FRAMES = 48  # feature frames 0..47 of every recording
# video (annotation name) -> (public split list, segments (start, end, class), end exclusive).
# Both videos of a recording are frame ranges of one recording, so they share its features.
A101_VIDEOS = {
  f"assembly_{A101_RECORDINGS[0]}": ("train", [(6, 18, 0), (18, 30, 2)]),
  f"disassembly_{A101_RECORDINGS[0]}": ("train", [(31, 40, 3), (40, 46, 1)]),
  f"assembly_{A101_RECORDINGS[1]}": ("train", [(0, 24, 1)]),
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
}


def _a101_features(
  dim: int, recording: str, view: str, frame: int
) -> np.ndarray:
  return _vector(
    dim, A101_RECORDINGS.index(recording), int(view == A101_EGO), frame
  )


def write_assembly101(root: str, feature_type: str):
  """The public Assembly101 layout, default splits (no splits/ folder)."""
  import lmdb  # pylint: disable=import-outside-toplevel

  dim, folder, key = A101_LAYOUTS[feature_type]
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
  for view in (A101_EXO, A101_EGO):
    path = os.path.join(root, folder, view)
    os.makedirs(path)
    env = lmdb.open(path, map_size=1 << 30)
    with env.begin(write=True) as txn:
      for video in A101_VIDEOS:
        recording = video.split("_", 1)[1]
        for frame in range(A101_FRAMES):
          txn.put(
            key(video, recording, view, frame).encode(),
            _a101_features(dim, recording, view, frame).tobytes(),
          )
    env.close()


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


# ------------------------------------------------------------------------------------------------
# Ego-Exo4D: keystep JSON, takes.json and per-take, per-camera feature files.


EGOEXO_STEPS = (
  20  # feature steps per camera (about 10.7 s at 30/16 steps per second)
)
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
EGOEXO_FPS, EGOEXO_OFFSET = (
  30 / 16,
  16 / 30,
)  # Omnivore: 32-frame windows every 16 frames


def _take_uid(name: str) -> str:
  return str(uuid.uuid5(uuid.NAMESPACE_URL, name))


def _egoexo_features(dim: int, name: str, camera: str, step: int) -> np.ndarray:
  return _vector(
    dim,
    100 + list(EGOEXO_TAKES).index(name),
    EGOEXO_CAMERAS.index(camera),
    step,
  )


def write_egoexo4d(root: str, dim: int):
  """The Ego-Exo4D download layout (features as .npy, as after converting the .pt)."""
  os.makedirs(os.path.join(root, "annotations"))
  features = os.path.join(root, "features", "omnivore_video")
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
          "duration_sec": EGOEXO_STEPS * 16 / 30,
        }
        for name, (_, best, _) in EGOEXO_TAKES.items()
      ],
      f,
    )
  for name in EGOEXO_TAKES:
    for camera in EGOEXO_CAMERAS:
      np.save(
        os.path.join(features, f"{_take_uid(name)}_{camera}.npy"),
        np.stack(
          [_egoexo_features(dim, name, camera, t) for t in range(EGOEXO_STEPS)]
        ),
      )


def expected_egoexo4d(dim: int, exo_camera: str) -> dict:
  """{video_id: (public split, exo, ego, label names)}: step t is at offset + t / fps.

  `exo_camera` "best_exo" gives one example per take (video_id = take name),
  "all" one per exo camera (`<take name>/<cam_id>`).
  """
  out = {}
  for name, (part, best, segments) in EGOEXO_TAKES.items():
    labels = []
    for t in range(EGOEXO_STEPS):
      time_s = EGOEXO_OFFSET + t / EGOEXO_FPS
      labels.append(
        next(
          (step for s, e, _, step in segments if s <= time_s < e), "background"
        )
      )
    ego = np.stack(
      [
        _egoexo_features(dim, name, "aria01_rgb", t)
        for t in range(EGOEXO_STEPS)
      ]
    )
    if exo_camera == "all":
      cameras = {
        f"{name}/{c[:-2]}": c for c in EGOEXO_CAMERAS if c.endswith("_0")
      }
    else:
      cameras = {name: f"{best if exo_camera == 'best_exo' else exo_camera}_0"}
    for video, camera in cameras.items():
      exo = np.stack(
        [_egoexo_features(dim, name, camera, t) for t in range(EGOEXO_STEPS)]
      )
      out[video] = (part, exo, ego, labels)
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


def run_tfds_build(
  tfds_cmd: str, name: str, config: str, manual_dir: str, data_dir: str
) -> float:
  """Runs `tfds build` in the repository root; returns its wall time in seconds."""
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
  seconds = time.perf_counter() - start
  if result.returncode:
    tail = "\n".join((result.stdout + result.stderr).splitlines()[-40:])
    raise CheckError(
      f"{name}: `tfds build` exited with status {result.returncode}; "
      f"last lines of its output:\n{tail}"
    )
  return seconds


def check_built(name: str, config, data_dir: str, expected: dict) -> dict:
  """Reads every split back and compares it with `expected`; returns record counts."""
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


def check_builder(
  name: str, config_name: str, tfds_cmd: str, workdir: str
) -> dict:
  """Writes the manual dir, runs `tfds build`, checks the result; returns a summary."""
  start = time.perf_counter()
  config = _registered_config(name, config_name)
  root = os.path.join(workdir, name)
  if os.path.exists(root):
    shutil.rmtree(root)
  manual_dir, data_dir = (
    os.path.join(root, "manual"),
    os.path.join(root, "data"),
  )
  if name == "assembly101_sync":
    dim = A101_LAYOUTS[config.feature_type][0]
    _check(
      config.feature_dim == dim,
      f"{config_name}: feature_dim "
      f"{config.feature_dim}, the public {config.feature_type} release has {dim}",
    )
    write_assembly101(manual_dir, config.feature_type)
    expected = expected_assembly101(dim)
  else:
    write_egoexo4d(manual_dir, config.feature_dim)
    expected = expected_egoexo4d(config.feature_dim, config.exo_camera)
  build_seconds = run_tfds_build(
    tfds_cmd, name, config_name, manual_dir, data_dir
  )
  counts = check_built(name, config, data_dir, expected)
  return {
    "config": config_name,
    "feature_dim": config.feature_dim,
    "storage_dtype": config.storage_dtype,
    "records": counts,
    "build_s": build_seconds,
    "total_s": time.perf_counter() - start,
  }


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
    default="dinov2_c10119_hmc84358933_fp16",
    help="registered assembly101_sync config to build",
  )
  parser.add_argument(
    "--egoexo4d_config",
    default="omnivore_best_exo",
    help="registered egoexo4d_keystep config to build",
  )
  args = parser.parse_args()
  tfds_cmd = shutil.which(args.tfds)
  if tfds_cmd is None:
    sys.exit(
      f"FAILED: no `{args.tfds}` command found; install the build extra "
      "(pip install -e \".[build]\") or pass --tfds"
    )
  workdir = args.workdir or tempfile.mkdtemp(prefix="check_cli_build_")
  os.makedirs(workdir, exist_ok=True)
  failed = False
  for name, config in (
    ("assembly101_sync", args.assembly101_config),
    ("egoexo4d_keystep", args.egoexo4d_config),
  ):
    print(f"{name}:", flush=True)
    try:
      s = check_builder(name, config, tfds_cmd, workdir)
    except Exception as e:  # pylint: disable=broad-except
      failed = True
      kind = "" if isinstance(e, CheckError) else f"{type(e).__name__}: "
      print(f"  FAILED: {kind}{e}", flush=True)
      continue
    records = ", ".join(f"{k} {v}" for k, v in s["records"].items())
    print(
      f"  ok: config {s['config']}, D={s['feature_dim']} {s['storage_dtype']}; "
      f"records: {records}; tfds build {s['build_s']:.1f} s, total "
      f"{s['total_s']:.1f} s",
      flush=True,
    )
  if failed:
    print(f"FAILED; the manual and data dirs are in {workdir}")
    sys.exit(1)
  if args.workdir is None:
    shutil.rmtree(workdir)
  print("All command-line builds OK.")


if __name__ == "__main__":
  main()
