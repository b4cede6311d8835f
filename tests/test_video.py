"""Monochrome (8- and 10-bit) and colour videos decoded to the same RGB, and
Assembly101-style monochrome ego videos through extract_features into the
official-release builder config."""

import os

import numpy as np
import pytest

av = pytest.importorskip("av")

from exo2ego_jax.backbone import features as ef  # pylint: disable=g-import-not-at-top
from exo2ego_jax.data import video  # pylint: disable=g-import-not-at-top
from exo2ego_jax.models import vit  # pylint: disable=g-import-not-at-top

H, W = 40, 56


def _content(frames, seed=0):
  """(T, H, W) uint8 grey frames that differ from frame to frame."""
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, (frames, H, W), dtype=np.uint8)


def _write(path, grey, pix_fmt):
  """A lossless FFV1 video of grey content as gray10le, gray or colour."""
  with av.open(str(path), "w") as container:
    stream = container.add_stream("ffv1", rate=30)
    stream.width, stream.height, stream.pix_fmt = W, H, pix_fmt
    for g in grey:
      if pix_fmt == "gray10le":  # the full 10-bit range: 255 -> 1023
        frame = av.VideoFrame.from_ndarray(
          ((g.astype(np.int32) * 1023 + 127) // 255).astype(np.uint16),
          format="gray10le",
        )
      elif pix_fmt == "gray":
        frame = av.VideoFrame.from_ndarray(g, format="gray")
      else:
        frame = av.VideoFrame.from_ndarray(
          np.repeat(g[..., None], 3, -1), format="rgb24"
        )
      for packet in stream.encode(frame):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
  return str(path)


def test_gray10_gray8_and_colour_decode_to_the_same_rgb(tmp_path):
  grey = _content(3)
  decoded = {}
  for pix_fmt in ("gray10le", "gray", "bgr0"):
    path = _write(tmp_path / f"{pix_fmt}.mkv", grey, pix_fmt)
    with av.open(path) as c:
      assert c.streams.video[0].codec_context.pix_fmt == pix_fmt
    decoded[pix_fmt] = video.decode_video(path)
    assert decoded[pix_fmt].shape == (3, H, W, 3)
    assert decoded[pix_fmt].dtype == np.uint8
  for frames in decoded.values():
    np.testing.assert_array_equal(frames, np.repeat(grey[..., None], 3, -1))
  as_float = video.decode_video(
    _write(tmp_path / "f.mkv", grey, "gray10le"), np.float32
  )
  np.testing.assert_allclose(as_float, decoded["gray"] / 255.0, atol=1e-7)


def test_ten_bit_scaling_is_full_range_and_rounded():
  plane = np.array([0, 1, 2, 511, 512, 1020, 1022, 1023], np.uint16)
  np.testing.assert_array_equal(
    video.gray_to_uint8(plane, 10), [0, 0, 0, 127, 128, 254, 255, 255]
  )


@pytest.fixture(scope="module")
def backbone():
  model = vit.ViT(
    embed_dim=32, depth=1, num_heads=4, pos_embed_grid=4, layerscale_init=1.0
  )
  return model, vit.random_params(model, seed=0)


def test_features_of_mono10_and_colour_frames_are_equal(tmp_path, backbone):
  grey = _content(5, seed=1)
  extractor = ef.FeatureExtractor(
    *backbone, ef.Preprocessing(56, 56), batch_size=4
  )
  paths = [
    _write(tmp_path / "rec.mkv", grey, "gray10le"),
    _write(tmp_path / "colour.mkv", grey, "bgr0"),
  ]
  out = {}
  for view, path in zip(("mono", "colour"), paths):
    report = ef.extract(
      [path], str(tmp_path / "out"), view, extractor, progress=False
    )
    assert report["frames"] == {os.path.splitext(os.path.basename(path))[0]: 5}
    out[view] = np.load(
      tmp_path
      / "out"
      / view
      / (os.path.splitext(os.path.basename(path))[0] + ".npy")
    )
  assert out["mono"].shape == (5, 32)
  np.testing.assert_array_equal(out["mono"], out["colour"])
  assert np.abs(out["mono"][1:] - out["mono"][:-1]).max() > 1e-3


def test_mono10_ego_videos_through_extraction_build_and_train(
  tmp_path, backbone
):
  """Ego videos named <recording>.mkv, extracted to npy, read by the release
  config next to a release exo LMDB of the same dimension; a video whose
  length differs from the exo's beyond max_trim_frames is refused."""
  from configs import synthetic_exo  # pylint: disable=g-import-not-at-top
  from exo2ego_jax.training import trainer  # pylint: disable=g-import-not-at-top
  from tfds_builders import assembly101_sync  # pylint: disable=g-import-not-at-top
  from tfds_builders.common.errors import DataError  # pylint: disable=g-import-not-at-top
  import test_builders_releases as releases  # pylint: disable=g-import-not-at-top

  dim = 32
  manual = releases._manual(tmp_path / "m", dim=dim)  # pylint: disable=protected-access
  ego_dir = manual / "ego_features" / releases.EGO
  for npy in ego_dir.glob("*.npy"):
    os.remove(npy)  # replaced by the extraction of the videos below
  videos = tmp_path / "videos"
  os.makedirs(videos)
  recordings = sorted({v.split("_", 1)[1] for v in releases.VIDEOS})
  lengths = {r: releases.FRAMES for r in recordings}
  lengths[recordings[0]] += 31  # not this recording's video
  paths = [
    _write(videos / f"{r}.mkv", _content(n, seed=i), "gray10le")
    for i, (r, n) in enumerate(sorted(lengths.items()))
  ]
  extractor = ef.FeatureExtractor(
    *backbone, ef.Preprocessing(56, 56), batch_size=16
  )
  report = ef.extract(
    paths, str(manual / "ego_features"), releases.EGO, extractor, progress=False
  )
  assert report["frames"] == lengths

  config = assembly101_sync.make_release_config(
    releases.EXO, releases.EGO, "npy", feature_dim=dim, name="mono"
  )
  with pytest.raises(DataError) as e:
    releases._build(config, tmp_path / "d", manual)  # pylint: disable=protected-access
  assert str(ego_dir / f"{recordings[0]}.npy") in str(e.value)
  assert "end at frame 71" in str(e.value) and "\n" not in str(e.value)

  os.remove(ego_dir / f"{recordings[0]}.npy")
  os.makedirs(videos / "good")
  good = _write(
    videos / "good" / f"{recordings[0]}.mkv",
    _content(releases.FRAMES),
    "gray10le",
  )
  ef.extract(
    [good],
    str(manual / "ego_features"),
    releases.EGO,
    extractor,
    progress=False,
  )
  releases._build(config, tmp_path / "d", manual)  # pylint: disable=protected-access
  records = releases._records("assembly101_sync/mono", tmp_path / "d")  # pylint: disable=protected-access
  test = records["test"][f"assembly_{recordings[2]}"]
  features = np.load(ego_dir / f"{recordings[2]}.npy")
  np.testing.assert_array_equal(test["ego"], features[3 - 1 : 26 - 1])

  cfg = synthetic_exo.get_config()
  cfg.dataset.name = "assembly101_sync/mono"
  cfg.dataset.data_dir = str(tmp_path / "d")
  cfg.data.eval_view = "ego"
  cfg.data.max_frames, cfg.data.chunk_size, cfg.data.zoom = 8, 1, False
  cfg.data.batch_size = cfg.data.eval_batch_size = 1
  cfg.num_epochs, cfg.eval_every_epochs, cfg.log_every_steps = 1, 1, 1
  cfg.progress = False
  results = trainer.train_and_evaluate(cfg, str(tmp_path / "run"))
  assert np.isfinite(results["validation"]["mof"])
