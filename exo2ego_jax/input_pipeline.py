"""Input pipeline: grain over TFDS data sources of exo/ego feature sequences.

A dataset example is a whole recording: `exo` and `ego` (T, D) features,
`labels` (T,) for the exo timeline and `ego_labels` (T,) for the ego frames.
Training draws one window per recording and epoch: a chunk size c is zoomed
log-uniformly in [c/2, 2c], a random crop of up to `max_frames * c` frames is
max-pooled c frames to a step (majority label per step) and padded to
`max_frames` steps with a mask. The pipeline is a `grain.MapDataset`, so batch
k of a run is a pure function of (seed, k): a resumed run gets exactly the
batches it would have seen.
"""

from __future__ import annotations

import math
from typing import Sequence

import grain
import numpy as np

from exo2ego_jax.losses import IGNORE_LABEL

VIEWS = ("exo", "ego")


def pool_chunks(features: np.ndarray, chunk: int) -> np.ndarray:
  """Max-pools (T, D) features over consecutive chunks of `chunk` frames.

  A last partial chunk is pooled over the frames it has.
  """
  length = features.shape[0]
  steps = -(-length // chunk)
  pad = steps * chunk - length
  if pad:  # repeat the last frame: the max over a chunk is then unchanged
    features = np.concatenate([features, np.repeat(features[-1:], pad, 0)])
  return features.reshape(steps, chunk, -1).max(axis=1)


def majority_labels(labels: np.ndarray, chunk: int) -> np.ndarray:
  """Most frequent label of each chunk (ties: the smallest label id).

  Frames labelled IGNORE_LABEL do not vote; a chunk of only ignored frames
  gets IGNORE_LABEL.
  """
  length = labels.shape[0]
  steps = -(-length // chunk)
  padded = np.full(steps * chunk, IGNORE_LABEL, np.int64)
  padded[:length] = labels
  padded = padded.reshape(steps, chunk)
  valid = padded >= 0
  num_bins = int(padded.max(initial=0)) + 1
  votes = np.zeros((steps, num_bins), np.int64)
  rows = np.broadcast_to(np.arange(steps)[:, None], padded.shape)
  np.add.at(votes, (rows[valid], padded[valid]), 1)
  out = votes.argmax(axis=1)
  out[~valid.any(axis=1)] = IGNORE_LABEL
  return out.astype(np.int32)


def zoomed_chunk(rng: np.random.Generator, chunk: int) -> int:
  """Chunk size drawn log-uniformly in [chunk/2, 2*chunk], at least 1."""
  value = math.exp(rng.uniform(math.log(chunk / 2), math.log(2 * chunk)))
  return max(1, int(round(value)))


def pad_steps(array: np.ndarray, length: int, value) -> np.ndarray:
  pad = [(0, length - array.shape[0])] + [(0, 0)] * (array.ndim - 1)
  return np.pad(array, pad, constant_values=value)


def make_window(example: dict, start: int, stop: int, chunk: int,
                max_frames: int, views: Sequence[str],
                label_key: str | None) -> dict:
  """Frames [start, stop) of a recording as one padded, chunked window."""
  out = {}
  for view in views:
    pooled = pool_chunks(np.asarray(example[view][start:stop], np.float32),
                         chunk)
    out[view] = pad_steps(pooled, max_frames, 0.0)
  steps = -(-(stop - start) // chunk)
  if label_key is None:  # distillation never reads labels
    labels = np.full(steps, IGNORE_LABEL, np.int32)
  else:
    labels = majority_labels(np.asarray(example[label_key][start:stop]), chunk)
  out["labels"] = pad_steps(labels, max_frames, IGNORE_LABEL)
  out["mask"] = pad_steps(np.ones(steps, np.float32), max_frames, 0.0)
  return out


def check_recording(example: dict, views: Sequence[str],
                    label_key: str | None, feature_dim: int | None,
                    num_classes: int | None) -> None:
  """Clear errors for recordings a model cannot train on, naming the video."""
  name = example.get("video_id", "?")
  name = name.decode() if isinstance(name, bytes) else name
  length = None
  for view in views:
    features = example[view]
    if features.ndim != 2 or (feature_dim and features.shape[1] != feature_dim):
      raise ValueError(
          f"recording {name}: {view} features have shape {features.shape}, "
          f"expected (T, {feature_dim}): rebuild the dataset so every "
          "recording has the same feature dimension")
    if length is not None and features.shape[0] != length:
      raise ValueError(f"recording {name}: views have {length} and "
                       f"{features.shape[0]} frames: rebuild the dataset "
                       "with aligned views")
    length = features.shape[0]
  if not length:
    raise ValueError(f"recording {name} has no frames: drop it from the "
                     "split")
  if label_key is not None:
    labels = np.asarray(example[label_key])
    bad = labels[(labels != IGNORE_LABEL) & ((labels < 0) | (
        labels >= (num_classes or np.iinfo(np.int32).max)))]
    if bad.size:
      raise ValueError(
          f"recording {name}: {label_key} holds label {int(bad[0])} outside "
          f"the class table (0..{num_classes - 1}, or {IGNORE_LABEL} to "
          "ignore a frame): fix the annotation or the class table")


class RandomWindow(grain.transforms.RandomMap):
  """One random training window of a recording (random zoom and crop).

  The window carries `index`, the recording's index in the source, so a bad
  batch can be traced back to its videos.
  """

  def __init__(self, views: Sequence[str], label_key: str | None,
               max_frames: int, chunk_size: int, zoom: bool,
               feature_dim: int | None = None, num_classes: int | None = None):
    self.views = tuple(views)
    self.label_key = label_key
    self.max_frames = max_frames
    self.chunk_size = chunk_size
    self.zoom = zoom
    self.feature_dim = feature_dim
    self.num_classes = num_classes

  def random_map(self, example: dict, rng: np.random.Generator) -> dict:
    check_recording(example, self.views, self.label_key, self.feature_dim,
                    self.num_classes)
    chunk = zoomed_chunk(rng, self.chunk_size) if self.zoom else self.chunk_size
    length = example[self.views[0]].shape[0]
    span = min(length, self.max_frames * chunk)
    start = int(rng.integers(0, length - span + 1))
    window = make_window(example, start, start + span, chunk, self.max_frames,
                         self.views, self.label_key)
    window["index"] = np.int32(example["index"])
    return window


def train_dataset(source, *, views: Sequence[str], label_key: str | None,
                  batch_size: int, num_epochs: int, max_frames: int,
                  chunk_size: int, zoom: bool, seed: int,
                  shard_index: int = 0, shard_count: int = 1,
                  feature_dim: int | None = None,
                  num_classes: int | None = None) -> grain.MapDataset:
  """Batched training windows over `num_epochs` reshuffled epochs.

  `shard_index/shard_count` split the recordings between processes
  (multi-host): each process batches `batch_size` windows of its own shard.
  Index k of the result is batch k of the run.
  """
  # grain hands later epochs' indices through to the source (which wraps
  # them), so the recording's own index is taken modulo the source length.
  num_recordings = len(source)
  ds = grain.MapDataset.source(source).map_with_index(
      lambda index, example: dict(example, index=index % num_recordings))
  if shard_count > 1:
    ds = ds[shard_index::shard_count]
  if len(ds) < batch_size:
    raise ValueError(
        f"the training split has {len(ds)} recordings for this process, "
        f"fewer than the per-process batch size {batch_size}: lower "
        "config.data.batch_size")
  ds = ds.seed(seed).shuffle().repeat(num_epochs)
  ds = ds.random_map(RandomWindow(views, label_key, max_frames, chunk_size,
                                  zoom, feature_dim, num_classes))
  return ds.batch(batch_size, drop_remainder=True)


def eval_windows(features: np.ndarray, chunk: int, max_frames: int
                 ) -> tuple[np.ndarray, np.ndarray]:
  """Splits a whole recording's (T, D) features into consecutive windows.

  Returns windows (W, max_frames, D) and masks (W, max_frames) covering the
  ceil(T / chunk) chunked steps in order.
  """
  pooled = pool_chunks(np.asarray(features, np.float32), chunk)
  steps = pooled.shape[0]
  count = max(1, -(-steps // max_frames))
  windows = pad_steps(pooled, count * max_frames, 0.0)
  mask = pad_steps(np.ones(steps, np.float32), count * max_frames, 0.0)
  return (windows.reshape(count, max_frames, -1),
          mask.reshape(count, max_frames))


def steps_to_frames(step_values: np.ndarray, chunk: int, length: int
                    ) -> np.ndarray:
  """Repeats per-step values back to the recording's frame rate."""
  return np.repeat(step_values, chunk, axis=0)[:length]


def with_target_windows(labeled: grain.MapDataset, source, *, view: str,
                        batch_size: int, max_frames: int, chunk_size: int,
                        zoom: bool, seed: int, shard_index: int = 0,
                        shard_count: int = 1) -> grain.MapDataset:
  """Adds unlabeled `target` windows and their `target_mask` to every batch.

  For domain adaptation without synchronization: the target windows come
  from their own shuffle of `source` (its own `seed`, as many epochs as the
  labeled batches need), so they are not the labeled windows' synchronized
  counterparts; no label of `source` is read. Batch k stays a pure function
  of the seeds and k.
  """
  shard_size = len(range(shard_index, len(source), shard_count))
  per_epoch = max(1, shard_size // batch_size)  # target batches per epoch
  target = train_dataset(
      source, views=(view,), label_key=None, batch_size=batch_size,
      num_epochs=-(-len(labeled) // per_epoch), max_frames=max_frames,
      chunk_size=chunk_size, zoom=zoom, seed=seed, shard_index=shard_index,
      shard_count=shard_count)

  def add_target(index: int, batch: dict) -> dict:
    window = target[index]
    return dict(batch, target=window[view], target_mask=window["mask"])
  return labeled.map_with_index(add_target)
