"""Input pipeline: grain over TFDS data sources of exo/ego feature sequences.

A dataset example is a whole recording: `exo` and `ego` (T, D) features,
`labels` (T,) for the exo timeline and `ego_labels` (T,) for the ego frames.
Training draws one window per recording and epoch: a chunk size c is zoomed
log-uniformly in [c/2, 2c], a random crop of up to `max_frames * c` frames is
max-pooled c frames to a step (majority label per step) and padded to
`max_frames` steps with a mask. The pipeline is a `grain.MapDataset`, so batch
k of a run is a pure function of (seed, k): a resumed run gets exactly the
batches it would have seen.

`windows="consecutive"` is the published recipe's sampling instead: every
recording is cut into consecutive windows of `max_frames * c` frames (the last
one shorter), and each epoch visits every window of every recording once, in a
shuffled order. `ignore_classes` turns the labels of those classes (e.g. the
background) into IGNORE_LABEL, as the published teacher and oracle training
does.

Two knobs serve robustness studies: `fraction` trains on a fixed random
subset of the recordings (nested: a smaller fraction's subset lies inside a
larger one's) for as many steps as the whole split would take, and
`SyncOffset` shifts one view's frames against the rest of the recording, a
synchronization error applied at training time.
"""

from __future__ import annotations

import math
from typing import Sequence

import grain
import numpy as np

from exo2ego_jax.data.constants import IGNORE_LABEL
from exo2ego_jax.data.constants import VIEWS  # noqa: F401 (trainer uses it)

# Multi-view fields (docs/multiview.md): every exo view's features (K, T, D)
# and presence (K, T); windows carry them as (K, steps, D) and (K, steps).
EXO_VIEWS, EXO_PRESENT = "exo_views", "exo_present"

# How a training-time synchronization offset is drawn: the same for every
# window, once per recording, or afresh for every window.
OFFSET_MODES = ("fixed", "per_video", "per_window")
# How training windows are drawn: one random crop per recording and epoch, or
# every consecutive window of every recording once per epoch (the paper's).
WINDOW_MODES = ("random", "consecutive")


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


def make_window(
  example: dict,
  start: int,
  stop: int,
  chunk: int,
  max_frames: int,
  views: Sequence[str],
  label_key: str | None,
  shift: int = 0,
  shift_view: str | None = None,
  ignore_classes: Sequence[int] = (),
) -> dict:
  """Frames [start, stop) of a recording as one padded, chunked window.

  `shift` frames of synchronization error: `shift_view` contributes frames
  [start + shift, stop + shift) instead, clamped to the recording (its first
  or last frame repeats where the shift runs off an end). Steps whose
  majority label is one of `ignore_classes` get IGNORE_LABEL.
  """
  out = {}
  for view in views:
    if view in (EXO_VIEWS, EXO_PRESENT):
      out[view] = _view_stack_window(
        example[view], start, stop, chunk, max_frames
      )
      continue
    if shift and view == shift_view:
      frames = np.clip(
        np.arange(start, stop) + shift, 0, example[view].shape[0] - 1
      )
      raw = np.asarray(example[view])[frames]
    else:
      raw = example[view][start:stop]
    pooled = pool_chunks(np.asarray(raw, np.float32), chunk)
    out[view] = pad_steps(pooled, max_frames, 0.0)
  steps = -(-(stop - start) // chunk)
  if label_key is None:  # distillation never reads labels
    labels = np.full(steps, IGNORE_LABEL, np.int32)
  else:
    labels = majority_labels(np.asarray(example[label_key][start:stop]), chunk)
    if len(ignore_classes):
      labels[np.isin(labels, ignore_classes)] = IGNORE_LABEL
  out["labels"] = pad_steps(labels, max_frames, IGNORE_LABEL)
  out["mask"] = pad_steps(np.ones(steps, np.float32), max_frames, 0.0)
  return out


def pooled_presence(present: np.ndarray, chunk: int) -> np.ndarray:
  """A view's per-frame presence (T,) as steps (S,): a step counts as seen
  only if every frame of it is (1 - the max-pooled absence)."""
  absent = 1.0 - np.asarray(present, np.float32)[:, None]
  return 1.0 - pool_chunks(absent, chunk)[:, 0]


def _view_stack_window(stack, start, stop, chunk, max_frames) -> np.ndarray:
  """Frames [start, stop) of every view of a (K, T, ...) stack, chunked and
  padded: features max-pooled; presence (K, T) min-pooled (a step counts as
  seen by a view only if every frame of it is)."""
  stack = np.asarray(stack)
  if stack.ndim == 2:  # presence
    pooled = [pooled_presence(p[start:stop], chunk) for p in stack]
  else:
    pooled = [
      pool_chunks(np.asarray(v[start:stop], np.float32), chunk) for v in stack
    ]
  return np.stack([pad_steps(p, max_frames, 0.0) for p in pooled])


def check_recording(
  example: dict,
  views: Sequence[str],
  label_key: str | None,
  feature_dim: int | None,
  num_classes: int | None,
) -> None:
  """Clear errors for recordings a model cannot train on, naming the video."""
  name = example.get("video_id", "?")
  name = name.decode() if isinstance(name, bytes) else name
  length = None
  for view in views:
    if view in (EXO_VIEWS, EXO_PRESENT):  # (K, T, ...), checked by frames
      if example[view].shape[1] != length and length is not None:
        raise ValueError(
          f"recording {name}: {view} has {example[view].shape[1]} frames, "
          f"the other views {length}: rebuild the dataset with aligned views"
        )
      continue
    features = example[view]
    if features.ndim != 2 or (feature_dim and features.shape[1] != feature_dim):
      raise ValueError(
        f"recording {name}: {view} features have shape {features.shape}, "
        f"expected (T, {feature_dim}): rebuild the dataset so every "
        "recording has the same feature dimension"
      )
    if length is not None and features.shape[0] != length:
      raise ValueError(
        f"recording {name}: views have {length} and "
        f"{features.shape[0]} frames: rebuild the dataset "
        "with aligned views"
      )
    length = features.shape[0]
  if not length:
    raise ValueError(f"recording {name} has no frames: drop it from the split")
  if label_key is not None:
    labels = np.asarray(example[label_key])
    bad = labels[
      (labels != IGNORE_LABEL)
      & ((labels < 0) | (labels >= (num_classes or np.iinfo(np.int32).max)))
    ]
    if bad.size:
      raise ValueError(
        f"recording {name}: {label_key} holds label {int(bad[0])} outside "
        f"the class table (0..{num_classes - 1}, or {IGNORE_LABEL} to "
        "ignore a frame): fix the annotation or the class table"
      )


class SyncOffset:
  """A synchronization error put into training windows on purpose.

  `view`'s frames are shifted by an offset (in frames) against the other
  views and the labels: `frames` itself ("fixed"), or an integer drawn
  uniformly from [-frames, frames] once per recording ("per_video", from
  `seed` and the recording's index, the same in every epoch) or for every
  window ("per_window").
  """

  def __init__(
    self, frames: int, mode: str = "fixed", view: str = "ego", seed: int = 0
  ):
    if mode not in OFFSET_MODES:
      raise ValueError(
        f"synchronization offset mode {mode!r} is unknown: "
        f"use one of {', '.join(OFFSET_MODES)}"
      )
    if mode != "fixed" and frames < 0:
      raise ValueError(
        f"a {mode} synchronization offset draws from "
        f"[-frames, frames]: give frames >= 0, not {frames}"
      )
    self.frames, self.mode, self.view, self.seed = int(frames), mode, view, seed

  def draw(self, index: int, rng: np.random.Generator) -> int:
    """The offset of one window of recording `index`."""
    if self.mode == "fixed" or not self.frames:
      return self.frames
    if self.mode == "per_video":
      rng = np.random.default_rng([self.seed, 0x5EED, index])
    return int(rng.integers(-self.frames, self.frames + 1))


class RandomWindow(grain.transforms.RandomMap):
  """One random training window of a recording (random zoom and crop).

  The window carries `index`, the recording's index in the source, so a bad
  batch can be traced back to its videos.
  """

  def __init__(
    self,
    views: Sequence[str],
    label_key: str | None,
    max_frames: int,
    chunk_size: int,
    zoom: bool,
    feature_dim: int | None = None,
    num_classes: int | None = None,
    sync_offset: SyncOffset | None = None,
    ignore_classes: Sequence[int] = (),
  ):
    self.views = tuple(views)
    self.ignore_classes = tuple(int(c) for c in ignore_classes)
    self.label_key = label_key
    self.max_frames = max_frames
    self.chunk_size = chunk_size
    self.zoom = zoom
    self.feature_dim = feature_dim
    self.num_classes = num_classes
    self.sync_offset = sync_offset

  def random_map(self, example: dict, rng: np.random.Generator) -> dict:
    check_recording(
      example, self.views, self.label_key, self.feature_dim, self.num_classes
    )
    chunk = zoomed_chunk(rng, self.chunk_size) if self.zoom else self.chunk_size
    length = example[self.views[0]].shape[0]
    span = min(length, self.max_frames * chunk)
    start = int(rng.integers(0, length - span + 1))
    return self._window(example, start, start + span, chunk, rng)

  def _window(
    self,
    example: dict,
    start: int,
    stop: int,
    chunk: int,
    rng: np.random.Generator,
  ) -> dict:
    """Frames [start, stop) in chunks of `chunk`, the student's view
    shifted by this recording's (or window's) synchronization offset."""
    shift, shift_view = 0, None
    if self.sync_offset is not None:
      shift = self.sync_offset.draw(int(example["index"]), rng)
      shift_view = self.sync_offset.view
    window = make_window(
      example,
      start,
      stop,
      chunk,
      self.max_frames,
      self.views,
      self.label_key,
      shift,
      shift_view,
      self.ignore_classes,
    )
    window["index"] = np.int32(example["index"])
    return window


class ConsecutiveWindow(RandomWindow):
  """Window `example["start"]` of the consecutive windows of a recording.

  The window spans frames [start, start + max_frames * chunk_size) (the last
  window of a recording is shorter). With `zoom`, its chunk size is drawn as
  for random windows but never so small that the span exceeds `max_frames`
  steps.
  """

  def random_map(self, example: dict, rng: np.random.Generator) -> dict:
    check_recording(
      example, self.views, self.label_key, self.feature_dim, self.num_classes
    )
    length = example[self.views[0]].shape[0]
    start = int(example["start"])
    stop = min(length, start + self.max_frames * self.chunk_size)
    chunk = self.chunk_size
    if self.zoom:
      chunk = max(
        zoomed_chunk(rng, chunk), -(-(stop - start) // self.max_frames)
      )
    return self._window(example, start, stop, chunk, rng)


def consecutive_starts(
  lengths: Sequence[int], span: int
) -> tuple[np.ndarray, np.ndarray]:
  """(recording, start frame) of every consecutive `span`-frame window."""
  recordings, starts = [], []
  for index, length in enumerate(lengths):
    first = np.arange(0, max(int(length), 1), span)
    recordings.append(np.full(first.shape, index))
    starts.append(first)
  return (
    np.concatenate(recordings).astype(np.int64),
    np.concatenate(starts).astype(np.int64),
  )


def train_dataset(
  source,
  *,
  views: Sequence[str],
  label_key: str | None,
  batch_size: int,
  num_epochs: int,
  max_frames: int,
  chunk_size: int,
  zoom: bool,
  seed: int,
  shard_index: int = 0,
  shard_count: int = 1,
  feature_dim: int | None = None,
  num_classes: int | None = None,
  fraction: float = 1.0,
  subset_seed: int = 0,
  sync_offset: SyncOffset | None = None,
  windows: str = "random",
  ignore_classes: Sequence[int] = (),
) -> grain.MapDataset:
  """Batched training windows over `num_epochs` reshuffled epochs.

  `shard_index/shard_count` split the recordings between processes
  (multi-host): each process batches `batch_size` windows of its own shard.
  `fraction` < 1 trains on `subset_indices(len(source), fraction,
  subset_seed)` only, for as many batches as `num_epochs` epochs of the whole
  split give (equal compute: the subset is seen more often).
  `windows` picks the sampling (WINDOW_MODES); `ignore_classes` are labels
  trained as IGNORE_LABEL.
  Index k of the result is batch k of the run.
  """
  if windows not in WINDOW_MODES:
    raise ValueError(
      f"config.data.windows={windows!r} is unknown: use one "
      f"of {', '.join(WINDOW_MODES)}"
    )
  if windows == "consecutive":
    return _consecutive_dataset(
      source,
      views=views,
      label_key=label_key,
      batch_size=batch_size,
      num_epochs=num_epochs,
      max_frames=max_frames,
      chunk_size=chunk_size,
      zoom=zoom,
      seed=seed,
      shard_index=shard_index,
      shard_count=shard_count,
      feature_dim=feature_dim,
      num_classes=num_classes,
      fraction=fraction,
      sync_offset=sync_offset,
      ignore_classes=ignore_classes,
    )
  num_recordings = len(source)
  if fraction < 1.0:
    chosen = subset_indices(num_recordings, fraction, subset_seed)

    def load(i: int) -> dict:  # later epochs may hand i past the subset
      index = int(chosen[i % len(chosen)])
      return dict(source[index], index=index)

    ds = grain.MapDataset.range(len(chosen)).map(load)
  else:
    # grain hands later epochs' indices through to the source (which wraps
    # them), so the recording's own index is taken modulo the source length.
    ds = grain.MapDataset.source(source).map_with_index(
      lambda index, example: dict(example, index=index % num_recordings)
    )
  if shard_count > 1:
    ds = ds[shard_index::shard_count]
  if len(ds) < batch_size:
    subset = (
      f" (config.data.train_fraction={fraction} of {num_recordings})"
      if fraction < 1.0
      else ""
    )
    raise ValueError(
      f"the training split has {len(ds)} recordings{subset} for this "
      f"process, fewer than the per-process batch size {batch_size}: lower "
      "config.data.batch_size" + (" or raise the fraction" if subset else "")
    )
  total_batches = None
  if fraction < 1.0:
    full_shard = len(range(shard_index, num_recordings, shard_count))
    total_batches = num_epochs * (full_shard // batch_size)
    num_epochs = -(-total_batches // (len(ds) // batch_size))
  ds = ds.seed(seed).shuffle().repeat(num_epochs)
  ds = ds.random_map(
    RandomWindow(
      views,
      label_key,
      max_frames,
      chunk_size,
      zoom,
      feature_dim,
      num_classes,
      sync_offset,
      ignore_classes,
    )
  )
  ds = ds.batch(batch_size, drop_remainder=True)
  return ds if total_batches is None else ds[:total_batches]


def _consecutive_dataset(
  source,
  *,
  views,
  label_key,
  batch_size,
  num_epochs,
  max_frames,
  chunk_size,
  zoom,
  seed,
  shard_index,
  shard_count,
  feature_dim,
  num_classes,
  fraction,
  sync_offset,
  ignore_classes,
) -> grain.MapDataset:
  """Every consecutive window of every recording once per epoch, shuffled.

  The recordings' lengths are read once, up front, to list the windows.
  """
  if fraction < 1.0:
    raise ValueError(
      "config.data.train_fraction < 1 needs "
      "config.data.windows='random' (consecutive windows "
      "visit every recording of the split)"
    )
  num_recordings = len(source)
  mine = list(range(shard_index, num_recordings, shard_count))
  lengths = [np.asarray(source[i][views[0]]).shape[0] for i in mine]
  recordings, starts = consecutive_starts(lengths, max_frames * chunk_size)
  recordings = np.asarray(mine, np.int64)[recordings]
  if len(starts) < batch_size:
    raise ValueError(
      f"the training split has {len(starts)} consecutive windows for this "
      f"process, fewer than the per-process batch size {batch_size}: lower "
      "config.data.batch_size"
    )

  def load(i: int) -> dict:
    index = int(recordings[i])
    return dict(source[index], index=index, start=int(starts[i]))

  ds = grain.MapDataset.range(len(starts)).seed(seed).shuffle()
  ds = ds.repeat(num_epochs).map(load)
  ds = ds.random_map(
    ConsecutiveWindow(
      views,
      label_key,
      max_frames,
      chunk_size,
      zoom,
      feature_dim,
      num_classes,
      sync_offset,
      ignore_classes,
    )
  )
  return ds.batch(batch_size, drop_remainder=True)


def subset_indices(
  num_recordings: int, fraction: float, seed: int = 0
) -> np.ndarray:
  """Sorted indices of round(fraction * num_recordings) recordings (at least
  one), a prefix of one fixed random permutation: subsets are nested."""
  check_fraction(fraction)
  count = max(1, int(round(fraction * num_recordings)))
  order = np.random.default_rng(seed).permutation(num_recordings)
  return np.sort(order[:count])


def eval_windows(
  features: np.ndarray, chunk: int, max_frames: int
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
  return (
    windows.reshape(count, max_frames, -1),
    mask.reshape(count, max_frames),
  )


def steps_to_frames(
  step_values: np.ndarray, chunk: int, length: int
) -> np.ndarray:
  """Repeats per-step values back to the recording's frame rate."""
  return np.repeat(step_values, chunk, axis=0)[:length]


def with_target_windows(
  labeled: grain.MapDataset,
  source,
  *,
  view: str,
  batch_size: int,
  max_frames: int,
  chunk_size: int,
  zoom: bool,
  seed: int,
  shard_index: int = 0,
  shard_count: int = 1,
) -> grain.MapDataset:
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
    source,
    views=(view,),
    label_key=None,
    batch_size=batch_size,
    num_epochs=-(-len(labeled) // per_epoch),
    max_frames=max_frames,
    chunk_size=chunk_size,
    zoom=zoom,
    seed=seed,
    shard_index=shard_index,
    shard_count=shard_count,
  )

  def add_target(index: int, batch: dict) -> dict:
    window = target[index]
    return dict(batch, target=window[view], target_mask=window["mask"])

  return labeled.map_with_index(add_target)


def check_fraction(fraction: float) -> None:
  """A share of the training recordings lies in (0, 1]."""
  if not 0.0 < fraction <= 1.0:
    raise ValueError(
      f"config.data.train_fraction={fraction} must lie in (0, 1]"
    )
