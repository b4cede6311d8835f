"""Per-frame backbone features of video files: decoding and sampling,
torchvision-style preprocessing, a compiled batch-sharded backbone, and the
npy/LMDB writers (`python -m exo2ego_jax.extract_features` is the command;
its docstring describes the outputs). Shared with backbone/distill.py.
"""

from __future__ import annotations

import dataclasses
import glob
import math
import os
from collections.abc import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import tqdm

from exo2ego_jax.data import video as video_lib
from exo2ego_jax.models import vit
from exo2ego_jax.runtime import sharding

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

  resize: int = 224  # shorter side after resizing, pixels
  crop: int = 224  # square center crop, pixels
  normalisation: str = "imagenet"

  def __post_init__(self):
    if self.normalisation not in NORMALISATIONS:
      raise ValueError(
        f"normalisation {self.normalisation!r}: use one of "
        f"{', '.join(NORMALISATIONS)}"
      )
    if self.crop > self.resize:
      raise ValueError(
        f"crop {self.crop} is larger than the resized shorter "
        f"side {self.resize}"
      )

  def frame(self, image: Image.Image | np.ndarray) -> np.ndarray:
    """(crop, crop, 3) uint8: torchvision's Resize(resize) + CenterCrop."""
    if isinstance(image, np.ndarray):
      image = Image.fromarray(image)
    image = image.convert("RGB")
    width, height = image.size
    scale = self.resize / min(width, height)
    size = (
      (self.resize, int(self.resize * height / width))
      if width <= height
      else (int(self.resize * width / height), self.resize)
    )
    if scale != 1.0:
      image = image.resize(size, Image.BILINEAR)
    width, height = image.size
    top = int(round((height - self.crop) / 2.0))
    left = int(round((width - self.crop) / 2.0))
    return np.asarray(
      image.crop((left, top, left + self.crop, top + self.crop)), np.uint8
    )

  def normalise(self, frames: jax.Array) -> jax.Array:
    """uint8 (..., 3) -> float32 network input (on device, in the jit)."""
    mean, std = (
      jnp.asarray(v, jnp.float32) for v in NORMALISATIONS[self.normalisation]
    )
    return (frames.astype(jnp.float32) / 255.0 - mean) / std


def decode_frames(
  path: str, fps: float | None = None
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
        seconds = (
          frame.time
          if frame.time is not None
          else index / float(stream.average_rate or 1)
        )
        current_bin = math.floor(seconds * fps + 1e-6)
        if current_bin <= last_bin:
          continue
        last_bin = current_bin
      # Monochrome (gray, gray10le) frames come back as 3 equal channels.
      yield index, Image.fromarray(video_lib.frame_to_rgb(frame))


def find_videos(patterns: Sequence[str]) -> list[str]:
  """Video files named by paths, globs or directories (searched for
  VIDEO_EXTENSIONS), sorted, without duplicates."""
  found = []
  for pattern in patterns:
    if os.path.isdir(pattern):
      found += [
        os.path.join(pattern, name)
        for name in os.listdir(pattern)
        if name.lower().endswith(VIDEO_EXTENSIONS)
      ]
      continue
    matches = glob.glob(pattern)
    if not matches:
      raise FileNotFoundError(f"no video matches {pattern!r}")
    found += matches
  paths = sorted(set(os.path.abspath(p) for p in found))
  names = [video_name(p) for p in paths]
  clashes = sorted({n for n in names if names.count(n) > 1})
  if clashes:
    raise ValueError(
      f"several videos are named {clashes[:3]}: outputs are "
      "keyed by file name; extract them into different --out"
    )
  return paths


def video_name(path: str) -> str:
  return os.path.splitext(os.path.basename(path))[0]


def lmdb_key(video: str, frame_index: int, first_frame: int = 1) -> bytes:
  """Key of source frame `frame_index` (0-based) in the public layout."""
  return f"{video}_{frame_index + first_frame:010d}.jpg".encode()


def make_feature_fn(
  model: vit.ViT, preprocessing: Preprocessing, feature: str = "cls"
):
  """(params, uint8 frames (B, S, S, 3)) -> (B, D) per-frame features."""
  if feature not in FEATURES:
    raise ValueError(f"feature {feature!r}: use one of {', '.join(FEATURES)}")

  def features(params, frames):
    out = model.apply({"params": params}, preprocessing.normalise(frames))
    return out["cls"] if feature == "cls" else out["patch_tokens"].mean(1)

  return features


class FeatureExtractor:
  """A backbone compiled once, batch-sharded over this process's devices."""

  def __init__(
    self,
    model: vit.ViT,
    params,
    preprocessing: Preprocessing,
    feature: str = "cls",
    batch_size: int = 64,
  ):
    embed = make_feature_fn(model, preprocessing, feature)
    devices = jax.local_device_count()
    self.batch_size = -(-batch_size // devices) * devices
    # This host's devices (several hosts split the videos), an Auto axis
    # as the backbone needs (runtime/sharding.py).
    parallel = sharding.data_parallel(local=True, auto_axes=True)
    self.data_sharding = parallel.batch
    replicated = parallel.replicated
    self.params = jax.device_put(params, replicated)
    self.preprocessing = preprocessing
    self._embed = jax.jit(
      embed,
      in_shardings=(replicated, self.data_sharding),
      out_shardings=self.data_sharding,
    )

  def __call__(self, images: Iterator[np.ndarray]) -> np.ndarray:
    """(N, D) float32 features of an iterator of preprocessed frames. Host
    decoding overlaps the device: results are fetched at the end."""
    pending, batch = [], []
    size = self.preprocessing.crop

    def flush():
      frames = np.zeros((self.batch_size, size, size, 3), np.uint8)
      frames[: len(batch)] = np.stack(batch)
      pending.append(
        (
          self._embed(self.params, jax.device_put(frames, self.data_sharding)),
          len(batch),
        )
      )
      batch.clear()

    for image in images:
      batch.append(image)
      if len(batch) == self.batch_size:
        flush()
    if batch:
      flush()
    if not pending:
      return np.zeros((0, 0), np.float32)
    return np.concatenate(
      [np.asarray(out, np.float32)[:n] for out, n in pending]
    )


def _write_npy(path: str, features: np.ndarray) -> None:
  tmp = path + ".tmp"
  with open(tmp, "wb") as f:
    np.save(f, features)
  os.replace(tmp, path)  # a half-written file never has the final name


def extract(
  videos: Sequence[str],
  out_dir: str,
  view: str,
  extractor: FeatureExtractor,
  fps: float | None = None,
  output_format: str = "npy",
  dtype: str = "float32",
  lmdb_first_frame: int = 1,
  progress: bool = True,
) -> dict:
  """Extracts every video not yet done; returns {"done": [...], "skipped":
  [...], "failed": {path: reason}, "frames": {name: count}}."""
  if output_format not in ("npy", "lmdb"):
    raise ValueError(f"format {output_format!r}: use 'npy' or 'lmdb'")
  if output_format == "lmdb" and dtype != "float32":
    raise ValueError(
      "LMDB values are raw float32 vectors (what readers "
      "expect): use --dtype float32 with --format lmdb"
    )
  view_dir = os.path.join(out_dir, view)
  os.makedirs(view_dir, exist_ok=True)
  env = None
  if output_format == "lmdb":
    import lmdb  # pylint: disable=g-import-not-at-top

    env = lmdb.open(view_dir, map_size=LMDB_MAP_SIZE)
  report = {"done": [], "skipped": [], "failed": {}, "frames": {}}
  bar = tqdm.tqdm(
    videos,
    desc=f"features {view}",
    unit="video",
    disable=not progress,
    dynamic_ncols=True,
  )
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
