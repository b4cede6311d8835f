"""Robustness-study knobs and tools: a share of the synchronized pairs, a
synchronization offset at training time, test-time chunk sizes, benchmark
sweeps, and the plot/confusion report of a run."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from exo2ego_jax.training import study
from exo2ego_jax.data import datasets
from exo2ego_jax.data import input_pipeline as ip
from exo2ego_jax.evaluation import report
from exo2ego_jax.training import trainer
from exo2ego_jax.runtime import workdir as workdir_lib
from conftest import ListSource

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _recording(index, length=40, dim=2):
  """exo frame t holds t; ego frame t holds 1000 + t; labels t // 10."""
  t = np.arange(length, dtype=np.float32)
  return {
    "exo": np.stack([t] * dim, 1),
    "ego": np.stack([1000 + t] * dim, 1),
    "labels": (np.arange(length) // 10).astype(np.int32),
    "video_id": f"v{index}".encode(),
  }


def _dataset(num=12, **kwargs):
  args = dict(
    views=("exo", "ego"),
    label_key="labels",
    batch_size=2,
    num_epochs=3,
    max_frames=40,
    chunk_size=1,
    zoom=False,
    seed=3,
  )
  args.update(kwargs)
  return ip.train_dataset(
    ListSource([_recording(i) for i in range(num)]), **args
  )


# ----- Share of the training recordings. -----


def test_subsets_are_nested_deterministic_and_rounded():
  quarter = ip.subset_indices(60, 0.25)
  half = ip.subset_indices(60, 0.5)
  assert (
    len(quarter) == 15
    and len(half) == 30
    and len(ip.subset_indices(60, 0.15)) == 9
  )
  assert set(quarter) <= set(half)
  np.testing.assert_array_equal(quarter, ip.subset_indices(60, 0.25))
  assert not np.array_equal(quarter, ip.subset_indices(60, 0.25, seed=1))
  np.testing.assert_array_equal(ip.subset_indices(60, 1.0), np.arange(60))
  with pytest.raises(ValueError, match=r"train_fraction=0.0 must lie in"):
    ip.subset_indices(60, 0.0)


def test_a_fraction_trains_on_its_subset_for_as_many_steps():
  full = _dataset()
  half = _dataset(fraction=0.5)
  assert len(full) == len(half) == 18  # 12 recordings / batch 2 * 3 epochs
  seen = {int(i) for k in range(len(half)) for i in half[k]["index"]}
  assert seen == set(ip.subset_indices(12, 0.5).tolist())
  # fraction 1 is the ordinary pipeline, batch for batch.
  same = _dataset(fraction=1.0)
  for k in range(len(full)):
    np.testing.assert_array_equal(full[k]["index"], same[k]["index"])


def test_a_fraction_below_one_batch_is_a_clear_error():
  with pytest.raises(
    ValueError,
    match=r"has 1 recordings \(config.data."
    r"train_fraction=0.1 of 12\).*raise the fraction",
  ):
    _dataset(fraction=0.1)


# ----- Synchronization offset at training time. -----


def _window(offset, index=0, rng_seed=0, length=40):
  window = ip.RandomWindow(
    ("exo", "ego"),
    "labels",
    max_frames=length,
    chunk_size=1,
    zoom=False,
    sync_offset=offset,
  )
  example = dict(_recording(index, length), index=index)
  return window.random_map(example, np.random.default_rng(rng_seed))


def test_fixed_offset_shifts_only_the_student_view_and_clamps():
  window = _window(ip.SyncOffset(3, "fixed"))
  np.testing.assert_array_equal(window["exo"][:, 0], np.arange(40))
  np.testing.assert_array_equal(window["labels"], np.arange(40) // 10)
  expected = 1000 + np.minimum(np.arange(40) + 3, 39)  # last frame repeats
  np.testing.assert_array_equal(window["ego"][:, 0], expected)
  back = _window(ip.SyncOffset(-5, "fixed"))
  np.testing.assert_array_equal(back["ego"][:5, 0], [1000] * 5)
  np.testing.assert_array_equal(back["ego"][5:, 0], 1000 + np.arange(35))


def _offset_of(window):
  return int(window["ego"][10, 0] - 1000 - window["exo"][10, 0])


def test_per_video_offset_is_fixed_per_recording_and_bounded():
  offset = ip.SyncOffset(6, "per_video", seed=1)
  per_recording = [_offset_of(_window(offset, index=i)) for i in range(30)]
  again = [_offset_of(_window(offset, index=i, rng_seed=99)) for i in range(30)]
  assert per_recording == again  # the window's rng does not matter
  assert all(-6 <= o <= 6 for o in per_recording)
  assert len(set(per_recording)) > 5  # differs between recordings
  other_seed = [
    _offset_of(_window(ip.SyncOffset(6, "per_video", seed=2), index=i))
    for i in range(30)
  ]
  assert other_seed != per_recording


def test_per_window_offset_changes_between_windows():
  offset = ip.SyncOffset(6, "per_window")
  draws = [_offset_of(_window(offset, rng_seed=s)) for s in range(30)]
  assert all(-6 <= o <= 6 for o in draws) and len(set(draws)) > 5


def test_bad_offset_settings_are_clear_errors():
  with pytest.raises(ValueError, match="mode 'random' is unknown"):
    ip.SyncOffset(3, "random")
  with pytest.raises(ValueError, match="frames >= 0"):
    ip.SyncOffset(-3, "per_video")


def test_trainer_rejects_knobs_a_mode_cannot_use(make_config, tiny_data_dir):
  info, _ = datasets.open_dataset("synthetic_sync/tiny", tiny_data_dir)
  config = make_config("exo_supervised")
  config.data.sync_offset = 4
  with pytest.raises(
    ValueError, match="exo_supervised trains on no synchronized pair"
  ):
    trainer.build_mode(config, info)
  config = make_config("distill_model", teacher_workdir="/t")
  config.data.sync_offset, config.data.sync_offset_mode = 4, "sometimes"
  with pytest.raises(ValueError, match="sync_offset_mode='sometimes'"):
    trainer.build_mode(config, info)
  config = make_config("distill_model", teacher_workdir="/t")
  config.data.train_fraction = 1.5
  with pytest.raises(ValueError, match="train_fraction=1.5 must lie in"):
    trainer.build_mode(config, info)
  config = make_config()
  config.data.eval_chunk_sizes = (4, 0)
  with pytest.raises(ValueError, match="must be positive integers"):
    trainer.build_mode(config, info)


def test_runs_from_before_the_new_options_still_resume(tmp_path, make_config):
  config = make_config()
  old = json.loads(config.to_json())
  for key in (
    "train_fraction",
    "subset_seed",
    "sync_offset",
    "sync_offset_mode",
    "eval_chunk_sizes",
  ):
    del old["data"][key]
  del old["model"]["conv_impl"]
  (tmp_path / "config.json").write_text(json.dumps(old))
  workdir_lib.check_same_config(str(tmp_path), config.to_json(), False)
  config.data.train_fraction = 0.5
  with pytest.raises(
    workdir_lib.ConfigMismatchError, match=r"data.train_fraction: 1.0 -> 0.5"
  ):
    workdir_lib.check_same_config(str(tmp_path), config.to_json(), False)


def test_a_section_switched_off_in_both_configs_does_not_refuse_a_run(
  tmp_path, make_config
):
  """config.sync is read only with sync.estimate on: a run without it is
  reused whatever the other sync fields now default to; with it on (in
  either config) they count."""
  config = make_config()
  (tmp_path / "config.json").write_text(config.to_json())
  config.sync.max_rate = 0.25
  workdir_lib.check_same_config(str(tmp_path), config.to_json(), False)
  config.sync.estimate = True
  with pytest.raises(
    workdir_lib.ConfigMismatchError,
    match=r"sync.estimate: False -> True, sync.max_rate: 0.0 -> 0.25",
  ):
    workdir_lib.check_same_config(str(tmp_path), config.to_json(), False)
  config.data.sync_offset = 8  # outside the section: always counts
  config.sync.estimate, config.sync.max_rate = False, 0.0
  with pytest.raises(workdir_lib.ConfigMismatchError, match="data.sync_offset"):
    workdir_lib.check_same_config(str(tmp_path), config.to_json(), False)


# ----- Test-time augmentation. -----


def test_eval_chunk_sizes_average_several_resolutions(teacher_dir, make_config):
  plain = trainer.evaluate_run(
    make_config(), teacher_dir, "validation", write_predictions=False
  )
  config = make_config()
  config.data.eval_chunk_sizes = (2, 4, 8)
  tta = trainer.evaluate_run(
    config, teacher_dir, "validation", write_predictions=False
  )
  assert plain["chunk_sizes"] == [4] and tta["chunk_sizes"] == [2, 4, 8]
  assert tta["mof"] != plain["mof"]  # other predictions, same checkpoint
  # An explicit argument (evaluate --chunk_sizes) wins over the config.
  explicit = trainer.evaluate_run(
    config,
    teacher_dir,
    "validation",
    chunk_sizes=["4"],
    write_predictions=False,
  )
  assert explicit["chunk_sizes"] == [4] and explicit["mof"] == plain["mof"]


# ----- Confusion report. -----


def test_confusion_matrix_and_worst_classes():
  names = ["background", "cut", "stir", "pour"]
  gt = np.array([0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, -100])
  pred = np.array([0, 0, 1, 1, 1, 1, 2, 3, 3, 1, 3, 3, 2])
  matrix = report.confusion_matrix([(pred, gt)], 4)
  assert matrix.sum() == 12  # the ignored frame is not counted
  assert matrix[2].tolist() == [0, 1, 1, 2]
  stats = report.per_class(matrix, names)
  assert stats[2]["recall"] == 25.0 and stats[2]["precision"] == 100.0
  assert stats[3]["recall"] == 100.0 and stats[3]["precision"] == 50.0
  worst = report.worst_classes(matrix, names, count=2)
  assert [w["class"] for w in worst] == ["stir", "pour"]
  assert worst[0]["mistaken_for"] == [
    {"class": "pour", "share": 50.0},
    {"class": "cut", "share": 25.0},
  ]
  text = report.markdown(worst, "title")
  assert "| stir | 4 | 25.0 | 100.0 | 40.0 | pour 50%, cut 25% |" in text
  with pytest.raises(ValueError, match="prediction of 3 frames against"):
    report.confusion_matrix([(pred[:3], gt)], 4)


def test_plot_command_draws_bars_and_reports_worst_classes(
  teacher_dir, tmp_path
):
  out = tmp_path / "plots"
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "exo2ego_jax.plot",
      "--workdir",
      teacher_dir,
      "--split",
      "test",
      "--view",
      "ego",
      "--videos",
      "3",
      "--worst",
      "4",
      "--out",
      str(out),
    ],
    capture_output=True,
    text=True,
    cwd=ROOT,
    check=False,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "the 4 classes with the lowest frame F1" in proc.stdout
  with open(out / "segmentation.png", "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  saved = json.loads((out / "confusion.json").read_text())
  matrix = np.array(saved["confusion"])
  num_classes = len(saved["class_names"])
  assert matrix.shape == (num_classes, num_classes)
  # Every scored ego frame of the test split is counted once.
  _, sources = datasets.open_dataset(
    "synthetic_sync/tiny",
    json.load(open(os.path.join(teacher_dir, "config.json")))["dataset"][
      "data_dir"
    ],
  )
  frames = sum(
    int((np.asarray(sources["test"][i]["ego_labels"]) >= 0).sum())
    for i in range(len(sources["test"]))
  )
  assert matrix.sum() == frames
  assert len(saved["worst"]) == 4
  f1s = [w["f1"] for w in saved["worst"]]
  assert f1s == sorted(f1s)
  # Unknown recordings are named.
  proc = subprocess.run(
    [
      sys.executable,
      "-m",
      "exo2ego_jax.plot",
      "--workdir",
      teacher_dir,
      "--video_ids",
      "nope",
      "--out",
      str(out),
    ],
    capture_output=True,
    text=True,
    cwd=ROOT,
    check=False,
  )
  assert proc.returncode != 0 and "has no recording 'nope'" in proc.stderr


# ----- Benchmark sweeps. -----


def test_benchmark_sweep_writes_curve_and_reuses_plain_runs(
  tmp_path, tiny_data_dir
):
  bench = study.load_config_file(
    os.path.join(ROOT, "configs", "synthetic_ablation_sync.py")
  )
  bench.workdir = str(tmp_path / "study")
  bench.results_dir = None  # next to the runs
  bench.data_dir = tiny_data_dir
  bench.dataset_name = "synthetic_sync/tiny"
  bench.seeds = (0,)
  bench.methods = ("exo_only",)
  bench.teacher_reference_view = ""
  bench.sweep.grid = (0.5, 1.0)
  bench.sweep.references = ("exo_only",)
  tiny = {
    "data": {"max_frames": 64, "batch_size": 4, "eval_batch_size": 4},
    "num_epochs": 2,
    "eval_every_epochs": 1,
  }
  bench.overrides = {"exo_only": tiny, "distill_model": tiny}
  results = study.run_benchmark(bench)
  study_dir = tmp_path / "study"
  assert sorted(os.listdir(study_dir / "distill_model")) == [
    "seed0",
    "train_fraction=0.5",
  ]  # 1.0 is the plain distill_model run
  half = json.loads(
    (
      study_dir
      / "distill_model"
      / "train_fraction=0.5"
      / "seed0"
      / "config.json"
    ).read_text()
  )
  assert half["data"]["train_fraction"] == 0.5
  assert list(results["table"]) == [
    "exo_only",
    "distill_model train_fraction=0.5",
    "distill_model train_fraction=1.0",
  ]
  sweep = results["sweep"]
  assert sweep["values"] == [0.5, 1.0] and len(sweep["curve"]["f1@25"]) == 2
  assert (
    sweep["curve"]["edit"][1]["mean"]
    == results["table"]["distill_model train_fraction=1.0"]["edit"]["mean"]
  )
  assert (
    sweep["references"]["exo_only"]["f1@25"]
    == results["table"]["exo_only"]["f1@25"]["mean"]
  )
  with open(study_dir / "sweep.png", "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert (
    "distill_model train_fraction=0.5" in (study_dir / "results.md").read_text()
  )
  # The time profile: every run's, and a total that adds up to the study's
  # time.
  profile = results["profile"]
  assert list(profile["runs"]) == [
    "exo_only/seed0",
    "distill_model train_fraction=0.5/seed0",
    "distill_model train_fraction=1.0/seed0",
  ]
  steps = [p["trained_steps"] for p in profile["runs"].values()]
  assert steps == [4, 4, 4]
  total = profile["total"]
  assert total["trained_steps"] == sum(steps)
  assert abs(total["wall"] - results["total_seconds"]) < 0.1
  for run in [*profile["runs"].values(), total]:
    assert run["test_evaluation"] > 0 and run["other"] >= 0
    parts = sum(v for k, v in run.items() if k not in ("wall", "trained_steps"))
    assert abs(parts - run["wall"]) < 0.01
  assert "| total |" in (study_dir / "results.md").read_text()
