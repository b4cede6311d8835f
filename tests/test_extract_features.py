"""Feature extraction from real (tiny, synthetic) video files with a tiny
random-init ViT: frame counts and rate, batching, resume, unreadable files,
and the LMDB key layout."""

import os
import subprocess
import sys

import numpy as np
import pytest

av = pytest.importorskip("av")

from exo2ego_jax.backbone import features as ef  # pylint: disable=g-import-not-at-top
from exo2ego_jax.interop import dinov2  # pylint: disable=g-import-not-at-top
from exo2ego_jax.data import synthetic_video  # pylint: disable=g-import-not-at-top
from exo2ego_jax.models import vit  # pylint: disable=g-import-not-at-top

FRAMES, FPS, DIM = 30, 15, 32
PREPROCESSING = ef.Preprocessing(resize=56, crop=56)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
  root = tmp_path_factory.mktemp("videos")
  synthetic_video.write_dataset(
    str(root),
    2,
    synthetic_video.VideoConfig(size=64, num_frames=FRAMES, fps=FPS),
  )
  # A file that looks like a video but is not one.
  (root / "exo" / "broken.mp4").write_bytes(os.urandom(2048))
  return root


@pytest.fixture(scope="module")
def backbone():
  model = vit.ViT(
    embed_dim=DIM, depth=1, num_heads=4, pos_embed_grid=4, layerscale_init=1.0
  )
  return model, vit.random_params(model, seed=0)


def test_synthetic_videos_have_every_frame(videos):
  names = sorted(os.listdir(videos / "ego"))
  assert names == ["pair000.mp4", "pair001.mp4"]
  labels = np.load(videos / "labels" / "pair000.npy")
  assert labels.shape == (FRAMES,) and labels.max() > 0
  for view in ("exo", "ego"):
    frames = list(ef.decode_frames(str(videos / view / "pair001.mp4")))
    assert [i for i, _ in frames] == list(range(FRAMES))
    assert frames[0][1].size == (64, 64)


def test_extract_resume_and_failures(videos, backbone, tmp_path):
  out = str(tmp_path / "features")
  extractor = ef.FeatureExtractor(*backbone, PREPROCESSING, batch_size=8)
  paths = ef.find_videos([str(videos / "exo")])
  assert [os.path.basename(p) for p in paths] == [
    "broken.mp4",
    "pair000.mp4",
    "pair001.mp4",
  ]

  report = ef.extract(paths, out, "exo", extractor, progress=False)
  assert report["done"] == ["pair000", "pair001"]
  broken = str(videos / "exo" / "broken.mp4")
  assert list(report["failed"]) == [broken]
  features = np.load(os.path.join(out, "exo", "pair000.npy"))
  assert features.shape == (FRAMES, DIM) and features.dtype == np.float32
  assert np.isfinite(features).all()
  assert np.abs(features[1:] - features[:-1]).max() > 1e-3  # frames differ
  assert sorted(os.listdir(os.path.join(out, "exo"))) == [
    "pair000.npy",
    "pair001.npy",
  ]  # no temporary or failed leftovers

  # Batching and padding do not change a frame's feature.
  single = ef.FeatureExtractor(*backbone, PREPROCESSING, batch_size=64)
  direct = single(
    PREPROCESSING.frame(image)
    for _, image in ef.decode_frames(str(videos / "exo" / "pair000.mp4"))
  )
  np.testing.assert_allclose(direct, features, atol=1e-5)

  # Re-running skips finished videos without touching them.
  done = os.path.join(out, "exo", "pair001.npy")
  os.utime(done, (1_000_000, 1_000_000))
  again = ef.extract(paths, out, "exo", extractor, progress=False)
  assert again["skipped"] == ["pair000", "pair001"] and not again["done"]
  assert os.stat(done).st_mtime == 1_000_000
  assert list(again["failed"]) == [broken]


def test_rate_and_lmdb_layout(videos, backbone, tmp_path):
  lmdb = pytest.importorskip("lmdb")
  extractor = ef.FeatureExtractor(*backbone, PREPROCESSING, batch_size=8)
  path = str(videos / "ego" / "pair000.mp4")
  out = str(tmp_path / "out")
  # 5 of every 15 frames per second: source frames 0, 3, 6, ...
  report = ef.extract(
    [path], out, "ego", extractor, fps=5.0, output_format="lmdb", progress=False
  )
  assert report["frames"] == {"pair000": FRAMES // 3}
  npy = ef.extract(
    [path], out + "_npy", "ego", extractor, fps=5.0, progress=False
  )
  assert npy["frames"] == report["frames"]
  features = np.load(os.path.join(out + "_npy", "ego", "pair000.npy"))
  env = lmdb.open(os.path.join(out, "ego"), readonly=True, lock=False)
  with env.begin() as txn:
    keys = [k.decode() for k, _ in txn.cursor()]
    assert keys == [f"pair000_{i:010d}.jpg" for i in range(1, FRAMES + 1, 3)]
    stored = np.stack(
      [np.frombuffer(txn.get(k.encode()), np.float32) for k in keys]
    )
  env.close()
  np.testing.assert_allclose(stored, features, atol=1e-6)
  again = ef.extract(
    [path], out, "ego", extractor, fps=5.0, output_format="lmdb", progress=False
  )
  assert again["skipped"] == ["pair000"]


def test_command_line_reports_failures(videos, backbone, tmp_path):
  model, params = backbone
  weights = str(tmp_path / "weights")
  dinov2.save_backbone(weights, params, vit.config_of(model))
  out = str(tmp_path / "cli")
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "exo2ego_jax.extract_features",
      f"--params={weights}",
      f"--videos={videos / 'exo'}",
      "--view=exo",
      f"--out={out}",
      "--resize=56",
      "--crop=56",
      "--normalisation=half",
      "--batch_size=16",
      "--no_progress",
    ],
    capture_output=True,
    text=True,
    env=dict(os.environ, JAX_PLATFORMS="cpu"),
  )
  assert result.returncode == 1, result.stderr
  assert "broken.mp4" in result.stderr
  assert "2 videos extracted" in result.stdout
  assert np.load(os.path.join(out, "exo", "pair001.npy")).shape == (FRAMES, DIM)
