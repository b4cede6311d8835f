"""Public releases as users download them: Assembly101's official DINOv2
features (exo LMDB) with the user's own ego extraction (npy or LMDB), and
Ego-Exo4D's Omnivore and MAWS CLIP `.pt` files, built with array_record (no
TensorFlow), read back and trained on for one epoch; inputs of the wrong
layout, backbone or length refused naming the file."""

import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from configs import synthetic_exo
from exo2ego_jax.data.constants import SPLITS
from exo2ego_jax.training import trainer
from tfds_builders import assembly101_sync
from tfds_builders.common.errors import DataError

lmdb = pytest.importorskip("lmdb")

D = 4
EXO, EGO = "C10119_rgb", "HMC_84358933_mono10bit"
NAMES = ["attach arm connector", "screw chassis", "attempt to screw wheel"]
ACTIONS = "action_id,verb_id,noun_id,action_cls,verb_cls,noun_cls\n" + "".join(
  f"{i},{i},{i},{n},{n.split()[0]},{n}\n" for i, n in enumerate(NAMES)
)
RECORDINGS = [
  f"nusar-2021_action_both_90{i}1-a0{i}_90{i}1_user_id_2021-02-0{i}_1{i}0000"
  for i in range(1, 5)
]
# video -> (split, coarse segments (start, end, label)); features: frames 1..40.
VIDEOS = {
  f"assembly_{RECORDINGS[0]}": ("train", [(6, 10, 0), (10, 20, 1)]),
  f"disassembly_{RECORDINGS[0]}": ("sync_pairs", [(2, 12, 2), (12, 30, 1)]),
  f"assembly_{RECORDINGS[1]}": ("validation", [(1, 9, 1), (9, 18, 0)]),
  f"assembly_{RECORDINGS[2]}": ("test", [(3, 9, 0), (9, 26, 1)]),
}
FRAMES = 40
RELEASE_LMDB = "DINOv2_features/lmdb_fullImg"


def _vec(recording, view, frame, dim=D):
  """A recognisable vector of (recording, view, frame)."""
  seed = 10 * RECORDINGS.index(recording) + (1 if view == EXO else 2)
  return (seed * 1000 + frame + np.arange(dim) / 10).astype(np.float32)


def _write_lmdb(path, items):
  os.makedirs(path, exist_ok=True)
  env = lmdb.open(str(path), map_size=1 << 26)
  with env.begin(write=True) as txn:
    for key, value in items:
      txn.put(key.encode(), np.asarray(value, np.float32).tobytes())
  env.close()


def _manual(
  root,
  dim=D,
  ego_format="npy",
  ego_frames=FRAMES,
  exo_key="{rec}/{view}/{view}_{frame:010d}.jpg",
):
  """Annotations, the release's exo LMDB and an ego extraction."""
  ann = root / "coarse-annotations"
  os.makedirs(ann / "coarse_labels", exist_ok=True)
  (ann / "actions.csv").write_text(ACTIONS)
  os.makedirs(root / "splits", exist_ok=True)
  lists = {s: [] for s in SPLITS}
  for video, (split, segments) in VIDEOS.items():
    lists[split].append(video)
    (ann / "coarse_labels" / f"{video}.txt").write_text(
      "".join(f"{s:09d}\t{e:09d}\t{NAMES[l]}\n" for s, e, l in segments)
    )
  for split, videos in lists.items():
    (root / "splits" / f"{split}.txt").write_text("\n".join(videos) + "\n")
  recordings = sorted({v.split("_", 1)[1] for v in VIDEOS})
  _write_lmdb(
    root / RELEASE_LMDB,
    [
      (exo_key.format(rec=r, view=EXO, frame=f), _vec(r, EXO, f, dim))
      for r in recordings
      for f in range(1, FRAMES + 1)
    ],
  )
  ego_dir = root / "ego_features" / EGO
  if ego_format == "npy":
    os.makedirs(ego_dir, exist_ok=True)
    for r in recordings:  # row i: the video's frame i + 1
      np.save(
        ego_dir / f"{r}.npy",
        np.stack([_vec(r, EGO, f, dim) for f in range(1, ego_frames + 1)]),
      )
  else:
    _write_lmdb(
      ego_dir,
      [
        (f"{r}_{f:010d}.jpg", _vec(r, EGO, f, dim))
        for r in recordings
        for f in range(1, ego_frames + 1)
      ],
    )
  return root


def _build(config, data_dir, manual):
  builder = assembly101_sync.Builder(
    config=config, data_dir=str(data_dir), file_format="array_record"
  )
  builder.download_and_prepare(
    download_config=tfds.download.DownloadConfig(manual_dir=str(manual))
  )
  return builder


def _records(name, data_dir):
  sources = tfds.data_source(name, data_dir=str(data_dir))
  return {
    split: {r["video_id"].decode(): r for r in source}
    for split, source in sources.items()
  }


def _tiny(ego_format, **kwargs):
  return assembly101_sync.make_release_config(
    EXO, EGO, ego_format, feature_dim=D, name=f"tiny_{ego_format}", **kwargs
  )


@pytest.mark.parametrize(
  "config",
  [
    "dinov2_vitg14_c10119_hmc84358933_npy",
    "dinov2_vitg14_c10119_hmc84358933_lmdb_fp16",
  ],
)
def test_registered_release_configs_build_and_train_one_epoch(tmp_path, config):
  ego_format = "lmdb" if "_lmdb" in config else "npy"
  manual = _manual(tmp_path / "m", dim=1536, ego_format=ego_format)
  name = f"assembly101_sync/{config}"
  builder = _build(config, tmp_path / "d", manual)
  assert builder.info.metadata["ego_format"] == ego_format
  records = _records(name, tmp_path / "d")
  dtype = np.float16 if "fp16" in config else np.float32
  for video, (split, segments) in VIDEOS.items():
    r, rec = records[split][video], video.split("_", 1)[1]
    frames = range(segments[0][0], segments[-1][1])
    # Annotation frame f is key frame f of the release and row f - 1 of an
    # ego npy (both count the video's frames from 1).
    for key, view in (("exo", EXO), ("ego", EGO)):
      assert r[key].dtype == dtype
      np.testing.assert_array_equal(
        r[key],
        np.stack([_vec(rec, view, f, 1536) for f in frames]).astype(dtype),
      )
    np.testing.assert_array_equal(
      r["labels"], [l for s, e, l in segments for _ in range(s, e)]
    )
    assert r["start_frame"] == frames[0] and r["ego_view"] == EGO.encode()
  if ego_format == "npy":
    return  # trained in test_video.py, extracted from monochrome videos

  cfg = synthetic_exo.get_config()
  cfg.dataset.name, cfg.dataset.data_dir = name, str(tmp_path / "d")
  cfg.data.eval_view = "ego"
  cfg.data.max_frames, cfg.data.chunk_size, cfg.data.zoom = 8, 1, False
  cfg.data.batch_size = cfg.data.eval_batch_size = 1
  cfg.num_epochs, cfg.eval_every_epochs, cfg.log_every_steps = 1, 1, 1
  cfg.progress = False
  results = trainer.train_and_evaluate(cfg, str(tmp_path / "run"))
  assert results["total_steps"] >= 1
  assert np.isfinite(results["validation"]["mof"])


def _refused(tmp_path, config, manual):
  with pytest.raises(DataError) as e:
    _build(config, tmp_path / "d", manual)
  message = str(e.value)
  assert "\n" not in message
  return message


def test_release_with_the_paper_key_layout_is_refused(tmp_path):
  # Keys of the paper's own extractor (<video>_<frame>.jpg), not the release's.
  manual = _manual(tmp_path / "m", exo_key="assembly_{rec}_{frame:010d}.jpg")
  message = _refused(tmp_path, _tiny("npy"), manual)
  assert message.startswith(f"{manual / RELEASE_LMDB}: key 'assembly_nusar-")
  assert (
    f"not in the layout '<recording>/{EXO}/{EXO}_<frame:010d>.jpg'" in message
  )


def test_release_of_another_dimension_is_refused(tmp_path):
  manual = _manual(tmp_path / "m", dim=1024)
  config = "dinov2_vitg14_c10119_hmc84358933_npy"
  message = _refused(tmp_path, config, manual)
  assert message.startswith(f"{manual / RELEASE_LMDB}: key '{RECORDINGS[0]}/")
  assert "holds a 1024-D float32 vector" in message
  assert f"config '{config}' reads 1536-D features" in message


@pytest.mark.parametrize("ego_format", ["npy", "lmdb"])
def test_ego_extraction_of_another_backbone_is_refused(tmp_path, ego_format):
  manual = _manual(tmp_path / "m", dim=8, ego_format=ego_format)
  # The release (exo) at the config's dimension, the ego at another one.
  exo = _manual(tmp_path / "x", dim=4)
  env = lmdb.open(str(exo / RELEASE_LMDB), readonly=True, lock=False)
  with env.begin() as txn:
    items = [
      (bytes(k).decode(), np.frombuffer(v, np.float32)) for k, v in txn.cursor()
    ]
  env.close()
  os.remove(manual / RELEASE_LMDB / "data.mdb")
  _write_lmdb(manual / RELEASE_LMDB, items)
  message = _refused(tmp_path, _tiny(ego_format), manual)
  ego_dir = manual / "ego_features" / EGO
  if ego_format == "npy":
    assert message.startswith(
      f"{ego_dir}/{RECORDINGS[0]}.npy: 8-D ego features"
    )
  else:
    assert message.startswith(
      f"{ego_dir}: key '{RECORDINGS[0]}_0000000001.jpg'"
      " holds a 8-D float32 vector"
    )
  assert "with DINOv2 ViT-g/14" in message


def test_ego_lmdb_named_by_view_is_refused(tmp_path):
  manual = _manual(tmp_path / "m", ego_format="lmdb")
  ego_dir = manual / "ego_features" / EGO
  os.remove(ego_dir / "data.mdb")
  _write_lmdb(
    ego_dir,
    [
      (f"{EGO}_{f:010d}.jpg", _vec(RECORDINGS[0], EGO, f))
      for f in range(1, FRAMES + 1)
    ],
  )
  message = _refused(tmp_path, _tiny("lmdb"), manual)
  assert message.startswith(
    f"{ego_dir}: key '{EGO}_0000000001.jpg' is not in "
    "the layout '<recording>_<frame:010d>.jpg'"
  )


@pytest.mark.parametrize("ego_format", ["npy", "lmdb"])
@pytest.mark.parametrize("ego_frames", [FRAMES + 31, FRAMES - 31])
def test_ego_video_of_another_length_is_refused(
  tmp_path, ego_frames, ego_format
):
  manual = _manual(tmp_path / "m", ego_frames=ego_frames, ego_format=ego_format)
  message = _refused(tmp_path, _tiny(ego_format), manual)
  ego_dir = manual / "ego_features" / EGO
  video = f"assembly_{RECORDINGS[0]}"
  if ego_format == "npy":
    named = f"ego features {ego_dir / RECORDINGS[0]}.npy end at"
  else:  # the LMDB and the first key of the recording's annotated range
    named = f"ego features {ego_dir} keys '{RECORDINGS[0]}_0000000006.jpg'..."
  assert message.startswith(f"{video}: {named}")
  assert (
    f"end at frame {ego_frames} but the exo release "
    f"{manual / RELEASE_LMDB} at frame {FRAMES}: 31 frames apart, more than "
    "max_trim_frames=30." in message
  )
  # Within the policy (a few frames apart) it builds.
  ok = _manual(tmp_path / "ok", ego_frames=FRAMES + 3, ego_format=ego_format)
  _build(_tiny(ego_format), tmp_path / "d_ok", ok)


def test_egoexo4d_pt_files_named_as_the_downloader_names_them(tmp_path):
  """`features/omnivore_video/<take_uid>_<cam_id>_<stream_id>.pt` (one
  torch.save'd (windows, D) tensor, as ego4d's extract_features writes) and
  the extraction's config.yaml beside them; the registered config builds and
  trains one epoch."""
  torch = pytest.importorskip("torch")
  import test_builders_real as real  # pylint: disable=g-import-not-at-top
  from tfds_builders import egoexo4d_keystep  # pylint: disable=g-import-not-at-top

  manual = real._egoexo_manual(tmp_path / "m")  # pylint: disable=protected-access
  features = manual / "features" / "omnivore_video"
  for npy in sorted(features.glob("*.npy")):
    values = np.repeat(np.load(npy), 1536 // D, axis=1)
    torch.save(torch.from_numpy(values), npy.with_suffix(".pt"))
    os.remove(npy)
  (features / "config.yaml").write_text(
    "inference_config:\n  fps: 30\n  frame_window: 32\n  stride: 16\n"
  )
  config = "omnivore_best_exo"
  builder = egoexo4d_keystep.Builder(
    config=config, data_dir=str(tmp_path / "d"), file_format="array_record"
  )
  builder.download_and_prepare(
    download_config=tfds.download.DownloadConfig(manual_dir=str(manual))
  )
  records = _records(f"egoexo4d_keystep/{config}", tmp_path / "d")
  every = {vid: r for split in records.values() for vid, r in split.items()}
  r = every["georgiatech_covid_01_1"]  # best_exo cam02: uid-1_cam02_0.pt
  np.testing.assert_array_equal(
    r["exo"], np.repeat([real._vec(2, t) for t in range(8)], 1536 // D, 1)
  )  # pylint: disable=protected-access
  assert r["ego"].shape == (8, 1536) and r["exo_view"] == b"cam02"
  # Steps at window centres (16 + 16 i) / 30 s: 0.53, 1.07, 1.6, 2.13, 2.67,
  # 3.2...; keysteps [1, 2) and [2, 3) s.
  np.testing.assert_array_equal(r["labels"], [0, 1, 1, 2, 2, 0, 0, 0])

  cfg = synthetic_exo.get_config()
  cfg.dataset.name = f"egoexo4d_keystep/{config}"
  cfg.dataset.data_dir = str(tmp_path / "d")
  cfg.data.eval_view = "ego"
  cfg.data.max_frames, cfg.data.chunk_size, cfg.data.zoom = 4, 1, False
  cfg.data.batch_size = cfg.data.eval_batch_size = 1
  cfg.num_epochs, cfg.eval_every_epochs, cfg.log_every_steps = 1, 1, 1
  cfg.progress = False
  results = trainer.train_and_evaluate(cfg, str(tmp_path / "run"))
  assert np.isfinite(results["validation"]["mof"])


def test_egoexo4d_maws_clip_features_at_30_fps(tmp_path):
  """`features/maws_clip_2b/<take_uid>_<cam_id>_<stream_id>.pt`, float16
  (2048-D, one per frame, as ego4d's MAWS extraction saves them), read by
  the registered config: step i is frame i, at i / 30 s."""
  torch = pytest.importorskip("torch")
  import test_builders_real as real  # pylint: disable=g-import-not-at-top
  from tfds_builders import egoexo4d_keystep  # pylint: disable=g-import-not-at-top

  manual = real._egoexo_manual(tmp_path / "m")  # pylint: disable=protected-access
  for npy in (manual / "features" / "omnivore_video").glob("*.npy"):
    os.remove(npy)
  features = manual / "features" / "maws_clip_2b"
  os.makedirs(features)
  written = {}
  for i, uid in enumerate(sorted(real.TAKES)):
    for j, camera in enumerate(("cam01_0", "cam02_0", "aria01_rgb")):
      rng = np.random.default_rng([i, j])
      values = torch.from_numpy(rng.standard_normal((100, 2048))).half()
      torch.save(values, features / f"{uid}_{camera}.pt")
      written[uid, camera[:5]] = values.numpy()
  config = "maws_clip_2b_best_exo_fp16"
  builder = egoexo4d_keystep.Builder(
    config=config, data_dir=str(tmp_path / "d"), file_format="array_record"
  )
  builder.download_and_prepare(
    download_config=tfds.download.DownloadConfig(manual_dir=str(manual))
  )
  assert builder.info.metadata["fps"] == 30.0
  records = _records(f"egoexo4d_keystep/{config}", tmp_path / "d")
  every = {vid: r for split in records.values() for vid, r in split.items()}
  r = every["georgiatech_covid_01_1"]  # uid-1, best_exo cam02
  assert r["exo"].dtype == r["ego"].dtype == np.float16
  np.testing.assert_array_equal(r["exo"], written["uid-1", "cam02"])
  np.testing.assert_array_equal(r["ego"], written["uid-1", "aria0"])
  # Keysteps [1, 2) s and [2, 3) s: frames 30..59 and 60..89.
  np.testing.assert_array_equal(
    r["labels"], [0] * 30 + [1] * 30 + [2] * 30 + [0] * 10
  )
