"""Multi-view configs of the real-data builders (issue #20, docs/multiview.md).

Assembly101: all 8 static cameras of a recording as exo views; Ego-Exo4D:
every exo GoPro of a take in one example. Tiny manual dirs in the public
layouts (those of tests/test_builders_real.py, plus the other cameras),
built with array_record (no TensorFlow) and read back.
"""

import json
import shutil
import sys

import numpy as np
import pytest

import test_builders_real as real
from exo2ego_jax.data import datasets
from exo2ego_jax.data.constants import SPLITS
from tfds_builders import assembly101_sync, egoexo4d_keystep
from tfds_builders.common.errors import DataError
from tfds_builders.common.repair import RepairPolicy

D = real.D
EXO, EGO = real.EXO, real.EGO
R1, R2, R3, R4 = real.R1, real.R2, real.R3, real.R4
# View order of the Assembly101 multi-view configs: C10119_rgb, then the
# official loader's list without it.
A101_VIEWS = (
  "C10119_rgb",
  "C10095_rgb",
  "C10115_rgb",
  "C10118_rgb",
  "C10379_rgb",
  "C10390_rgb",
  "C10395_rgb",
  "C10404_rgb",
)
BAD_VIEW = "C20000_rgb"  # a camera whose LMDB holds (D + 2)-D vectors
NAN_VIEW = "C20001_rgb"  # a camera with a NaN in R1's frame 8


def _error_line(error: Exception, capsys) -> str:
  """What a program ended by `error` prints (the hook errors.py installs)."""
  capsys.readouterr()  # not the build's progress bars
  sys.excepthook(type(error), error, error.__traceback__)
  return capsys.readouterr().err


def _view_seed(recording, view):
  return 10 * real.RECORDINGS.index(recording) + 2 + A101_VIEWS.index(view)


def _a101_view_frames(recording, view):
  """Frames of `view` in its LMDB: R2 has no C10095_rgb, R3's C10404_rgb
  misses frames 4 and 5, R1's C10379_rgb ends after frame 11, R4 has no exo
  camera at all."""
  if recording == R4 or (recording, view) == (R2, "C10095_rgb"):
    return []
  if (recording, view) == (R3, "C10404_rgb"):
    return [f for f in range(40) if f not in (4, 5)]
  if (recording, view) == (R1, "C10379_rgb"):
    return list(range(12))
  return list(range(40))


@pytest.fixture(scope="module")
def a101(tmp_path_factory):
  """The multi-view (K = 8) and the single-view config, built from one
  manual dir."""
  manual = real._a101_manual(
    tmp_path_factory.mktemp("a101_manual"),
    drop={(R4, EXO, f) for f in range(40)},
  )
  for view in A101_VIEWS[1:]:
    real._write_lmdb(
      manual / "TSM_features" / view,
      [
        (
          f"{rec}/{view}/{view}_{f:010d}.jpg",
          real._vec(_view_seed(rec, view), f),
        )
        for rec in real.RECORDINGS
        for f in _a101_view_frames(rec, view)
      ],
    )
  real._write_lmdb(
    manual / "TSM_features" / BAD_VIEW,
    [
      (f"{rec}/{BAD_VIEW}/{BAD_VIEW}_{f:010d}.jpg", np.zeros(D + 2))
      for rec in real.RECORDINGS
      for f in range(40)
    ],
  )
  nan = [
    (f"{rec}/{NAN_VIEW}/{NAN_VIEW}_{f:010d}.jpg", real._vec(9, f))
    for rec in real.RECORDINGS
    for f in range(40)
  ]
  nan[real.RECORDINGS.index(R1) * 40 + 8][1][0] = np.nan
  real._write_lmdb(manual / "TSM_features" / NAN_VIEW, nan)
  data_dir = tmp_path_factory.mktemp("a101_data")
  config = assembly101_sync.make_multiview_config(
    feature_dim=D, name="tiny_views"
  )
  multi = real._build(assembly101_sync.Builder, config, data_dir, manual)
  real._build(assembly101_sync.Builder, real._a101_config(), data_dir, manual)
  return manual, data_dir, multi


def test_assembly101_all_exo_cameras_in_one_example(a101):
  _, data_dir, builder = a101
  meta = builder.info.metadata
  assert meta["exo_view_names"] == list(A101_VIEWS)
  assert meta["exo_view"] == EXO
  info, _ = datasets.open_dataset("assembly101_sync/tiny_views", str(data_dir))
  assert info.exo_views == A101_VIEWS and info.feature_dim == D
  records = real._records("assembly101_sync/tiny_views", data_dir)
  # R4 has no exo camera: skipped, as a recording without its ego view is.
  assert f"assembly_{R4}" not in records["validation"]
  assert [(e["video_id"], e["kind"]) for e in meta["repairs"]["entries"]] == [
    (f"assembly_{R4}", "skipped_missing_view")
  ]
  assert "none of its 8 exo views" in meta["repairs"]["entries"][0]["detail"]
  for video, (split, segments) in real.A101.items():
    if video == f"assembly_{R4}":
      continue
    r = records[split][video]
    rec = real._recording(video)
    frames = range(segments[0][0], segments[-1][1])
    views, present = r["exo_views"], r["exo_present"]
    assert views.shape == (8, len(frames), D) and views.dtype == np.float32
    assert present.shape == (8, len(frames)) and present.dtype == np.int32
    for k, view in enumerate(A101_VIEWS):
      have = set(
        _a101_view_frames(rec, view) if k else range(40)
      )  # view 0: every frame but R4's
      want_present = [int(f in have) for f in frames]
      np.testing.assert_array_equal(present[k], want_present, err_msg=view)
      seed = real._a101_seed(rec, EXO) if k == 0 else _view_seed(rec, view)
      want = np.stack(
        [real._vec(seed, f) if f in have else np.zeros(D) for f in frames]
      )
      np.testing.assert_array_equal(views[k], want, err_msg=view)
    np.testing.assert_array_equal(r["exo"], views[0])
    ids = [v if present[k].any() else "" for k, v in enumerate(A101_VIEWS)]
    assert r["exo_view_ids"].decode() == ",".join(ids)
    assert r["exo_view"] == EXO.encode() and r["start_frame"] == frames[0]
  # The masked cases: a missing camera, an interior gap, an early end.
  r2 = records["validation"][f"assembly_{R2}"]
  assert not r2["exo_present"][1].any() and not r2["exo_views"][1].any()
  assert r2["exo_view_ids"].decode().split(",")[1] == ""
  r3 = records["test"][f"assembly_{R3}"]  # frames 3..11
  np.testing.assert_array_equal(r3["exo_present"][7], [1, 0, 0] + [1] * 6)
  r1 = records["train"][f"assembly_{R1}"]  # frames 6..15
  np.testing.assert_array_equal(r1["exo_present"][4], [1] * 6 + [0] * 4)
  summary = meta["summary"]["validation"]
  assert summary["examples"] == 1 and summary["skipped"] == 1
  assert summary["view_examples"] == [1, 0, 1, 1, 1, 1, 1, 1]
  assert summary["view_frames"] == [8, 0, 8, 8, 8, 8, 8, 8]


def test_assembly101_view0_is_the_single_view_exo(a101):
  """Views that cover the same frames: the example is the single-view
  config's, byte for byte, with `exo_views[0]` its `exo`."""
  _, data_dir, _ = a101
  multi = real._records("assembly101_sync/tiny_views", data_dir)
  single = real._records("assembly101_sync/tiny_tsm", data_dir)
  assert {s: sorted(r) for s, r in multi.items()} == {
    s: sorted(r) for s, r in single.items()
  }
  for split in SPLITS:
    for video, one in single[split].items():
      many = multi[split][video]
      for field in ("exo", "ego", "labels", "ego_labels", "start_frame"):
        assert np.asarray(many[field]).tobytes() == (
          np.asarray(one[field]).tobytes()
        ), (video, field)
      assert many["exo_views"][0].tobytes() == one["exo"].tobytes()
  assert "exo_views" not in single["train"][f"assembly_{R1}"]
  info, _ = datasets.open_dataset("assembly101_sync/tiny_tsm", str(data_dir))
  assert info.exo_views == ("exo",)


def test_assembly101_view_of_another_size(a101, tmp_path, capsys):
  manual, _, _ = a101
  config = assembly101_sync.make_multiview_config(
    (EXO, BAD_VIEW), feature_dim=D, name="bad_view"
  )
  with pytest.raises(DataError) as refused:
    real._build(assembly101_sync.Builder, config, tmp_path, manual)
  line = _error_line(refused.value, capsys)
  assert line.count("\n") == 1 and line.startswith(
    f"error: {manual / 'TSM_features' / BAD_VIEW}: key "
  )
  assert line.endswith(
    "holds 24 bytes, a 6-D float32 vector, but the config declares "
    "feature_dim=4; config 'bad_view' reads every view as 4-D: re-extract "
    f"view {BAD_VIEW} with the backbone of the other views, or leave "
    f"{BAD_VIEW} out of exo_views (make_multiview_config(exo_views=...))\n"
  )
  assert not any(tmp_path.rglob("*.array_record*"))


def test_assembly101_nan_in_a_view_and_float16(a101, tmp_path):
  manual, _, _ = a101
  config = lambda **kw: assembly101_sync.make_multiview_config(
    (EXO, NAN_VIEW), feature_dim=D, name="nan_view", **kw
  )
  with pytest.raises(
    DataError,
    match=rf"assembly_{R1}: exo view {NAN_VIEW} features from \S*{NAN_VIEW} "
    r"keys .* have NaN/inf values in 1 frames \(first: frame 8\)\. "
    r"Re-extract them, or put \{\"nan\": \"zero\"\} in repair\.json",
  ):
    real._build(assembly101_sync.Builder, config(), tmp_path / "d1", manual)
  # Allowed: the frame is absent from that view (and counted); float16.
  policy = RepairPolicy(nan="zero")
  builder = real._build(
    assembly101_sync.Builder,
    config(policy=policy, storage_dtype="float16"),
    tmp_path / "d2",
    manual,
  )
  assert builder.info.metadata["repairs"]["counts"] == {
    "nan_zeroed": {"videos": 1, "frames": 1}
  }
  r = real._records("assembly101_sync/nan_view", tmp_path / "d2")["train"]
  r = r[f"assembly_{R1}"]  # frames 6..15
  assert r["exo_views"].dtype == np.float16 and r["exo"].dtype == np.float16
  np.testing.assert_array_equal(r["exo_present"][1], [1, 1, 0] + [1] * 7)
  want = [real._vec(9, f) if f != 8 else np.zeros(D) for f in range(6, 16)]
  np.testing.assert_array_equal(
    r["exo_views"][1], np.stack(want).astype(np.float16)
  )
  np.testing.assert_array_equal(
    r["exo"],
    np.stack(
      [real._vec(real._a101_seed(R1, EXO), f) for f in range(6, 16)]
    ).astype(np.float16),
  )


def test_registered_multiview_configs(tmp_path):
  configs = {c.name: c for c in assembly101_sync.Builder.BUILDER_CONFIGS}
  for name, dim in (
    ("tsm_c10119_8exo_hmc84358933", 2048),
    ("tsm_c10119_8exo_hmc84358933_fp16", 2048),
    ("dinov2_c10119_8exo_hmc84358933", 1024),
    ("dinov2_c10119_8exo_hmc84358933_fp16", 1024),
  ):
    assert configs[name].exo_views == A101_VIEWS
    assert configs[name].feature_dim == dim
  builder = assembly101_sync.Builder(
    config="tsm_c10119_8exo_hmc84358933_fp16", data_dir=str(tmp_path)
  )
  assert builder.info.metadata["exo_view_names"] == list(A101_VIEWS)
  views = builder.info.features["exo_views"]
  assert views.shape == (8, None, 2048) and views.np_dtype == np.float16
  assert builder.info.features["exo_present"].shape == (8, None)
  builder = egoexo4d_keystep.Builder(
    config="omnivore_multi_exo", data_dir=str(tmp_path)
  )
  assert builder.info.metadata["exo_view_names"] == [
    "best_exo",
    "other1",
    "other2",
    "other3",
    "other4",
  ]
  assert builder.info.features["exo_views"].shape == (5, None, 1536)
  # Single-view configs keep their fields.
  builder = egoexo4d_keystep.Builder(
    config="omnivore_all_exo", data_dir=str(tmp_path)
  )
  assert "exo_views" not in builder.info.features
  assert "exo_view_names" not in builder.info.metadata


# ------------------------------------------------------------------------------------------------
# egoexo4d_keystep


TAKE5 = ("uid-5", "sfu_cooking_05_2")  # a 5th take; its best_exo has no file


def _egoexo_views_manual(root):
  """real._egoexo_manual's 4 takes (cam01, cam02, aria01, 8 steps each) and
  uid-5, with: uid-1 also has cam04; uid-3's cam02 has 6 steps; uid-5 has
  cam01, cam03 and no features of its best_exo cam02. Split lists by take."""
  manual = real._egoexo_manual(root)
  feats = manual / "features" / "omnivore_video"

  def save(name, seed, steps):
    np.save(
      feats / f"{name}.npy",
      np.stack([real._vec(seed, t) for t in range(steps)]),
    )

  save("uid-1_cam04_0", 4, 8)
  save("uid-3_cam02_0", 22, 6)
  for camera, seed in (("cam01_0", 41), ("cam03_0", 43), ("aria01_rgb", 45)):
    save(f"uid-5_{camera}", seed, 8)
  uid, name = TAKE5
  path = manual / "annotations" / "keystep_val.json"
  keysteps = json.loads(path.read_text())
  keysteps["annotations"][uid] = {
    "take_uid": uid,
    "take_name": name,
    "segments": [
      {
        "start_time": 0.0,
        "end_time": 1.0,
        "step_unique_id": 1003,
        "step_name": "Stir",
      }
    ],
  }
  path.write_text(json.dumps(keysteps))
  takes = json.loads((manual / "takes.json").read_text())
  takes.append({"take_uid": uid, "take_name": name, "best_exo": "cam02"})
  (manual / "takes.json").write_text(json.dumps(takes))
  (manual / "splits").mkdir()
  for split, uids in zip(
    SPLITS, (["uid-1"], ["uid-2"], ["uid-3"], ["uid-4", "uid-5"])
  ):
    (manual / "splits" / f"{split}.txt").write_text("\n".join(uids) + "\n")
  return manual


def _egoexo_multi(name, **kwargs):
  return egoexo4d_keystep.EgoExo4DMultiviewConfig(
    name=name,
    feature_dim=D,
    feature_fps=2.0,
    feature_time_offset=0.25,
    **{"exo_slots": 4, **kwargs},
  )


@pytest.fixture(scope="module")
def egoexo(tmp_path_factory):
  manual = _egoexo_views_manual(tmp_path_factory.mktemp("egoexo_manual"))
  data_dir = tmp_path_factory.mktemp("egoexo_data")
  builder = real._build(
    egoexo4d_keystep.Builder, _egoexo_multi("views"), data_dir, manual
  )
  real._build(
    egoexo4d_keystep.Builder, real._egoexo_config("best"), data_dir, manual
  )
  return manual, data_dir, builder


def test_egoexo4d_every_exo_camera_of_a_take_in_one_example(egoexo):
  _, data_dir, builder = egoexo
  meta = builder.info.metadata
  names = ["best_exo", "other1", "other2", "other3"]
  assert meta["exo_view_names"] == names
  assert meta["repairs"]["counts"] == {}
  info, _ = datasets.open_dataset("egoexo4d_keystep/views", str(data_dir))
  assert info.exo_views == tuple(names)
  records = real._records("egoexo4d_keystep/views", data_dir)
  assert {s: sorted(r) for s, r in records.items()} == {
    "train": ["georgiatech_covid_01_1"],
    "sync_pairs": ["upenn_cooking_02_3"],
    "validation": ["cmu_bike_03_2"],
    "test": ["iiith_cooking_04_1", TAKE5[1]],
  }
  vec = lambda seed, steps=8: (
    np.stack([real._vec(seed, t) for t in range(8)])
    * (np.arange(8) < steps)[:, None]
  )
  zero = np.zeros((8, D))
  # (take, split, exo_view, exo_view_ids, views (seed, steps) or None)
  cases = [
    (
      "georgiatech_covid_01_1",  # uid-1, best_exo cam02; cam01 < cam04
      "train",
      "cam02",
      "cam02,cam01,cam04,",
      [(2, 8), (1, 8), (4, 8), None],
    ),
    (
      "cmu_bike_03_2",  # uid-3, best_exo cam01; its cam02 ends 2 steps early
      "validation",
      "cam01",
      "cam01,cam02,,",
      [(21, 8), (22, 6), None, None],
    ),
    (
      TAKE5[1],  # best_exo cam02 has no file: view 0 absent
      "test",
      "cam02",
      ",cam01,cam03,",
      [None, (41, 8), (43, 8), None],
    ),
  ]
  for take, split, exo_view, ids, views in cases:
    r = records[split][take]
    assert r["exo_views"].shape == (4, 8, D), take
    assert r["exo_view"].decode() == exo_view
    assert r["exo_view_ids"].decode() == ids
    for k, view in enumerate(views):
      want = zero if view is None else vec(*view)
      steps = 0 if view is None else view[1]
      np.testing.assert_array_equal(r["exo_views"][k], want, err_msg=take)
      np.testing.assert_array_equal(
        r["exo_present"][k], [1] * steps + [0] * (8 - steps), err_msg=take
      )
    np.testing.assert_array_equal(r["exo"], r["exo_views"][0])
  np.testing.assert_array_equal(
    records["test"][TAKE5[1]]["labels"], [3, 3] + [0] * 6
  )
  assert meta["summary"]["test"]["view_examples"] == [1, 2, 1, 0]


def test_egoexo4d_view0_is_the_best_exo_config(egoexo):
  _, data_dir, _ = egoexo
  multi = real._records("egoexo4d_keystep/views", data_dir)
  single = real._records("egoexo4d_keystep/best", data_dir)
  # uid-5 has no best_exo features: the single-view config skips it.
  assert sorted(single["test"]) == ["iiith_cooking_04_1"]
  compared = 0
  for split in SPLITS:
    for take, one in single[split].items():
      many = multi[split][take]
      for field in ("exo", "ego", "labels", "start_frame"):
        assert np.asarray(many[field]).tobytes() == (
          np.asarray(one[field]).tobytes()
        ), (take, field)
      compared += 1
  assert compared == 4


def test_egoexo4d_more_cameras_than_views(egoexo, tmp_path):
  manual, _, _ = egoexo
  with pytest.raises(
    DataError,
    match=r"take georgiatech_covid_01_1 \(uid-1\) has 3 exo cameras in "
    r"\S*omnivore_video \(cam01, cam02, cam04\), more than the 2 views of "
    r"config 'two': build a config with exo_slots=3",
  ):
    real._build(
      egoexo4d_keystep.Builder,
      _egoexo_multi("two", exo_slots=2),
      tmp_path,
      manual,
    )
  with pytest.raises(ValueError, match="exo_camera='all' makes one example"):
    _egoexo_multi("all", exo_camera="all")


def test_egoexo4d_view_of_another_size(egoexo, tmp_path, capsys):
  manual = tmp_path / "manual"
  shutil.copytree(egoexo[0], manual)
  bad = manual / "features" / "omnivore_video" / "uid-1_cam04_0.npy"
  np.save(bad, np.zeros((8, D + 2), np.float32))
  with pytest.raises(DataError) as refused:
    real._build(
      egoexo4d_keystep.Builder, _egoexo_multi("views"), tmp_path / "d", manual
    )
  assert _error_line(refused.value, capsys) == (
    f"error: georgiatech_covid_01_1: exo view other2 features from {bad} "
    "have shape (8, 6), but the config reads every view as 4-D "
    "(feature_dim=4): re-extract this view with the backbone of the other "
    "views, or remove its features to leave the view absent (if every view "
    "is 6-D, use a config with feature_dim=6)\n"
  )
  assert not any((tmp_path / "d").rglob("*.array_record*"))
