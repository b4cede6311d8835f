"""Tests of the synthetic synchronized exo/ego benchmark and its TFDS builder."""

import dataclasses
import json
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from exo2ego_jax.data import synthetic

CFG = synthetic.TINY
FIELDS = ("exo", "ego", "labels", "ego_labels", "video_id", "task_id", "jitter")


def _split(cfg, split):
  return list(synthetic.generate_split(cfg, split))


def _segments(labels):
  """(label, start, end) runs, end exclusive."""
  change = np.flatnonzero(np.diff(labels)) + 1
  starts = np.r_[0, change]
  ends = np.r_[change, len(labels)]
  return [(int(labels[s]), int(s), int(e)) for s, e in zip(starts, ends)]


def _assert_same(a, b):
  assert [k for k, _ in a] == [k for k, _ in b]
  for (_, x), (_, y) in zip(a, b):
    for field in FIELDS:
      xv, yv = np.asarray(x[field]), np.asarray(y[field])
      assert xv.dtype == yv.dtype and xv.shape == yv.shape
      assert xv.tobytes() == yv.tobytes(), field


def test_deterministic_and_seeded():
  _assert_same(_split(CFG, "sync_pairs"), _split(CFG, "sync_pairs"))
  other = _split(dataclasses.replace(CFG, seed=1), "sync_pairs")
  assert not np.array_equal(
    other[0][1]["exo"][:10], _split(CFG, "sync_pairs")[0][1]["exo"][:10]
  )


def test_video_independent_of_split_size():
  a = synthetic.generate_video(CFG, "test", 3)
  b = synthetic.generate_video(dataclasses.replace(CFG, num_test=50), "test", 3)
  _assert_same([("k", a)], [("k", b)])


def test_shapes_dtypes_and_ids():
  ids = []
  for split in synthetic.SPLITS:
    examples = _split(CFG, split)
    assert len(examples) == CFG.num_videos(split)
    for key, ex in examples:
      assert set(ex) == set(FIELDS)
      t = ex["labels"].shape[0]
      assert CFG.frames_range[0] <= t <= CFG.frames_range[1]
      for view in ("exo", "ego"):
        assert (
          ex[view].shape == (t, CFG.feature_dim)
          and ex[view].dtype == np.float32
        )
        assert np.isfinite(ex[view]).all()
      for lab in ("labels", "ego_labels"):
        assert ex[lab].shape == (t,) and ex[lab].dtype == np.int32
      assert (
        ex["task_id"].dtype == np.int32 and 0 <= ex["task_id"] < CFG.num_tasks
      )
      assert ex["jitter"] == 0
      np.testing.assert_array_equal(ex["ego_labels"], ex["labels"])
      assert key == ex["video_id"] and re.fullmatch(rf"{split}_\d{{4}}", key)
      ids.append(key)
  assert len(set(ids)) == len(ids)


def test_class_names():
  names = synthetic.class_names(CFG)
  assert len(names) == CFG.num_classes == CFG.num_actions + 1
  assert names[0] == "background" and len(set(names)) == len(names)
  assert all(re.fullmatch(r"[a-z]+_[a-z]+", n) for n in names[1:])
  # Verbs and objects are shared between classes (the source of single-frame ambiguity).
  verbs = [n.split("_")[0] for n in names[1:]]
  objects = [n.split("_")[1] for n in names[1:]]
  assert len(set(verbs)) < len(verbs) and len(set(objects)) < len(objects)


def test_labels_and_segment_statistics():
  durations, seen = [], set()
  lo, hi = CFG.segments_range
  for split in ("train", "sync_pairs"):
    for _, ex in _split(CFG, split):
      labels = ex["labels"]
      assert labels.min() >= 0 and labels.max() < CFG.num_classes
      segments = [s for s in _segments(labels) if s[0] != 0]
      assert lo <= len(segments) <= hi
      durations += [e - s for _, s, e in segments]
      seen.update(labels.tolist())
  assert 0 in seen and len(seen) > CFG.num_classes // 2
  durations = np.asarray(durations)
  assert durations.min() >= CFG.min_duration
  # Heavy tail: the longest segments are many times the median.
  assert durations.max() / np.median(durations) > 8


def _affine_residual(ex):
  """Fraction of ego variance left after the best per-video affine map from exo."""
  x = np.c_[ex["exo"].astype(np.float64), np.ones(len(ex["exo"]))]
  y = ex["ego"].astype(np.float64)
  w, *_ = np.linalg.lstsq(x, y, rcond=None)
  return ((y - x @ w) ** 2).sum() / ((y - y.mean(0)) ** 2).sum()


def test_ego_is_not_an_affine_function_of_exo():
  # Without noise and nuisances, only the view mappings (and per-video styles) remain.
  clean = dataclasses.replace(
    CFG, exo_noise=0.0, ego_noise=0.0, camera_bursts=0.0, occlusions=0.0
  )
  # Same-view control: identical mappings leave only the affine style shift, fit exactly.
  same_view = dataclasses.replace(clean, view_overlap=1.0)
  for i in range(3):
    assert (
      _affine_residual(synthetic.generate_video(same_view, "train", i)) < 1e-6
    )
    assert _affine_residual(synthetic.generate_video(clean, "train", i)) > 0.1
    assert _affine_residual(synthetic.generate_video(CFG, "train", i)) > 0.5


def test_fixed_jitter_shifts_ego_labels():
  k = 5
  jit = dataclasses.replace(CFG, jitter_mode="fixed", jitter_frames=k)
  for (_, ex), (_, ref) in zip(
    _split(jit, "sync_pairs"), _split(CFG, "sync_pairs")
  ):
    assert ex["jitter"] == k
    np.testing.assert_array_equal(ex["ego_labels"][:-k], ex["labels"][k:])
    np.testing.assert_array_equal(ex["ego_labels"][-k:], ex["labels"][-1])
    # Jitter moves the ego camera only: the timeline and the exo view are unchanged.
    np.testing.assert_array_equal(ex["labels"], ref["labels"])
    np.testing.assert_array_equal(ex["exo"], ref["exo"])
  # Other splits are never jittered.
  _assert_same(_split(jit, "test"), _split(CFG, "test"))


def test_random_jitter():
  k = 4
  jit = dataclasses.replace(
    CFG, jitter_mode="random", jitter_frames=k, num_sync_pairs=20
  )
  offsets = []
  for _, ex in _split(jit, "sync_pairs"):
    j = int(ex["jitter"])
    offsets.append(j)
    t = len(ex["labels"])
    shown = np.clip(np.arange(t) + j, 0, t - 1)
    np.testing.assert_array_equal(ex["ego_labels"], ex["labels"][shown])
  assert all(-k <= j <= k for j in offsets) and len(set(offsets)) > 1


@pytest.mark.parametrize(
  "kwargs",
  [
    dict(jitter_mode="none", jitter_frames=3),
    dict(jitter_mode="sometimes"),
    dict(segments_range=(5, 4)),
    dict(view_overlap=1.5),
  ],
)
def test_invalid_config(kwargs):
  with pytest.raises(ValueError):
    dataclasses.replace(CFG, **kwargs)


def test_metadata_is_json_friendly():
  meta = synthetic.metadata(CFG)
  assert json.loads(json.dumps(meta)) == meta
  assert meta["class_names"] == synthetic.class_names(CFG)
  # The stored parameters recreate the config.
  assert synthetic.SyntheticConfig(**meta["generation"]) == CFG


# ------------------------------------------------------------------------------------------------
# TFDS builder (array_record, no TensorFlow).


def _build(data_dir):
  from tfds_builders.synthetic_sync import Builder

  builder = Builder(
    config="tiny", data_dir=str(data_dir), file_format="array_record"
  )
  builder.download_and_prepare()
  return builder


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp("tfds")
  return data_dir, _build(data_dir)


def test_builder_name_and_configs(built):
  _, builder = built
  from tfds_builders.synthetic_sync import Builder

  assert builder.name == "synthetic_sync"
  assert Builder.DEFAULT_CONFIG_NAME == "default"
  assert {c.name for c in Builder.BUILDER_CONFIGS} == {
    "default",
    "tiny",
    "clock_offset",
    "clock_rate",
    "clock_drops",
    "multiview",
    "tiny_multiview",
  }
  # Only the clock configs carry each ego frame's true instant.
  for config in Builder.BUILDER_CONFIGS:
    features = Builder(config=config.name, data_dir="/nonexistent").info
    assert ("ego_time" in features.features) == config.name.startswith("clock_")
    # Only the multi-view configs carry every exo view and its presence.
    multiview = "multiview" in config.name
    assert ("exo_views" in features.features) == multiview
    assert ("exo_present" in features.features) == multiview


def test_builder_reads_back_with_data_source(built):
  data_dir, _ = built
  sources = tfds.data_source("synthetic_sync/tiny", data_dir=str(data_dir))
  assert set(sources) == set(synthetic.SPLITS)
  for split in synthetic.SPLITS:
    assert len(sources[split]) == CFG.num_videos(split)
  # Order in the file is tfds' shuffle; match records to the generator by id.
  expected = dict(_split(CFG, "sync_pairs"))
  for record in sources["sync_pairs"]:
    ex = expected[record["video_id"].decode()]
    assert set(record) == set(FIELDS)
    for field in ("exo", "ego", "labels", "ego_labels"):
      assert record[field].dtype == ex[field].dtype
      np.testing.assert_array_equal(record[field], ex[field])
    assert (
      record["task_id"] == ex["task_id"] and record["jitter"] == ex["jitter"]
    )

  info = tfds.builder("synthetic_sync/tiny", data_dir=str(data_dir)).info
  assert info.metadata["class_names"] == synthetic.class_names(CFG)
  assert info.metadata["background_classes"] == ["background"]
  assert info.metadata["feature_dim"] == CFG.feature_dim
  assert info.metadata["fps"] == CFG.fps
  assert info.metadata["generation"]["frames_range"] == list(CFG.frames_range)
  assert info.features["exo"].shape == (None, CFG.feature_dim)


def test_builds_are_byte_identical(built, tmp_path):
  _, first = built
  # Another process: protobuf map order (hence tfds' default serialization) varies per process.
  code = (
    "import sys; from tfds_builders.synthetic_sync import Builder; "
    "Builder(config='tiny', data_dir=sys.argv[1], file_format='array_record')"
    ".download_and_prepare()"
  )
  subprocess.run(
    [sys.executable, "-c", code, str(tmp_path)], check=True, capture_output=True
  )
  second = tmp_path / "synthetic_sync" / "tiny" / str(first.version)
  files = sorted(
    p.name for p in first.data_path.iterdir() if ".array_record" in p.name
  )
  assert len(files) >= len(synthetic.SPLITS)
  for name in files:
    assert (first.data_path / name).read_bytes() == (
      second / name
    ).read_bytes(), name


def test_builders_leave_no_temporary_folders(tmp_path, monkeypatch):
  """TFDS's look for precomputed info on its public bucket, made for every
  builder whose data is not yet built, used to leave an empty tmp*tfds
  folder in the temporary directory each time."""
  import tempfile

  from tfds_builders.feature_folder import Builder as FolderBuilder
  from tfds_builders.synthetic_sync import Builder

  scratch = tmp_path / "tmp"
  scratch.mkdir()
  monkeypatch.setattr(tempfile, "tempdir", str(scratch))
  for builder in (Builder, FolderBuilder):
    info = builder(data_dir=str(tmp_path / "data")).info
    assert "exo" in info.features
  assert list(scratch.iterdir()) == []
