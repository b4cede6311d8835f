"""The real-data TFDS builders (assembly101_sync, egoexo4d_keystep, feature_folder).

Each test writes a tiny manual dir in the public formats (LMDB with the real key
layouts, tab-separated coarse annotations, keystep JSON, a feature folder),
builds it with array_record (no TensorFlow) and reads it back.
"""

import importlib.util
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from exo2ego_jax.data import datasets
from exo2ego_jax.data.constants import SPLITS
from tfds_builders import assembly101_sync, egoexo4d_keystep, feature_folder
from tfds_builders.common.annotations import parse_segments, read_class_table
from tfds_builders.common.errors import DataError, MissingData
from tfds_builders.common.repair import RepairPolicy
from tfds_builders.common.splits import hash_partition

D = 4


def _build(builder_cls, config, data_dir, manual_dir, **kwargs):
  builder = builder_cls(
    config=config, data_dir=str(data_dir), file_format="array_record"
  )
  builder.download_and_prepare(
    download_config=tfds.download.DownloadConfig(
      manual_dir=str(manual_dir), **kwargs
    )
  )
  return builder


def _records(name, data_dir):
  """{split: {video_id: record}} read back with tfds.data_source."""
  sources = tfds.data_source(name, data_dir=str(data_dir))
  return {
    split: {r["video_id"].decode(): r for r in source}
    for split, source in sources.items()
  }


def _snapshot(root):
  out = {}
  for dirpath, _, files in os.walk(root):
    for f in files:
      path = os.path.join(dirpath, f)
      with open(path, "rb") as fh:
        out[os.path.relpath(path, root)] = fh.read()
  return out


def _vec(seed, frame):
  """A recognisable feature vector of (source, frame)."""
  return (seed * 1000 + frame + np.arange(D) / 10).astype(np.float32)


# ------------------------------------------------------------------------------------------------
# feature_folder


FF_CLASSES = ["background", "pour water", "stir"]


def _folder(root, videos):
  """videos: {name: dict(split, exo_len, ego_len, labels (text) or None)}."""
  for view in ("exo", "ego"):
    os.makedirs(root / "features" / view, exist_ok=True)
  os.makedirs(root / "labels", exist_ok=True)
  os.makedirs(root / "splits", exist_ok=True)
  (root / "classes.txt").write_text("\n".join(FF_CLASSES) + "\n")
  splits = {s: [] for s in SPLITS}
  for i, (name, v) in enumerate(sorted(videos.items())):
    splits[v["split"]].append(name)
    for view, seed in (("exo", 2 * i + 1), ("ego", 2 * i + 2)):
      n = v[f"{view}_len"]
      np.save(
        root / "features" / view / f"{name}.npy",
        np.array([_vec(seed, t) for t in range(n)], np.float32).reshape(n, D),
      )
    if v.get("labels") is not None:
      (root / "labels" / f"{name}.txt").write_text(v["labels"])
  for s, names in splits.items():
    (root / "splits" / f"{s}.txt").write_text("\n".join(names) + "\n")


FF_VIDEOS = {
  "a": dict(
    split="train", exo_len=12, ego_len=12, labels="0 4 pour water\n4 10 stir\n"
  ),
  "b": dict(split="sync_pairs", exo_len=10, ego_len=10, labels=None),
  "c": dict(
    split="validation",
    exo_len=6,
    ego_len=6,
    labels="stir\nstir\nbackground\npour water\npour water\nstir\n",
  ),
  "d": dict(split="test", exo_len=8, ego_len=8, labels="2\t8\tstir\n"),
}


def _ff_config(name="t4", **kwargs):
  return feature_folder.FeatureFolderConfig(name=name, feature_dim=D, **kwargs)


@pytest.fixture(scope="module")
def ff_built(tmp_path_factory):
  manual = tmp_path_factory.mktemp("ff_manual")
  _folder(manual, FF_VIDEOS)
  data_dir = tmp_path_factory.mktemp("ff_data")
  builder = _build(feature_folder.Builder, _ff_config(), data_dir, manual)
  return manual, data_dir, builder


def test_feature_folder_round_trip(ff_built):
  _, data_dir, _ = ff_built
  records = _records("feature_folder/t4", data_dir)
  assert {s: sorted(r) for s, r in records.items()} == {
    "train": ["a"],
    "sync_pairs": ["b"],
    "validation": ["c"],
    "test": ["d"],
  }
  a = records["train"]["a"]
  # Segments cover frames 0..9; frames 10, 11 would be unlabeled: trimmed (2 <= 30).
  assert a["exo"].shape == (10, D) and a["exo"].dtype == np.float32
  np.testing.assert_array_equal(
    a["exo"], np.stack([_vec(1, t) for t in range(10)])
  )
  np.testing.assert_array_equal(
    a["ego"], np.stack([_vec(2, t) for t in range(10)])
  )
  np.testing.assert_array_equal(a["labels"], [1] * 4 + [2] * 6)
  np.testing.assert_array_equal(a["ego_labels"], a["labels"])
  assert (
    a["recording_id"] == b"a"
    and a["exo_view"] == b"exo"
    and a["start_frame"] == 0
  )
  # An unlabeled synchronized pair: every frame unscored.
  np.testing.assert_array_equal(
    records["sync_pairs"]["b"]["labels"], [-100] * 10
  )
  # Per-frame label file, detected automatically.
  np.testing.assert_array_equal(
    records["validation"]["c"]["labels"], [2, 2, 0, 1, 1, 2]
  )
  # A gap before the first segment is background (class 0 is in background_classes).
  np.testing.assert_array_equal(
    records["test"]["d"]["labels"], [0, 0] + [2] * 6
  )

  info, _ = datasets.open_dataset("feature_folder/t4", str(data_dir))
  assert info.feature_dim == D
  assert info.class_names == tuple(FF_CLASSES) and info.background_classes == (
    0,
  )
  meta = tfds.builder("feature_folder/t4", data_dir=str(data_dir)).info.metadata
  assert meta["repairs"]["counts"] == {
    "trim": {"videos": 1, "frames": 4}
  }  # exo + ego of a
  assert [e["video_id"] for e in meta["repairs"]["entries"]] == ["a", "a"]
  assert meta["summary"]["train"] == {
    "listed": 1,
    "examples": 1,
    "skipped": 0,
    "frames": 10,
  }


def test_feature_folder_float16_and_config_for(tmp_path):
  manual = tmp_path / "m"
  _folder(manual, FF_VIDEOS)
  config = feature_folder.config_for(
    str(manual), name="half", storage_dtype="float16"
  )
  assert config.feature_dim == D
  _build(feature_folder.Builder, config, tmp_path / "d", manual)
  a = _records("feature_folder/half", tmp_path / "d")["train"]["a"]
  assert a["exo"].dtype == np.float16
  np.testing.assert_array_equal(
    a["exo"], np.stack([_vec(1, t) for t in range(10)]).astype(np.float16)
  )


def _bad_folder(tmp_path, extra=None, **changes):
  videos = {k: dict(v) for k, v in {**FF_VIDEOS, **(extra or {})}.items()}
  for name, change in changes.items():
    videos[name].update(change)
  manual = tmp_path / "manual"
  _folder(manual, videos)
  return manual


@pytest.mark.parametrize(
  "change, message",
  [
    (
      dict(ego_len=3),
      r"a: the streams do not line up: .*; ego \(\S*features/ego/a\.npy\) "
      r"frames \[0, 3\);.* drop 9 frames of exo, more than max_trim_frames=5",
    ),
    (
      dict(labels="0 16 pour water\n"),
      r"a: .*labels \(\S*labels/a\.txt\) frames \[0, 16\)"
      r".* drop 4 frames of labels, more than max_trim_frames=3",
    ),
    (
      dict(labels="0 4 pour water\n4 10 whisk\n"),
      r"labels/a\.txt:2: unknown label 'whisk'.*classes\.txt",
    ),
  ],
)
def test_feature_folder_refuses_large_mismatch_and_unknown_labels(
  tmp_path, change, message
):
  manual = _bad_folder(tmp_path, a=change)
  policy = (
    RepairPolicy(max_trim_frames=5)
    if "ego_len" in change
    else RepairPolicy(max_trim_frames=3)
  )
  with pytest.raises(DataError, match=message):
    _build(
      feature_folder.Builder, _ff_config(policy=policy), tmp_path / "d", manual
    )
  assert not (tmp_path / "d" / "feature_folder").exists() or not any(
    (tmp_path / "d" / "feature_folder").rglob("*.array_record*")
  )


def test_feature_folder_unknown_label_ignored_when_allowed(tmp_path):
  manual = _bad_folder(tmp_path, a=dict(labels="0 4 pour water\n4 10 whisk\n"))
  policy = RepairPolicy(unknown_label="ignore")
  builder = _build(
    feature_folder.Builder, _ff_config(policy=policy), tmp_path / "d", manual
  )
  a = _records("feature_folder/t4", tmp_path / "d")["train"]["a"]
  np.testing.assert_array_equal(a["labels"], [1] * 4 + [-100] * 6)
  assert builder.info.metadata["repairs"]["counts"]["unknown_label"] == {
    "videos": 1,
    "frames": 6,
  }


def test_feature_folder_nan_features(tmp_path):
  manual = _bad_folder(tmp_path)
  exo = np.load(manual / "features" / "exo" / "a.npy")
  exo[3, 1] = np.nan
  np.save(manual / "features" / "exo" / "a.npy", exo)
  with pytest.raises(
    DataError,
    match=r"a: exo features from .*a\.npy have NaN/inf "
    r"values in 1 frames \(first: frame 3\)",
  ):
    _build(feature_folder.Builder, _ff_config(), tmp_path / "d1", manual)
  builder = _build(
    feature_folder.Builder,
    _ff_config(policy=RepairPolicy(nan="zero")),
    tmp_path / "d2",
    manual,
  )
  a = _records("feature_folder/t4", tmp_path / "d2")["train"]["a"]
  np.testing.assert_array_equal(a["exo"][3], np.zeros(D))
  np.testing.assert_array_equal(a["exo"][4], _vec(1, 4))
  assert builder.info.metadata["repairs"]["counts"]["nan_zeroed"] == {
    "videos": 1,
    "frames": 1,
  }


def test_feature_folder_empty_and_missing_videos(tmp_path):
  manual = _bad_folder(
    tmp_path,
    a=dict(exo_len=0, ego_len=0),
    extra={"e": dict(split="train", exo_len=5, ego_len=5, labels="0 5 stir\n")},
  )
  with open(manual / "splits" / "train.txt", "a") as f:
    f.write("ghost\n")  # listed, but no feature files
  (manual / "labels" / "ghost.txt").write_text("0 3 stir\n")
  with pytest.raises(MissingData, match=r"a: exo .*a\.npy\) has no frames"):
    _build(
      feature_folder.Builder,
      _ff_config(policy=RepairPolicy(empty="error")),
      tmp_path / "d1",
      manual,
    )
  builder = _build(
    feature_folder.Builder, _ff_config(), tmp_path / "d2", manual
  )
  meta = builder.info.metadata
  assert meta["repairs"]["counts"] == {
    "skipped_empty": {"videos": 1, "frames": 0},
    "skipped_missing_view": {"videos": 1, "frames": 0},
  }
  assert meta["summary"]["train"] == {
    "listed": 3,
    "examples": 1,
    "skipped": 2,
    "frames": 5,
  }
  assert "ghost: no exo features" in meta["repairs"]["entries"][1]["detail"]
  with pytest.raises(MissingData, match="ghost: no exo features"):
    _build(
      feature_folder.Builder,
      _ff_config(policy=RepairPolicy(missing_view="error")),
      tmp_path / "d3",
      manual,
    )


def test_failed_build_leaves_previous_dataset_unchanged(ff_built, tmp_path):
  manual, data_dir, builder = ff_built
  before = _snapshot(data_dir)
  bad = _bad_folder(tmp_path, a=dict(labels="0 4 pour water\n4 10 whisk\n"))
  with pytest.raises(DataError, match="unknown label 'whisk'"):
    _build(
      feature_folder.Builder,
      _ff_config(),
      data_dir,
      bad,
      download_mode=tfds.download.GenerateMode.FORCE_REDOWNLOAD,
    )
  assert _snapshot(data_dir) == before
  assert len(_records("feature_folder/t4", data_dir)["train"]) == 1
  # A failed first build of another config leaves nothing behind either.
  with pytest.raises(DataError, match="unknown label 'whisk'"):
    _build(feature_folder.Builder, _ff_config("t4b"), data_dir, bad)
  assert _snapshot(data_dir) == before
  assert not feature_folder.Builder(
    config=_ff_config("t4b"), data_dir=str(data_dir), file_format="array_record"
  ).is_prepared()


def _nan_folder(tmp_path):
  """A manual dir whose rebuild fails: NaN in a feature file (as in issue 15)."""
  manual = _bad_folder(tmp_path)
  exo = np.load(manual / "features" / "exo" / "a.npy")
  exo[2, 1] = np.nan
  np.save(manual / "features" / "exo" / "a.npy", exo)
  return manual


def _cli_build(data_dir, manual_dir, config):
  """What `tfds build --overwrite` runs (tensorflow_datasets/scripts/cli/build.py):
  it deletes the dataset folder (`_make_builder`) before any of the builder's code
  but its constructor runs, then builds. TensorFlow, which the `tfds` command
  imports first, is not needed for these two functions."""
  from tensorflow_datasets.scripts.cli import build as tfds_build  # pylint: disable=g-import-not-at-top
  from tensorflow_datasets.scripts.cli import cli_utils  # pylint: disable=g-import-not-at-top

  builder = tfds_build._make_builder(  # pylint: disable=protected-access
    feature_folder.Builder,
    overwrite=True,
    fail_if_exists=False,
    data_dir=str(data_dir),
    config=config,
    file_format="array_record",
  )
  cli_utils.download_and_prepare(
    builder=builder,
    download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)),
    download_dir=None,
    publish_dir=None,
    skip_if_published=False,
    overwrite=True,
    beam_pipeline_options=None,
  )


def test_tfds_build_overwrite_keeps_the_previous_build_when_it_fails(tmp_path):
  manual = tmp_path / "good"
  _folder(manual, FF_VIDEOS)
  data_dir = tmp_path / "data"
  _build(feature_folder.Builder, _ff_config(), data_dir, manual)
  before = _snapshot(data_dir)
  with pytest.raises(DataError, match=r"a: exo features .* NaN/inf values"):
    _cli_build(data_dir, _nan_folder(tmp_path), _ff_config())
  assert _snapshot(data_dir) == before
  # A good forced rebuild replaces it and leaves nothing aside.
  changed = {
    **FF_VIDEOS,
    "d": dict(FF_VIDEOS["d"], labels="0\t8\tpour water\n"),
  }
  _folder(tmp_path / "changed", changed)
  _cli_build(data_dir, tmp_path / "changed", _ff_config())
  assert (
    list(_records("feature_folder/t4", data_dir)["test"]["d"]["labels"])
    == [1] * 8
  )
  assert sorted(os.listdir(data_dir / "feature_folder" / "t4")) == ["1.0.0"]


def test_rebuild_killed_after_the_old_build_was_set_aside(tmp_path):
  """The process dies after `tfds build --overwrite` set the old build aside:
  the next build or opening of the dataset puts it back."""
  manual = tmp_path / "good"
  _folder(manual, FF_VIDEOS)
  data_dir = tmp_path / "data"
  builder = _build(feature_folder.Builder, _ff_config(), data_dir, manual)
  before = _snapshot(data_dir)
  builder.data_path.rmtree()  # what the tfds command does first; then a kill
  assert not builder.is_prepared()
  assert sorted(os.listdir(data_dir / "feature_folder" / "t4")) == [
    "1.0.0.previous"
  ]
  _build(feature_folder.Builder, _ff_config(), data_dir, manual)  # not forced
  assert _snapshot(data_dir) == before


def test_failed_forced_rebuild_of_synthetic_sync_keeps_it(
  tmp_path, monkeypatch
):
  from exo2ego_jax.data import synthetic  # pylint: disable=g-import-not-at-top

  data_dir = tmp_path / "data"
  datasets.open_dataset("synthetic_sync/tiny", str(data_dir))
  before = _snapshot(data_dir)

  def broken(params, split):
    raise OSError(f"disk error while generating {split}")

  monkeypatch.setattr(synthetic, "generate_split", broken)
  builder = tfds.builder(
    "synthetic_sync/tiny", data_dir=str(data_dir), file_format="array_record"
  )
  with pytest.raises(OSError, match="disk error while generating"):
    builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(
        download_mode=tfds.download.GenerateMode.FORCE_REDOWNLOAD
      )
    )
  assert _snapshot(data_dir) == before


def test_tfds_build_loads_the_shared_code_from_the_package(tmp_path):
  """`tfds build tfds_builders/<name>` imports the builder file as
  `<name>.<name>_dataset_builder`; its shared code must still come from
  `tfds_builders.common` (one copy), from any working directory."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  code = (
    "import json, sys\n"
    "from tensorflow_datasets.scripts.cli import build\n"
    "cls, _ = build._get_builder_cls_and_kwargs(sys.argv[1], "
    "has_imports=False)\n"
    "print(cls.__module__, cls.__mro__[1].__module__)\n"
    "print(json.dumps(sorted(m for m in sys.modules if 'common' in\n"
    "    m.split('.') and m.split('.')[0] in ('common', 'tfds_builders',\n"
    "                                         'feature_folder'))))\n"
  )
  proc = subprocess.run(
    [
      sys.executable,
      "-c",
      code,
      os.path.join(root, "tfds_builders", "feature_folder"),
    ],
    cwd=tmp_path,
    capture_output=True,
    text=True,
    check=True,
    env=dict(os.environ, PYTHONPATH=root),
  )
  builder, shared = proc.stdout.splitlines()
  assert builder == (
    "feature_folder.feature_folder_dataset_builder "
    "tfds_builders.common.sync_builder"
  )
  assert json.loads(shared) == ["tfds_builders.common"] + [
    f"tfds_builders.common.{m}"
    for m in (
      "alignment",
      "annotations",
      "build_hooks",
      "errors",
      "features",
      "repair",
      "splits",
      "sync_builder",
    )
  ]


@pytest.mark.skipif(
  importlib.util.find_spec("tensorflow") is None
  or shutil.which("tfds") is None,
  reason="the `tfds build` command needs TensorFlow",
)
def test_tfds_build_command_overwrite_keeps_the_previous_build(tmp_path):
  dim = 64  # a registered config: d64
  manual = tmp_path / "manual"
  _folder(manual, FF_VIDEOS)
  for path in (manual / "features").glob("*/*.npy"):
    np.save(path, np.repeat(np.load(path), dim // D, axis=1))
  data_dir = tmp_path / "data"
  command = [
    "tfds",
    "build",
    "tfds_builders/feature_folder",
    "--config=d64",
    f"--manual_dir={manual}",
    f"--data_dir={data_dir}",
    "--file_format=array_record",
  ]
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  subprocess.run(command, cwd=root, check=True, capture_output=True)
  before = _snapshot(data_dir)
  exo = np.load(manual / "features" / "exo" / "a.npy")
  exo[2, 1] = np.nan
  np.save(manual / "features" / "exo" / "a.npy", exo)
  failed = subprocess.run(
    command + ["--overwrite"], cwd=root, capture_output=True, text=True
  )
  assert failed.returncode != 0 and "NaN/inf" in failed.stderr
  assert _snapshot(data_dir) == before


def test_feature_folder_needs_split_lists(tmp_path):
  manual = _bad_folder(tmp_path)
  os.remove(manual / "splits" / "test.txt")
  with pytest.raises(DataError, match=r"split lists: .*test\.txt.* missing"):
    _build(feature_folder.Builder, _ff_config(), tmp_path / "d", manual)
  (manual / "splits" / "test.txt").write_text("a\n")  # also in train
  with pytest.raises(DataError, match=r"in both `test` and `train`"):
    _build(feature_folder.Builder, _ff_config(), tmp_path / "d", manual)


# ------------------------------------------------------------------------------------------------
# assembly101_sync


EXO, EGO = "C10119_rgb", "HMC_84358933_mono10bit"
ACTIONS = (
  "action_id,verb_id,noun_id,action_cls,verb_cls,noun_cls\n"
  "0,0,0,attach arm connector,attach,arm connector\n"
  "1,1,1,screw chassis,screw,chassis\n"
  "2,2,2,attempt to screw wheel,attempt to screw,wheel\n"
)
NAMES = ["attach arm connector", "screw chassis", "attempt to screw wheel"]
R1 = "nusar-2021_action_both_9011-a01_9011_user_id_2021-02-01_153724"
R2 = "nusar-2021_action_both_9012-b06b_9012_user_id_2021-02-02_100000"
R3 = "nusar-2021_action_both_9013-c14a_9013_user_id_2021-02-03_100000"
R4 = "nusar-2021_action_both_9014-a30_9014_user_id_2021-02-04_132852"
R5 = "nusar-2021_action_both_9015-c07c_9015_user_id_2021-02-05_110000"
RECORDINGS = sorted([R1, R2, R3, R4, R5])
# video -> (split, coarse segments (start, end, label)); features cover frames 0..39.
A101 = {
  f"assembly_{R1}": ("train", [(6, 10, NAMES[0]), (10, 16, NAMES[1])]),
  f"assembly_{R5}": ("train", [(0, 6, NAMES[1])]),
  f"disassembly_{R1}": ("sync_pairs", [(20, 25, NAMES[2]), (25, 30, NAMES[1])]),
  f"assembly_{R2}": ("validation", [(0, 8, NAMES[1])]),
  f"assembly_{R4}": ("validation", [(2, 7, NAMES[0])]),
  f"assembly_{R3}": ("test", [(3, 9, NAMES[0]), (9, 12, NAMES[1])]),
  f"disassembly_{R3}": ("test", [(14, 20, NAMES[1])]),
}


def _recording(video):
  return video.split("_", 1)[1]


def _a101_seed(recording, view):
  return 10 * RECORDINGS.index(recording) + (1 if view == EXO else 2)


def _write_lmdb(path, items):
  lmdb = pytest.importorskip("lmdb")
  os.makedirs(path, exist_ok=True)
  env = lmdb.open(str(path), map_size=1 << 24)
  with env.begin(write=True) as txn:
    for key, value in items:
      txn.put(key.encode(), np.asarray(value, np.float32).tobytes())
  env.close()


def _a101_manual(root, drop=(), nan=None, label_overrides=None, splits=True):
  """The public layout. `drop`: (recording, view, frame) left out of the LMDBs."""
  ann = root / "coarse-annotations"
  os.makedirs(ann / "coarse_labels", exist_ok=True)
  os.makedirs(ann / "coarse_splits", exist_ok=True)
  (ann / "actions.csv").write_text(ACTIONS)
  lists = {s: [] for s in SPLITS}
  for video, (split, segments) in A101.items():
    lists[split].append(video)
    text = "".join(f"{s:09d}\t{e:09d}\t{l}\n" for s, e, l in segments)
    if label_overrides and video in label_overrides:
      text = label_overrides[video]
    name = video.replace(
      "disassembly_", "disassebly_"
    )  # the typo some files have
    (ann / "coarse_labels" / f"{name}.txt").write_text(text)
  for view in (EXO, EGO):
    tsm, dinov2 = [], []
    for video in A101:
      rec = _recording(video)
      for frame in range(40):
        if (rec, view, frame) in drop:
          continue
        value = _vec(_a101_seed(rec, view), frame)
        if nan == (rec, view, frame):
          value[0] = np.nan
        tsm.append(
          (f"{rec}/{view}/{view}_{frame:010d}.jpg", value)
        )  # per recording
        dinov2.append(
          (f"{video}_{frame:010d}.jpg", value)
        )  # per annotation name
    _write_lmdb(root / "TSM_features" / view, tsm)
    _write_lmdb(root / "DINOv2_features" / view, dinov2)
  if splits:
    os.makedirs(root / "splits", exist_ok=True)
    for s, vids in lists.items():
      (root / "splits" / f"{s}.txt").write_text("\n".join(vids) + "\n")
  # The public lists (used without splits/): train+sync from train, val+test from val.
  public = {
    "train": lists["train"] + lists["sync_pairs"],
    "val": lists["validation"] + lists["test"],
  }
  for part, vids in public.items():
    for task in ("assembly", "disassembly"):
      lines = [
        f"{v}.txt\tnotshared\ta01\texcavator\n"
        for v in vids
        if v.startswith(task + "_")
      ]
      (ann / "coarse_splits" / f"{part}_coarse_{task}.txt").write_text(
        "".join(lines)
      )
  return root


def _a101_config(features="tsm", name=None, **kwargs):
  return assembly101_sync.make_config(
    EXO, EGO, features, feature_dim=D, name=name or f"tiny_{features}", **kwargs
  )


@pytest.fixture(scope="module")
def a101_manual(tmp_path_factory):
  return _a101_manual(tmp_path_factory.mktemp("a101"))


@pytest.mark.parametrize("features", ["tsm", "dinov2"])
def test_assembly101_both_lmdb_layouts(a101_manual, tmp_path, features):
  builder = _build(
    assembly101_sync.Builder, _a101_config(features), tmp_path, a101_manual
  )
  records = _records(f"assembly101_sync/tiny_{features}", tmp_path)
  assert {s: len(r) for s, r in records.items()} == {
    "train": 2,
    "sync_pairs": 1,
    "validation": 2,
    "test": 2,
  }
  for video, (split, segments) in A101.items():
    r = records[split][video]
    start, end = segments[0][0], segments[-1][1]
    frames = range(start, end)
    rec = _recording(video)
    np.testing.assert_array_equal(
      r["exo"], np.stack([_vec(_a101_seed(rec, EXO), f) for f in frames])
    )
    np.testing.assert_array_equal(
      r["ego"], np.stack([_vec(_a101_seed(rec, EGO), f) for f in frames])
    )
    expected = [NAMES.index(l) for s, e, l in segments for _ in range(s, e)]
    np.testing.assert_array_equal(r["labels"], expected)
    np.testing.assert_array_equal(r["ego_labels"], expected)
    assert r["start_frame"] == start
    assert r["recording_id"].decode() == _recording(video)
    assert (r["exo_view"], r["ego_view"]) == (EXO.encode(), EGO.encode())
  meta = builder.info.metadata
  assert (
    meta["class_names"][2] == "attempt to screw wheel" and meta["fps"] == 30
  )
  assert meta["repairs"]["counts"] == {}


def test_assembly101_default_splits_and_stride(a101_manual, tmp_path):
  manual = _a101_manual(tmp_path / "m", splits=False)
  config = _a101_config(name="strided", frame_stride=2)
  builder = _build(assembly101_sync.Builder, config, tmp_path / "d", manual)
  records = _records("assembly101_sync/strided", tmp_path / "d")
  # The public train list is cut in train/sync_pairs, the val list in validation/test,
  # by recording: the assembly and disassembly videos of one recording stay together.
  public_train = {v for v in A101 if A101[v][0] in ("train", "sync_pairs")}
  assert set(records["train"]) | set(records["sync_pairs"]) == public_train
  assert all(records[s] for s in SPLITS)
  recordings = {s: {_recording(v) for v in records[s]} for s in SPLITS}
  assert not recordings["train"] & recordings["sync_pairs"]
  assert not recordings["validation"] & recordings["test"]
  video = f"assembly_{R1}"
  r = {**records["train"], **records["sync_pairs"]}[video]
  np.testing.assert_array_equal(
    r["exo"], np.stack([_vec(_a101_seed(R1, EXO), f) for f in range(6, 16, 2)])
  )
  np.testing.assert_array_equal(r["labels"], [0, 0, 1, 1, 1])
  assert builder.info.metadata["fps"] == 15


def test_assembly101_missing_frames(tmp_path):
  video = f"assembly_{R1}"
  # Ego lacks the last 2 annotated frames (14, 15) and frames 8, 9 inside.
  drop = {(R1, EGO, f) for f in (8, 9, 14, 15)}
  manual = _a101_manual(tmp_path / "m", drop=drop)
  with pytest.raises(
    DataError,
    match=video + r": ego .*lacks 2 frames inside "
    r"\[6, 14\) \(frames 8, 9\).*max_fill_frames=0",
  ):
    _build(assembly101_sync.Builder, _a101_config(), tmp_path / "d1", manual)
  policy = RepairPolicy(max_fill_frames=2)
  builder = _build(
    assembly101_sync.Builder,
    _a101_config(policy=policy),
    tmp_path / "d2",
    manual,
  )
  r = _records("assembly101_sync/tiny_tsm", tmp_path / "d2")["train"][video]
  seed = _a101_seed(R1, EGO)
  expected = [_vec(seed, f if f not in (8, 9) else 7) for f in range(6, 14)]
  np.testing.assert_array_equal(r["ego"], np.stack(expected))
  np.testing.assert_array_equal(r["exo"][-1], _vec(_a101_seed(R1, EXO), 13))
  assert len(r["labels"]) == 8
  counts = builder.info.metadata["repairs"]["counts"]
  assert counts == {
    "fill": {"videos": 1, "frames": 2},
    "trim": {"videos": 1, "frames": 6},
  }  # exo, ego, labels lose 14, 15


def test_assembly101_large_mismatch_and_missing_view(tmp_path):
  video = f"assembly_{R2}"
  drop = {(R2, EGO, f) for f in range(4, 40)}  # ego ends 4 frames in
  manual = _a101_manual(tmp_path / "m", drop=drop)
  config = _a101_config(policy=RepairPolicy(max_trim_frames=3))
  with pytest.raises(
    DataError,
    match=video + r": the streams do not line up: .*; "
    r"ego \(\S*HMC_84358933_mono10bit keys .*\) frames \[0, 8\) with data "
    r"in \[0, 4\)\. .* drop 4 frames of labels, more than max_trim_frames=3",
  ):
    _build(assembly101_sync.Builder, config, tmp_path / "d1", manual)
  # A recording without the ego view at all is skipped and counted.
  manual = _a101_manual(tmp_path / "m2", drop={(R2, EGO, f) for f in range(40)})
  builder = _build(
    assembly101_sync.Builder, _a101_config(), tmp_path / "d2", manual
  )
  entries = builder.info.metadata["repairs"]["entries"]
  assert [(e["video_id"], e["kind"]) for e in entries] == [
    (video, "skipped_missing_view")
  ]
  assert builder.info.metadata["summary"]["validation"] == {
    "listed": 2,
    "examples": 1,
    "skipped": 1,
    "frames": 5,
  }
  # A split left with no example is an error, not an empty split.
  manual = _a101_manual(
    tmp_path / "m3", drop={(r, EGO, f) for r in (R2, R4) for f in range(40)}
  )
  with pytest.raises(
    DataError,
    match=r"split `validation`: no example left, all 2 "
    r"listed recordings were skipped",
  ):
    _build(assembly101_sync.Builder, _a101_config(), tmp_path / "d3", manual)


def test_assembly101_unknown_label_nan_and_empty(tmp_path):
  video = f"assembly_{R3}"
  manual = _a101_manual(
    tmp_path / "m",
    label_overrides={video: "000000003\t000000009\tattach arm connecter\n"},
  )
  with pytest.raises(
    DataError,
    match=r"coarse_labels/" + video + r"\.txt:1: unknown "
    r"label 'attach arm connecter'.*actions\.csv",
  ):
    _build(assembly101_sync.Builder, _a101_config(), tmp_path / "d1", manual)
  manual = _a101_manual(tmp_path / "m2", nan=(R3, EXO, 5))
  with pytest.raises(
    DataError,
    match=video + r": exo features .*NaN/inf values in "
    r"1 frames \(first: frame 5\)",
  ):
    _build(assembly101_sync.Builder, _a101_config(), tmp_path / "d2", manual)
  manual = _a101_manual(tmp_path / "m3", label_overrides={video: ""})
  builder = _build(
    assembly101_sync.Builder, _a101_config(), tmp_path / "d3", manual
  )
  assert builder.info.metadata["repairs"]["counts"] == {
    "skipped_empty": {"videos": 1, "frames": 0}
  }


def test_assembly101_feature_dim_checked(a101_manual, tmp_path):
  config = assembly101_sync.make_config(
    EXO, EGO, "tsm", feature_dim=8, name="wrong"
  )
  with pytest.raises(
    DataError,
    match=r"holds 16 bytes, a 4-D float32 vector, but "
    r"the config declares feature_dim=8",
  ):
    _build(assembly101_sync.Builder, config, tmp_path, a101_manual)


# ------------------------------------------------------------------------------------------------
# egoexo4d_keystep


TAKES = {  # uid: (name, public split, best_exo, segments (start s, end s, step id, name))
  "uid-1": (
    "georgiatech_covid_01_1",
    "train",
    "cam02",
    [(1.0, 2.0, 1001, "Open the test kit"), (2.0, 3.0, 1002, "Swab nose")],
  ),
  "uid-2": (
    "upenn_cooking_02_3",
    "train",
    "cam01",
    [(0.0, 1.0, 1002, "Swab nose")],
  ),
  "uid-3": (
    "cmu_bike_03_2",
    "val",
    "cam01",
    [(0.5, 2.5, 1001, "Open the test kit")],
  ),
  "uid-4": ("iiith_cooking_04_1", "val", "cam02", [(0.0, 0.75, 1003, "Stir")]),
}


def _egoexo_manual(root, ego_len=8):
  os.makedirs(root / "annotations", exist_ok=True)
  feats = root / "features" / "omnivore_video"
  os.makedirs(feats, exist_ok=True)
  for part in ("train", "val"):
    annotations = {
      uid: {
        "take_uid": uid,
        "take_name": name,
        "scenario": "Covid-19 Rapid Antigen Test",
        "segments": [
          {
            "start_time": s,
            "end_time": e,
            "step_unique_id": sid,
            "step_name": sname,
            "step_description": sname + ".",
          }
          for s, e, sid, sname in segs
        ],
      }
      for uid, (name, p, _, segs) in TAKES.items()
      if p == part
    }
    (root / "annotations" / f"keystep_{part}.json").write_text(
      json.dumps({"annotations": annotations, "taxonomy": {}})
    )
  (root / "takes.json").write_text(
    json.dumps(
      [
        {"take_uid": uid, "take_name": name, "best_exo": best}
        for uid, (name, _, best, _) in TAKES.items()
      ]
    )
  )
  for i, uid in enumerate(sorted(TAKES)):
    for cam, n in (("cam01_0", 8), ("cam02_0", 8), ("aria01_rgb", ego_len)):
      seed = 10 * i + {"cam01_0": 1, "cam02_0": 2, "aria01_rgb": 3}[cam]
      np.save(
        feats / f"{uid}_{cam}.npy", np.stack([_vec(seed, t) for t in range(n)])
      )
  return root


def _egoexo_config(name, **kwargs):
  # Steps at 0.25 + i / 2 seconds, so segment bounds fall between steps.
  return egoexo4d_keystep.EgoExo4DConfig(
    name=name,
    feature_dim=D,
    feature_fps=2.0,
    feature_time_offset=0.25,
    **kwargs,
  )


def test_egoexo4d_best_exo_and_all_cameras(tmp_path):
  manual = _egoexo_manual(tmp_path / "m")
  builder = _build(
    egoexo4d_keystep.Builder, _egoexo_config("best"), tmp_path / "d", manual
  )
  records = _records("egoexo4d_keystep/best", tmp_path / "d")
  assert sum(len(r) for r in records.values()) == 4
  assert all(
    len(records[s]) == 1 for s in SPLITS
  )  # hash halves of train and val takes
  meta = builder.info.metadata
  assert meta["class_names"] == [
    "background",
    "Open the test kit",
    "Swab nose",
    "Stir",
  ]
  assert meta["background_classes"] == ["background"]
  assert meta["step_unique_ids"] == [None, "1001", "1002", "1003"]
  every = {vid: r for split in records.values() for vid, r in split.items()}
  r = every["georgiatech_covid_01_1"]  # uid-1, index 0, best_exo cam02
  np.testing.assert_array_equal(
    r["exo"], np.stack([_vec(2, t) for t in range(8)])
  )
  np.testing.assert_array_equal(
    r["ego"], np.stack([_vec(3, t) for t in range(8)])
  )
  # step times 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.25, 3.75
  np.testing.assert_array_equal(r["labels"], [0, 0, 1, 1, 2, 2, 0, 0])
  assert r["exo_view"] == b"cam02" and r["recording_id"] == b"uid-1"
  np.testing.assert_array_equal(
    every["cmu_bike_03_2"]["labels"], [0, 1, 1, 1, 1, 0, 0, 0]
  )
  np.testing.assert_array_equal(
    every["iiith_cooking_04_1"]["labels"], [3] + [0] * 7
  )

  # All exo cameras, user split lists by take name or uid.
  os.makedirs(manual / "splits")
  for split, takes in zip(
    SPLITS, (["uid-1"], ["upenn_cooking_02_3"], ["uid-3"], ["uid-4"])
  ):
    (manual / "splits" / f"{split}.txt").write_text("\n".join(takes) + "\n")
  _build(
    egoexo4d_keystep.Builder,
    _egoexo_config("all", exo_camera="all"),
    tmp_path / "d",
    manual,
  )
  records = _records("egoexo4d_keystep/all", tmp_path / "d")
  assert sorted(records["train"]) == [
    "georgiatech_covid_01_1/cam01",
    "georgiatech_covid_01_1/cam02",
  ]
  cam1 = records["train"]["georgiatech_covid_01_1/cam01"]
  np.testing.assert_array_equal(
    cam1["exo"], np.stack([_vec(1, t) for t in range(8)])
  )
  np.testing.assert_array_equal(cam1["labels"], [0, 0, 1, 1, 2, 2, 0, 0])
  assert sorted(records["sync_pairs"]) == [
    "upenn_cooking_02_3/cam01",
    "upenn_cooking_02_3/cam02",
  ]


def test_egoexo4d_view_length_mismatch(tmp_path):
  manual = _egoexo_manual(tmp_path / "m", ego_len=6)
  builder = _build(
    egoexo4d_keystep.Builder, _egoexo_config("short"), tmp_path / "d", manual
  )
  counts = builder.info.metadata["repairs"]["counts"]
  assert counts == {
    "trim": {"videos": 4, "frames": 16}
  }  # exo and labels of 4 takes
  config = _egoexo_config("strict", policy=RepairPolicy(max_trim_frames=1))
  with pytest.raises(
    DataError,
    match=r": the streams do not line up: exo "
    r"\(\S*_cam0\d_0\.npy\) frames \[0, 8\).* drop 2 frames of exo",
  ):
    _build(egoexo4d_keystep.Builder, config, tmp_path / "d2", manual)


# ------------------------------------------------------------------------------------------------
# Determinism across processes.


def test_builds_are_byte_identical_across_processes(
  ff_built, a101_manual, tmp_path
):
  first = tmp_path / "first"
  _build(assembly101_sync.Builder, _a101_config(), first, a101_manual)
  ff_manual, ff_data, _ = ff_built
  code = (
    "import sys, tensorflow_datasets as tfds\n"
    "from tfds_builders import assembly101_sync, feature_folder\n"
    "dc = lambda m: tfds.download.DownloadConfig(manual_dir=m)\n"
    f"assembly101_sync.Builder(config=assembly101_sync.make_config({EXO!r}, {EGO!r}, "
    f"'tsm', feature_dim={D}, name='tiny_tsm'), data_dir=sys.argv[1], "
    "file_format='array_record').download_and_prepare(download_config=dc(sys.argv[2]))\n"
    "feature_folder.Builder(config=feature_folder.FeatureFolderConfig(name='t4', "
    f"feature_dim={D}), data_dir=sys.argv[1], file_format='array_record')"
    ".download_and_prepare(download_config=dc(sys.argv[3]))\n"
  )
  second = tmp_path / "second"
  subprocess.run(
    [sys.executable, "-c", code, str(second), str(a101_manual), str(ff_manual)],
    check=True,
    capture_output=True,
  )
  for name, ref in (
    ("assembly101_sync/tiny_tsm", first),
    ("feature_folder/t4", ff_data),
  ):
    a = ref / name / "1.0.0"
    b = second / name / "1.0.0"
    files = sorted(p.name for p in a.iterdir() if ".array_record" in p.name)
    assert len(files) >= 4
    for f in files:
      assert (a / f).read_bytes() == (b / f).read_bytes(), f
    assert json.loads((a / "metadata.json").read_text()) == json.loads(
      (b / "metadata.json").read_text()
    )


# ------------------------------------------------------------------------------------------------
# Library pieces.


def test_class_table_formats_and_policy_checks(tmp_path):
  for name, text in (
    ("actions.csv", ACTIONS),
    (
      "mapping.txt",
      "0 attach arm connector\n1 screw chassis\n2 attempt to screw wheel\n",
    ),
    (
      "names.txt",
      "attach arm connector\nscrew chassis\nattempt to screw wheel\n",
    ),
  ):
    (tmp_path / name).write_text(text)
    assert read_class_table(tmp_path / name) == NAMES
  (tmp_path / "gap.txt").write_text("0 a\n2 b\n")
  with pytest.raises(DataError, match=r"gap\.txt: class ids must be 0\.\.1"):
    read_class_table(tmp_path / "gap.txt")
  with pytest.raises(ValueError, match="RepairPolicy.nan must be one of"):
    RepairPolicy(nan="drop")
  (tmp_path / "bad.txt").write_text("12\tx\n")
  with pytest.raises(
    DataError, match=r"bad\.txt:1: expected `start<TAB>end<TAB>label`"
  ):
    parse_segments(tmp_path / "bad.txt")
  a, b = hash_partition([f"v{i}" for i in range(10)], 0.3)
  assert len(a) == 3 and sorted(a + b) == sorted(f"v{i}" for i in range(10))
  assert hash_partition(reversed([f"v{i}" for i in range(10)]), 0.3) == (a, b)


def test_repair_file_in_the_manual_dir_sets_the_policy(tmp_path):
  """Where users build (`tfds build --manual_dir`), repairs are allowed by a
  repair.json next to their files, and every refusal names it."""
  manual = _bad_folder(tmp_path)
  exo = np.load(manual / "features" / "exo" / "a.npy")
  exo[3, 1] = np.nan
  np.save(manual / "features" / "exo" / "a.npy", exo)
  with pytest.raises(DataError) as refused:
    _build(feature_folder.Builder, _ff_config(), tmp_path / "d1", manual)
  assert str(refused.value).endswith(
    'Re-extract them, or put {"nan": "zero"} in repair.json in the manual '
    "dir (--manual_dir) and build again to zero those frames"
  )
  (manual / "repair.json").write_text('{"nan": "zero"}')
  builder = _build(
    feature_folder.Builder, _ff_config(), tmp_path / "d2", manual
  )
  a = _records("feature_folder/t4", tmp_path / "d2")["train"]["a"]
  np.testing.assert_array_equal(a["exo"][3], np.zeros(D))
  assert builder.info.metadata["policy"]["nan"] == "zero"
  assert builder.info.metadata["policy"]["max_trim_frames"] == 30  # config's
  (manual / "repair.json").write_text('{"nan": "zero", "trim": 3}')
  with pytest.raises(
    DataError,
    match=r"repair\.json: \['trim'\] is not a "
    "RepairPolicy field; use an object with some of "
    "max_trim_frames, max_fill_frames, nan",
  ):
    _build(feature_folder.Builder, _ff_config(), tmp_path / "d3", manual)
  (manual / "repair.json").write_text('{"nan": "drop"}')
  with pytest.raises(
    DataError,
    match=r"repair\.json: RepairPolicy\.nan must "
    "be one of",
  ):
    _build(feature_folder.Builder, _ff_config(), tmp_path / "d4", manual)


def test_policy_given_as_json_config_fields():
  """`tfds build --config='{"name": ..., "policy": {...}}'` passes a dict."""
  config = _ff_config(policy={"nan": "zero", "max_trim_frames": 5})
  assert config.policy == RepairPolicy(nan="zero", max_trim_frames=5)
  with pytest.raises(ValueError, match="policy field 'nans' is unknown"):
    _ff_config(policy={"nans": "zero"})
