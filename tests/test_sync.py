"""Self-synchronization: the clock model, its estimator, re-synchronized
training pairs, the synthetic clock configs and a run that estimates."""

import json
import logging
import os

import numpy as np
import pytest

from conftest import ListSource
from exo2ego_jax.data import datasets
from exo2ego_jax.data import input_pipeline
from exo2ego_jax.data import synthetic
from exo2ego_jax.sync import clock as clock_lib
from exo2ego_jax.sync import estimator
from exo2ego_jax.sync import resync
from exo2ego_jax.training import trainer


def activity(rng, length):
  """One-hot steps of random lengths: a recording's class sequence."""
  labels = np.repeat(rng.integers(0, 8, 400), rng.integers(8, 40, 400))
  return np.eye(8)[labels[:length]]


def observed(rng, scene, exo_time, noise=0.3):
  """What a camera records when its frame t shows instant exo_time[t]."""
  frames = np.clip(np.rint(exo_time), 0, len(scene) - 1).astype(int)
  return scene[frames] + noise * rng.normal(size=(len(frames), 8))


def test_estimator_recovers_offset_and_rate():
  rng = np.random.default_rng(0)
  scene = activity(rng, 2000)
  exo = observed(rng, scene, np.arange(1500))
  truth = 1.003 * np.arange(1400) + 137.0
  ego = observed(rng, scene, truth)
  found = estimator.estimate(exo, ego, estimator.Settings(max_rate=0.005))
  assert found.fallback is None and found.confidence > 4
  assert abs(found.offset - 137.0) <= 2
  assert abs(found.rate - 1.003) <= 0.0006
  inside = truth <= 1499
  assert clock_lib.map_error(found.clock, truth)[inside].mean() < 2
  # The local evidence lies on the true map.
  matches = np.array(estimator.local_matches(exo, ego, found.clock))
  assert len(matches) > 10
  assert np.median(np.abs(truth[matches[:, 0]] - matches[:, 1])) <= 2
  # Offset only: the rate stays 1 and the offset is the best constant one.
  flat = estimator.estimate(exo, ego, estimator.Settings(max_rate=0.0))
  assert flat.rate == 1.0 and abs(flat.offset - 139) <= 4


def test_estimator_falls_back_with_the_reason():
  rng = np.random.default_rng(1)
  scene = activity(rng, 1000)
  exo = observed(rng, scene, np.arange(1000))
  ego = observed(rng, scene, np.arange(1000) + 5)
  constant = estimator.estimate(exo, np.ones((1000, 8)))
  assert (constant.rate, constant.offset) == clock_lib.IDENTITY
  assert constant.fallback == estimator.NO_SIGNAL
  inputs_constant = estimator.estimate(exo, ego, ego_inputs=np.zeros((1000, 3)))
  assert inputs_constant.fallback == estimator.NO_SIGNAL
  assert estimator.estimate(exo, ego[:50]).fallback == estimator.TOO_SHORT
  assert estimator.estimate(exo, ego[:400]).fallback == estimator.TOO_SHORT
  strict = estimator.Settings(min_confidence=1e6)
  unsure = estimator.estimate(exo, ego, strict)
  assert unsure.fallback == estimator.LOW_CONFIDENCE
  assert (unsure.rate, unsure.offset) == clock_lib.IDENTITY
  assert unsure.confidence > 0
  assert estimator.estimate(exo, ego).offset == 5


def test_aligned_indices():
  lo, hi, ego = clock_lib.aligned_indices(clock_lib.Clock(1.0, 3.0), 10, 5)
  assert (lo, hi) == (3, 8) and ego.tolist() == [0, 1, 2, 3, 4]
  lo, hi, ego = clock_lib.aligned_indices(clock_lib.Clock(1.0, -2.0), 6, 6)
  assert (lo, hi) == (0, 4) and ego.tolist() == [2, 3, 4, 5]
  lo, hi, ego = clock_lib.aligned_indices(clock_lib.Clock(2.0, 0.0), 7, 3)
  assert (lo, hi) == (0, 6) and ego.tolist() == [0, 0, 1, 2, 2, 2]
  assert clock_lib.aligned_indices(clock_lib.Clock(1.0, 50.0), 10, 5)[:2] == (
    0,
    0,
  )


def recording(length=40, shift=0):
  """Exo frame t holds t; ego frame t holds the exo instant t + shift."""
  t = np.arange(length)
  return {
    "exo": np.repeat(t[:, None], 2, 1).astype(np.float32),
    "ego": np.repeat(np.clip(t + shift, 0, length - 1)[:, None], 2, 1).astype(
      np.float32
    ),
    "labels": t.astype(np.int32),
    "ego_labels": np.clip(t + shift, 0, length - 1).astype(np.int32),
    "video_id": "r",
  }


def test_resynchronized_pairs_show_the_same_instant():
  example = recording(shift=7)
  out = resync.resynchronized(example, clock_lib.Clock(1.0, 7.0))
  # Ego frames 0..32 show exo instants 7..39: the overlap, each paired.
  np.testing.assert_array_equal(out["exo"], out["ego"])
  np.testing.assert_array_equal(out["labels"], out["ego_labels"])
  assert len(out["exo"]) == 33 and out["labels"][0] == 7
  assert out["video_id"] == "r"
  # The identity keeps the recording as it was.
  same = resync.resynchronized(example, clock_lib.Clock())
  for key in ("exo", "ego", "labels", "ego_labels"):
    np.testing.assert_array_equal(same[key], example[key])


@pytest.mark.parametrize("shift", [-5, 3])
def test_shift_at_the_source_equals_the_shift_in_windows(shift):
  """A deliberate offset applied to the recording before estimation cuts
  the same windows as the same offset applied by the window (the path of
  runs without estimation)."""
  example = recording(length=50)
  moved = resync.shifted(example, shift)
  for start, stop in ((0, 20), (10, 50), (35, 50)):
    kwargs = dict(chunk=3, max_frames=20, views=("exo", "ego"))
    by_window = input_pipeline.make_window(
      example, start, stop, label_key="ego_labels", shift=shift,
      shift_view="ego", **kwargs,
    )  # fmt: skip
    by_source = input_pipeline.make_window(
      moved, start, stop, label_key=None, **kwargs
    )
    np.testing.assert_array_equal(by_window["ego"], by_source["ego"])
    np.testing.assert_array_equal(by_window["exo"], by_source["exo"])


def test_synthetic_clock_configs():
  clocked = synthetic.generate_video(synthetic.CLOCK_DROPS, "sync_pairs", 3)
  plain = synthetic.generate_video(synthetic.DEFAULT, "sync_pairs", 3)
  time = clocked["ego_time"]
  steps = np.diff(time)
  assert np.all(steps > 0.99)  # ahead, a frame or a drop at a time
  jumps = steps[steps > 1.5]
  assert 1 <= len(jumps) <= 3 and np.all(jumps < 9 * 1.003 + 0.01)
  rate = np.median(steps)
  assert abs(rate - 1) <= 0.003 + 1e-6 and abs(time[0]) <= 300
  assert clocked["jitter"] == int(np.rint(time[0]))
  shown = np.clip(np.rint(time), 0, len(time) - 1).astype(int)
  np.testing.assert_array_equal(clocked["ego_labels"], plain["labels"][shown])
  np.testing.assert_array_equal(clocked["exo"], plain["exo"])
  # Other splits and the default config are as they were.
  train = synthetic.generate_video(synthetic.CLOCK_RATE, "train", 2)
  default = synthetic.generate_video(synthetic.DEFAULT, "train", 2)
  np.testing.assert_array_equal(train["ego"], default["ego"])
  np.testing.assert_array_equal(train["ego_time"], np.arange(len(train["ego"])))
  assert "ego_time" not in default
  assert not any(
    k.startswith("clock_")
    for k in synthetic.metadata(synthetic.DEFAULT)["generation"]
  )
  assert (
    synthetic.metadata(synthetic.CLOCK_RATE)["generation"]["clock_rate"]
    == 0.003
  )
  with pytest.raises(ValueError, match="need jitter_mode 'clock'"):
    synthetic.SyntheticConfig(clock_offset=5)


def test_estimate_is_refused_where_it_means_nothing(make_config, teacher_dir):
  info, _ = datasets.open_dataset(
    "synthetic_sync/tiny", make_config().dataset.data_dir
  )
  config = make_config("align_pseudo_label", teacher_workdir=teacher_dir)
  config.data.label_key = "pseudo_labels"
  config.sync.estimate = True
  with pytest.raises(ValueError) as error:
    trainer.build_mode(config, info)
  assert "mode align_pseudo_label trains on no synchronized pair" in str(
    error.value
  )
  assert "\n" not in str(error.value)
  config = make_config("distill_model", teacher_workdir=teacher_dir)
  config.sync.estimate = True
  config.data.sync_offset, config.data.sync_offset_mode = 4, "per_window"
  with pytest.raises(ValueError, match="per_window config.data.sync_offset"):
    trainer.build_mode(config, info)


def test_bad_recordings_keep_their_timestamps(
  make_config, teacher_dir, tmp_path, caplog
):
  """A constant ego stream and one far shorter than its exo stream fall
  back to the timestamps, each named in a warning; the others are
  estimated and re-synchronized."""
  config = make_config("distill_model", teacher_workdir=teacher_dir)
  config.sync.estimate = True
  config.sync.min_frames = 32
  info, sources = datasets.open_dataset(
    config.dataset.name, config.dataset.data_dir
  )
  examples = [dict(sources["sync_pairs"][i]) for i in range(3)]
  examples[1]["ego"] = np.ones_like(examples[1]["ego"])
  examples[2]["ego"] = examples[2]["ego"][:20]
  mode = trainer.build_mode(config, info)
  frozen = trainer.load_frozen(config, info, mode)
  with caplog.at_level(logging.WARNING):
    source = resync.synced_source(
      mode, frozen, ListSource(examples), config, str(tmp_path), None
    )
  with open(tmp_path / resync.FILENAME) as f:
    record = json.load(f)
  entries = record["recordings"]
  assert record["estimated_by"] == "teacher"
  assert [e["fallback"] for e in entries[1:]] == [
    estimator.NO_SIGNAL,
    estimator.TOO_SHORT,
  ]
  assert record["summary"]["fallbacks"] >= 2
  for entry in entries[1:]:
    assert f"{entry['video_id']} keeps its timestamps" in caplog.text
  # The tiny dataset is in sync: scored against the identity.
  assert "map_error" in entries[0]
  assert len(source) == 3 and len(source[1]["exo"]) == len(examples[1]["exo"])


def test_a_run_estimates_clocks_in_two_rounds(
  make_config, teacher_dir, tmp_path
):
  """Round 2 trains round 1 in its own folder (one student here:
  folds = 1; cross-fitting is the next test), estimates with its student,
  writes the estimates and their error against the offsets put in, and a
  second start re-reports the finished run with the same estimates."""
  config = make_config(
    "distill_model", teacher_workdir=teacher_dir, num_epochs=1
  )
  config.data.sync_offset, config.data.sync_offset_mode = 30, "per_video"
  config.sync.estimate, config.sync.rounds, config.sync.folds = True, 2, 1
  config.sync.max_offset, config.sync.min_frames = 60, 32
  workdir = str(tmp_path / "run")
  results = trainer.train_and_evaluate(config, workdir)
  assert results["total_steps"] > 0
  first = os.path.join(workdir, "round1")
  assert os.path.exists(os.path.join(first, "results.json"))
  with open(os.path.join(first, resync.FILENAME)) as f:
    round1 = json.load(f)
  assert round1["estimated_by"] == "teacher"
  assert [e["index"] for e in round1["recordings"]] == list(range(8))
  with open(os.path.join(workdir, resync.FILENAME)) as f:
    round2 = json.load(f)
  assert round2["estimated_by"] == "student"
  assert not round2["cross_fitted"]
  shifts = resync.draw_shifts(range(8), config)
  assert any(shifts.values())
  for entry in round2["recordings"]:
    assert entry["true_offset"] == pytest.approx(shifts[entry["index"]])
    assert entry["offset_error"] == pytest.approx(
      abs(entry["offset"] - entry["true_offset"])
    )
  assert round2["summary"]["recordings"] == 8
  before = open(os.path.join(workdir, resync.FILENAME)).read()
  again = trainer.train_and_evaluate(config, workdir)
  assert again["best_step"] == results["best_step"]
  assert open(os.path.join(workdir, resync.FILENAME)).read() == before
  # The estimated clocks drawn, and the error table of the study's runs.
  from exo2ego_jax.evaluation import run_report  # pylint: disable=g-import-not-at-top

  run_report.plot_clocks(workdir, 3, None, str(tmp_path / "figs"))
  assert os.path.getsize(tmp_path / "figs" / "clocks.png") > 0
  with pytest.raises(ValueError, match="has no recording nope"):
    run_report.plot_clocks(workdir, 3, ["nope"], str(tmp_path / "figs"))
  import sys  # pylint: disable=g-import-not-at-top

  sys.path.insert(
    0, os.path.join(os.path.dirname(__file__), "..", "benchmarks")
  )
  import sync_error  # pylint: disable=g-import-not-at-top

  os.makedirs(tmp_path / "study" / "seed0")
  os.rename(workdir, tmp_path / "study" / "seed0" / "run")
  found = sync_error.groups(str(tmp_path / "study"))
  assert sorted(found) == [("", 1), ("", 2)]
  # Round 1 pools both students' halves: every recording once.
  assert sorted(e["index"] for e in found[("", 1)]) == list(range(8))
  _, figures = sync_error.table(found)
  assert figures[" round2"]["recordings"] == 8
  assert 0 <= figures[" round2"]["offsets_within_4"] <= 1


def _stand_in_rounds(teacher_dir):
  """(calls, train_round): a train_round that records (rounds, holdout,
  folder) and stands in for training with a copy of the teacher's run."""
  import shutil  # pylint: disable=g-import-not-at-top

  calls = []

  def train_round(earlier, folder):
    calls.append((earlier.sync.rounds, earlier.sync.holdout, folder))
    if not os.path.exists(folder):
      shutil.copytree(teacher_dir, folder)

  return calls, train_round


def test_cross_fitted_students_never_estimate_what_they_trained_on(
  make_config, teacher_dir, tmp_path
):
  """Round 2 with folds = 2 trains (here: stands in for training, with a
  copy of the teacher's run) one round-1 student per fold, each with that
  fold held out, and estimates each recording with the student of its
  fold; a held-out run trains and estimates only the other folds."""
  config = make_config("distill_model", teacher_workdir=teacher_dir)
  config.sync.estimate, config.sync.rounds, config.sync.folds = True, 2, 2
  config.sync.min_frames = 32
  info, sources = datasets.open_dataset(
    config.dataset.name, config.dataset.data_dir
  )
  mode = trainer.build_mode(config, info)
  frozen = trainer.load_frozen(config, info, mode)
  calls, train_round = _stand_in_rounds(teacher_dir)
  source = sources["sync_pairs"]
  workdir = tmp_path / "run"
  workdir.mkdir()
  resync.synced_source(mode, frozen, source, config, str(workdir), train_round)
  assert calls == [
    (1, 0, str(workdir / "round1_fold0")),
    (1, 1, str(workdir / "round1_fold1")),
  ]
  record = json.loads((workdir / resync.FILENAME).read_text())
  assert record["cross_fitted"] and record["estimated_by"] == "student"
  assert [e["index"] for e in record["recordings"]] == list(range(8))
  # A student's own run (holdout k) trains on the other fold only.
  fold = resync.folds_of(8, 2, config.seed)
  assert sorted(np.bincount(fold).tolist()) == [4, 4]
  held = make_config("distill_model", teacher_workdir=teacher_dir)
  held.sync.estimate, held.sync.holdout, held.sync.min_frames = True, 1, 32
  student_dir = tmp_path / "student"
  student_dir.mkdir()
  kept = resync.synced_source(
    mode, frozen, source, held, str(student_dir), None
  )
  others = [i for i in range(8) if fold[i] != 1]
  assert len(kept) == 4
  assert [kept[k]["video_id"] for k in range(4)] == [
    source[i]["video_id"] for i in others
  ]
  record = json.loads((student_dir / resync.FILENAME).read_text())
  assert [e["index"] for e in record["recordings"]] == others


def test_a_third_round_is_cross_fitted_at_every_depth(
  make_config, teacher_dir, tmp_path
):
  """With rounds = 3, the top run trains round 2's fold students
  (<run>/round2_fold<k>); each of those trains on the other folds, whose
  pairs round 1's student of their own fold estimates, from the shared
  <run>/round1_fold<j>, not from a student of its own that trained on the
  very recordings it estimates."""
  calls, train_round = _stand_in_rounds(teacher_dir)

  def config_of(rounds, holdout):
    config = make_config("distill_model", teacher_workdir=teacher_dir)
    config.sync.estimate, config.sync.rounds = True, rounds
    config.sync.folds, config.sync.holdout = 2, holdout
    config.sync.min_frames = 32
    return config

  top = config_of(3, None)
  info, sources = datasets.open_dataset(top.dataset.name, top.dataset.data_dir)
  mode = trainer.build_mode(top, info)
  frozen = trainer.load_frozen(top, info, mode)
  source = sources["sync_pairs"]
  run = tmp_path / "run"
  run.mkdir()
  resync.synced_source(mode, frozen, source, top, str(run), train_round)
  assert calls == [
    (2, 0, str(run / "round2_fold0")),
    (2, 1, str(run / "round2_fold1")),
  ]
  # What round2_fold1 does when it is trained: it keeps fold 0 and asks
  # round 1's fold-0 student, beside it, for their clocks.
  fold = resync.folds_of(8, 2, top.seed)
  calls.clear()
  resync.synced_source(
    mode,
    frozen,
    source,
    config_of(2, 1),
    str(run / "round2_fold1"),
    train_round,
  )
  assert calls == [(1, 0, str(run / "round1_fold0"))]
  record = json.loads((run / "round2_fold1" / resync.FILENAME).read_text())
  assert record["cross_fitted"] and record["estimated_by"] == "student"
  assert [e["index"] for e in record["recordings"]] == [
    i for i in range(8) if fold[i] == 0
  ]
  assert not (run / "round2_fold1" / "round1").exists()
