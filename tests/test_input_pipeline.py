"""Input pipeline: chunking, majority labels, windows, determinism, resume."""

import numpy as np
import pytest

from exo2ego_jax.data import input_pipeline as ip
from conftest import ListSource


def test_pool_chunks_takes_max_including_partial_chunk():
  x = np.array([[1.0], [5.0], [2.0], [0.0], [7.0]])
  np.testing.assert_array_equal(ip.pool_chunks(x, 2), [[5.0], [2.0], [7.0]])
  np.testing.assert_array_equal(ip.pool_chunks(x, 1), x)


def test_majority_labels_ties_and_ignored_frames():
  labels = np.array([3, 3, 1, 2, 1, 2, -100, -100, -100, 4])
  # chunks: [3,3,1] [2,1,2] [-100,-100,-100] [4]
  np.testing.assert_array_equal(ip.majority_labels(labels, 3), [3, 2, -100, 4])
  # tie between 1 and 2 -> smallest id
  np.testing.assert_array_equal(ip.majority_labels(np.array([2, 1]), 2), [1])


def test_zoomed_chunk_is_log_uniform_in_range():
  rng = np.random.default_rng(0)
  draws = np.array([ip.zoomed_chunk(rng, 4) for _ in range(2000)])
  assert draws.min() == 2 and draws.max() == 8
  # log-uniform: as many draws below 4 as above it (about).
  assert abs(np.mean(draws < 4) - np.mean(draws > 4)) < 0.1


def _example(length, dim=3, offset=0):
  t = np.arange(length, dtype=np.float32)
  return {
    "exo": np.stack([t + offset] * dim, 1),
    "ego": -np.stack([t] * dim, 1),
    "labels": (np.arange(length) // 10).astype(np.int32),
    "ego_labels": (np.arange(length) // 5).astype(np.int32),
  }


def test_make_window_pads_and_masks():
  w = ip.make_window(_example(25), 0, 25, 4, 10, ("exo", "ego"), "labels")
  assert w["exo"].shape == (10, 3) and w["ego"].shape == (10, 3)
  np.testing.assert_array_equal(w["mask"], [1] * 7 + [0] * 3)
  np.testing.assert_array_equal(w["exo"][:7, 0], [3, 7, 11, 15, 19, 23, 24])
  np.testing.assert_array_equal(w["labels"], [0, 0, 0, 1, 1, 2, 2] + [-100] * 3)
  no_labels = ip.make_window(_example(25), 0, 25, 4, 10, ("ego",), None)
  assert (no_labels["labels"] == -100).all()


def _dataset(**kwargs):
  source = ListSource(
    [_example(30 + 40 * i, offset=1000 * i) for i in range(6)]
  )
  args = dict(
    views=("exo", "ego"),
    label_key="labels",
    batch_size=2,
    num_epochs=3,
    max_frames=8,
    chunk_size=2,
    zoom=True,
    seed=7,
  )
  args.update(kwargs)
  return ip.train_dataset(source, **args)


def test_train_dataset_is_deterministic_and_resumable():
  ds = _dataset()
  assert len(ds) == 9  # 6 recordings * 3 epochs / batch 2
  first = [ds[i] for i in range(len(ds))]
  again = _dataset()
  resumed = list(again[4:].to_iter_dataset())
  assert len(resumed) == 5
  for a, b in zip(first[4:], resumed):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])
  batch = first[0]
  assert batch["exo"].shape == (2, 8, 3) and batch["mask"].shape == (2, 8)
  other_seed = _dataset(seed=8)[0]
  assert not np.array_equal(other_seed["exo"], batch["exo"])


def test_each_epoch_visits_every_recording_once():
  ds = _dataset(zoom=False, max_frames=1000)
  # The recording identity is encoded in the exo offset (1000 * index).
  seen = [
    int(ds[i]["exo"][j, 0, 0] // 1000) for i in range(3) for j in range(2)
  ]
  assert sorted(seen) == list(range(6))


def test_shards_are_disjoint():
  a = _dataset(
    shard_index=0,
    shard_count=2,
    num_epochs=1,
    zoom=False,
    max_frames=1000,
    batch_size=1,
  )
  b = _dataset(
    shard_index=1,
    shard_count=2,
    num_epochs=1,
    zoom=False,
    max_frames=1000,
    batch_size=1,
  )
  ids_a = {int(a[i]["exo"][0, 0, 0] // 1000) for i in range(len(a))}
  ids_b = {int(b[i]["exo"][0, 0, 0] // 1000) for i in range(len(b))}
  assert ids_a | ids_b == set(range(6)) and not ids_a & ids_b


def test_too_few_recordings_for_batch_is_a_clear_error():
  with pytest.raises(ValueError, match="batch_size"):
    _dataset(batch_size=7)


def test_eval_windows_round_trip():
  x = np.arange(23, dtype=np.float32)[:, None]
  windows, masks = ip.eval_windows(x, 2, 5)
  assert windows.shape == (3, 5, 1) and masks.sum() == 12
  steps = windows.reshape(-1, 1)[masks.reshape(-1) > 0]
  frames = ip.steps_to_frames(steps, 2, 23)
  assert frames.shape == (23, 1)
  np.testing.assert_array_equal(frames[:4, 0], [1, 1, 3, 3])
