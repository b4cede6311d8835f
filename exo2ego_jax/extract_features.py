"""Per-frame backbone features from video files.

  python -m exo2ego_jax.extract_features --params weights/dinov2_vitl14 \
      --videos 'recordings/*/C10095_rgb.mp4' --view exo --out features

Each video is decoded with PyAV, sampled at `--fps` (every frame by
default), resized (shorter side, bilinear, as torchvision's `Resize` on PIL
images), center-cropped and normalised (ImageNet statistics, or 0.5/0.5 with
`--normalisation half`, as the synchronization paper's extractor), and fed in
batches to a jit-compiled backbone whose batch is sharded over the host's
devices (a `data` mesh axis; several hosts split the videos between them).
The per-frame feature is the CLS token after the final LayerNorm (or the
mean patch token).

Outputs (`--format`):
  npy   `<out>/<view>/<video>.npy`, (frames, D): the `feature_folder` layout.
  lmdb  an LMDB environment in `<out>/<view>/` with one raw float32 vector
        per frame under `{video}_{frame:010d}.jpg`, frames numbered from 1
        (`--lmdb_first_frame`) in the source video's frames, as the
        synchronization paper's extractor writes them (`--out
        <manual_dir>/DINOv2_features` is the assembly101_sync layout).
Re-running skips finished videos: an .npy is written to a temporary name and
renamed when complete, and a video's LMDB keys are committed in one
transaction. Unreadable videos are reported by name after the others are
done, and the command exits with status 1.
"""

from __future__ import annotations

import dataclasses
import glob
import math
import os
import sys
from collections.abc import Iterator, Sequence

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import tqdm

from exo2ego_jax.runtime import cli
from exo2ego_jax.runtime import distributed
from exo2ego_jax.data import video as video_lib
from exo2ego_jax.interop import dinov2
from exo2ego_jax.models import vit

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")
NORMALISATIONS = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}
FEATURES = ("cls", "mean_patch")
LMDB_MAP_SIZE = 1 << 40  # address space only; the file grows as written


@dataclasses.dataclass(frozen=True)
class Preprocessing:
  """How a frame becomes a network input; shared with distill_backbone."""

  resize: int = 224            # shorter side after resizing, pixels
  crop: int = 224              # square center crop, pixels
  normalisation: str = "imagenet"

  def __post_init__(self):
    if self.normalisation not in NORMALISATIONS:
      raise ValueError(f"normalisation {self.normalisation!r}: use one of "
                       f"{', '.join(NORMALISATIONS)}")
    if self.crop > self.resize:
      raise ValueError(f"crop {self.crop} is larger than the resized shorter "
                       f"side {self.resize}")

  def frame(self, image: Image.Image | np.ndarray) -> np.ndarray:
    """(crop, crop, 3) uint8: torchvision's Resize(resize) + CenterCrop."""
    if isinstance(image, np.ndarray):
      image = Image.fromarray(image)
    image = image.convert("RGB")
    width, height = image.size
    scale = self.resize / min(width, height)
    size = ((self.resize, int(self.resize * height / width)) if width <= height
            else (int(self.resize * width / height), self.resize))
    if scale != 1.0:
      image = image.resize(size, Image.BILINEAR)
    width, height = image.size
    top = int(round((height - self.crop) / 2.0))
    left = int(round((width - self.crop) / 2.0))
    return np.asarray(image.crop((left, top, left + self.crop,
                                  top + self.crop)), np.uint8)

  def normalise(self, frames: jax.Array) -> jax.Array:
    """uint8 (..., 3) -> float32 network input (on device, in the jit)."""
    mean, std = (jnp.asarray(v, jnp.float32)
                 for v in NORMALISATIONS[self.normalisation])
    return (frames.astype(jnp.float32) / 255.0 - mean) / std


def decode_frames(path: str, fps: float | None = None
                  ) -> Iterator[tuple[int, Image.Image]]:
  """(source frame index, RGB image) of a video, every frame or the first
  frame of each 1/fps interval."""
  import av  # pylint: disable=g-import-not-at-top
  with av.open(path) as container:
    if not container.streams.video:
      raise ValueError("no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    last_bin = -1
    for index, frame in enumerate(container.decode(stream)):
      if fps:
        seconds = (frame.time if frame.time is not None
                   else index / float(stream.average_rate or 1))
        current_bin = math.floor(seconds * fps + 1e-6)
        if current_bin <= last_bin:
          continue
        last_bin = current_bin
      yield index, Image.fromarray(video_lib.frame_to_rgb(frame))  # mono: 3 ch.


def find_videos(patterns: Sequence[str]) -> list[str]:
  """Video files named by paths, globs or directories (searched for
  VIDEO_EXTENSIONS), sorted, without duplicates."""
  found = []
  for pattern in patterns:
    if os.path.isdir(pattern):
      found += [os.path.join(pattern, name) for name in os.listdir(pattern)
                if name.lower().endswith(VIDEO_EXTENSIONS)]
      continue
    matches = glob.glob(pattern)
    if not matches:
      raise FileNotFoundError(f"no video matches {pattern!r}")
    found += matches
  paths = sorted(set(os.path.abspath(p) for p in found))
  names = [video_name(p) for p in paths]
  clashes = sorted({n for n in names if names.count(n) > 1})
  if clashes:
    raise ValueError(f"several videos are named {clashes[:3]}: outputs are "
                     "keyed by file name; extract them into different --out")
  return paths


def video_name(path: str) -> str:
  return os.path.splitext(os.path.basename(path))[0]


def lmdb_key(video: str, frame_index: int, first_frame: int = 1) -> bytes:
  """Key of source frame `frame_index` (0-based) in the public layout."""
  return f"{video}_{frame_index + first_frame:010d}.jpg".encode()


def local_mesh() -> jax.sharding.Mesh:
  """This process's devices on one `data` axis (on several hosts, each
  extracts its own share of the videos). Auto axes: the model mixes
  replicated parameters (CLS token, positions) with batch-sharded
  activations, which explicit-sharding meshes (jax.make_mesh's default)
  refuse to combine."""
  return jax.make_mesh((jax.local_device_count(),), ("data",),
                       axis_types=(jax.sharding.AxisType.Auto,),
                       devices=jax.local_devices())


def make_feature_fn(model: vit.ViT, preprocessing: Preprocessing,
                    feature: str = "cls"):
  """(params, uint8 frames (B, S, S, 3)) -> (B, D) per-frame features."""
  if feature not in FEATURES:
    raise ValueError(f"feature {feature!r}: use one of {', '.join(FEATURES)}")

  def features(params, frames):
    out = model.apply({"params": params}, preprocessing.normalise(frames))
    return out["cls"] if feature == "cls" else out["patch_tokens"].mean(1)
  return features


class FeatureExtractor:
  """A backbone compiled once, batch-sharded over this process's devices."""

  def __init__(self, model: vit.ViT, params, preprocessing: Preprocessing,
               feature: str = "cls", batch_size: int = 64):
    embed = make_feature_fn(model, preprocessing, feature)
    devices = jax.local_device_count()
    self.batch_size = -(-batch_size // devices) * devices
    mesh = local_mesh()
    self.data_sharding = jax.sharding.NamedSharding(
        mesh, jax.sharding.PartitionSpec("data"))
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    self.params = jax.device_put(params, replicated)
    self.preprocessing = preprocessing
    self._embed = jax.jit(embed, in_shardings=(replicated, self.data_sharding),
                          out_shardings=self.data_sharding)

  def __call__(self, images: Iterator[np.ndarray]) -> np.ndarray:
    """(N, D) float32 features of an iterator of preprocessed frames. Host
    decoding overlaps the device: results are fetched at the end."""
    pending, batch = [], []
    size = self.preprocessing.crop

    def flush():
      frames = np.zeros((self.batch_size, size, size, 3), np.uint8)
      frames[:len(batch)] = np.stack(batch)
      pending.append((self._embed(self.params, jax.device_put(
          frames, self.data_sharding)), len(batch)))
      batch.clear()

    for image in images:
      batch.append(image)
      if len(batch) == self.batch_size:
        flush()
    if batch:
      flush()
    if not pending:
      return np.zeros((0, 0), np.float32)
    return np.concatenate([np.asarray(out, np.float32)[:n]
                           for out, n in pending])


def _write_npy(path: str, features: np.ndarray) -> None:
  tmp = path + ".tmp"
  with open(tmp, "wb") as f:
    np.save(f, features)
  os.replace(tmp, path)  # a half-written file never has the final name


def extract(videos: Sequence[str], out_dir: str, view: str,
            extractor: FeatureExtractor, fps: float | None = None,
            output_format: str = "npy", dtype: str = "float32",
            lmdb_first_frame: int = 1, progress: bool = True) -> dict:
  """Extracts every video not yet done; returns {"done": [...], "skipped":
  [...], "failed": {path: reason}, "frames": {name: count}}."""
  if output_format not in ("npy", "lmdb"):
    raise ValueError(f"format {output_format!r}: use 'npy' or 'lmdb'")
  if output_format == "lmdb" and dtype != "float32":
    raise ValueError("LMDB values are raw float32 vectors (what readers "
                     "expect): use --dtype float32 with --format lmdb")
  view_dir = os.path.join(out_dir, view)
  os.makedirs(view_dir, exist_ok=True)
  env = None
  if output_format == "lmdb":
    import lmdb  # pylint: disable=g-import-not-at-top
    env = lmdb.open(view_dir, map_size=LMDB_MAP_SIZE)
  report = {"done": [], "skipped": [], "failed": {}, "frames": {}}
  bar = tqdm.tqdm(videos, desc=f"features {view}", unit="video",
                  disable=not progress, dynamic_ncols=True)
  for path in bar:
    name = video_name(path)
    bar.set_postfix(video=name)
    npy_path = os.path.join(view_dir, f"{name}.npy")
    if output_format == "npy" and os.path.exists(npy_path):
      report["skipped"].append(name)
      continue
    if env is not None:
      with env.begin() as txn:
        if txn.get(lmdb_key(name, 0, lmdb_first_frame)) is not None:
          report["skipped"].append(name)
          continue
    indices, decode_errors = [], []

    def frames():
      try:
        for index, image in decode_frames(path, fps):
          indices.append(index)
          yield extractor.preprocessing.frame(image)
      except Exception as e:  # pylint: disable=broad-except
        # PyAV raises many error types for damaged files: keep the first,
        # report the file, go on with the others. Model errors still raise.
        decode_errors.append(f"{type(e).__name__}: {e}")

    features = extractor(frames())
    if not indices and not decode_errors:
      decode_errors.append("no video frames could be decoded")
    if decode_errors:
      report["failed"][path] = decode_errors[0]
      bar.write(f"cannot read {path}: {decode_errors[0]}")
      continue
    features = features.astype(dtype)
    if env is None:
      _write_npy(npy_path, features)
    else:
      with env.begin(write=True) as txn:  # all of a video's frames, or none
        for index, vector in zip(indices, features):
          txn.put(lmdb_key(name, index, lmdb_first_frame), vector.tobytes())
    report["done"].append(name)
    report["frames"][name] = len(indices)
  bar.close()
  if env is not None:
    env.close()
  return report


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  distributed.initialize()  # multi-host runs only
  if f.format == "lmdb" and jax.process_count() > 1:
    raise app.UsageError("LMDB cannot take writes from several hosts: use "
                         "--format npy, or extract on one host")
  if bool(f.params) == bool(f.random_init):
    raise app.UsageError("give --params DIR (converted weights or a "
                         "distill_backbone workdir) or --random_init")
  if f.params:
    model, params = dinov2.load_backbone(f.params)
  else:
    model = vit.vit_from_name(f.model)
    params = vit.random_params(model, f.seed)
  extractor = FeatureExtractor(
      model, params, Preprocessing(f.resize, f.crop, f.normalisation),
      feature=f.feature, batch_size=f.batch_size)
  # Every process takes every process_count-th video.
  videos = find_videos(f.videos)[jax.process_index()::jax.process_count()]
  report = extract(videos, f.out, f.view, extractor, fps=f.fps,
                   output_format=f.format, dtype=f.dtype,
                   lmdb_first_frame=f.lmdb_first_frame,
                   progress=not f.no_progress)
  print(f"{len(report['done'])} videos extracted, {len(report['skipped'])} "
        f"already done, {len(report['failed'])} failed")
  if report["failed"]:
    for path, reason in report["failed"].items():
      print(f"FAILED {path}: {reason}", file=sys.stderr)
    sys.exit(1)


def define_flags() -> None:
  flags.DEFINE_multi_string("videos", None, "Video files, globs or "
                            "directories (repeatable).", required=True)
  flags.DEFINE_string("out", None, "Output directory.", required=True)
  flags.DEFINE_string("view", "exo", "View name: outputs go to <out>/<view>.")
  flags.DEFINE_string("params", None, "Backbone directory (import_weights "
                      "output or a distill_backbone workdir).")
  flags.DEFINE_bool("random_init", False, "Use a randomly initialised "
                    "--model instead of --params (testing only).")
  flags.DEFINE_enum("model", "vit_large", list(vit.VIT_SIZES),
                    "Size for --random_init.")
  flags.DEFINE_integer("seed", 0, "Seed for --random_init.")
  flags.DEFINE_float("fps", None, "Frames per second to sample (default: "
                     "every frame).")
  flags.DEFINE_integer("resize", 224, "Shorter side after resizing.")
  flags.DEFINE_integer("crop", 224, "Center crop size.")
  flags.DEFINE_enum("normalisation", "imagenet", list(NORMALISATIONS),
                    "Input normalisation statistics.")
  flags.DEFINE_enum("feature", "cls", list(FEATURES), "Per-frame feature.")
  flags.DEFINE_integer("batch_size", 64, "Frames per step (this host's "
                       "devices).")
  flags.DEFINE_enum("format", "npy", ["npy", "lmdb"], "Output layout.")
  flags.DEFINE_enum("dtype", "float32", ["float32", "float16"],
                    "Stored feature dtype (npy only).")
  flags.DEFINE_integer("lmdb_first_frame", 1, "LMDB key number of a video's "
                       "first frame (the public extractor counts from 1).")
  flags.DEFINE_bool("no_progress", False, "Hide the progress bar.")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
