"""What a user of the commands sees: --help, one-line errors (their exact
last line), no residue after a refused start, progress messages, TensorBoard
event files and the benchmark's study line."""

import json
import logging
import os
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from exo2ego_jax.training import study
from exo2ego_jax.runtime import checkpoints
from exo2ego_jax.data import datasets
from exo2ego_jax.runtime import run_log
from exo2ego_jax.training import trainer
from tfds_builders.feature_folder import feature_folder_dataset_builder as ff
import test_builders_real
from conftest import command_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXO = os.path.join("configs", "synthetic_exo.py")


def _command(module, *args, **env):
  """Runs `python -m exo2ego_jax.<module> args` from the repository root."""
  return subprocess.run(
    [
      sys.executable,
      *env.pop("python_flags", ()),
      "-m",
      f"exo2ego_jax.{module}",
      *args,
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    env=command_env(**env),
  )


def _last_line(proc) -> str:
  return proc.stderr.strip().splitlines()[-1]


# ----- --help -----


@pytest.mark.parametrize("module", ["train", "benchmark", "plot"])
def test_help_exits_0_without_loading_jax(module):
  proc = _command(module, "--help", python_flags=("-X", "importtime"))
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "--workdir" in proc.stdout
  imported = {
    line.rsplit("|", 1)[-1].strip()
    for line in proc.stderr.splitlines()
    if "import time" in line
  }
  assert not {"jax", "tensorflow_datasets", "matplotlib"} & imported


def test_help_lists_the_config_files_fields_with_meanings():
  proc = _command("train", "--config", EXO, "--help")
  assert proc.returncode == 0, proc.stderr[-2000:]
  lines = proc.stdout.splitlines()
  # The value is the config file's; the meaning comes from configs/default.py.
  at = lines.index("  num_epochs = 20")
  assert lines[at + 1] == "      passes over the training split"
  at = lines.index("  data.max_frames = 384")
  assert lines[at + 1] == "      window length in chunked steps"
  bench = _command(
    "benchmark",
    "--config",
    os.path.join("configs", "synthetic_benchmark.py"),
    "--help",
  )
  assert bench.returncode == 0
  assert "  seeds = (0, 1, 2)" in bench.stdout.splitlines()
  assert "  workdir = 'workdirs/synthetic_benchmark'" in bench.stdout


# ----- One-line errors and no residue. -----


def test_config_typo_and_missing_config_file_are_one_line(tmp_path):
  workdir = tmp_path / "run"
  typo = _command(
    "train", "--config", EXO, "--workdir", str(workdir), "--config.nmu_epochs=3"
  )
  assert typo.returncode == 1
  assert typo.stderr.strip() == (
    "error: --config.nmu_epochs: configs/synthetic_exo.py has no field "
    "'nmu_epochs'; did you mean --config.num_epochs? `--config "
    "configs/synthetic_exo.py --help` lists its fields"
  )
  missing = _command(
    "train", "--config", "configs/synthetic_exp.py", "--workdir", str(workdir)
  )
  assert missing.returncode == 1
  assert missing.stderr.strip() == (
    "error: --config configs/synthetic_exp.py: no such config file; did "
    "you mean configs/synthetic_exo.py? give the path of a configs/*.py "
    "file"
  )
  bad_value = _command(
    "train",
    "--config",
    EXO,
    "--workdir",
    str(workdir),
    "--config.num_epochs=many",
  )
  assert bad_value.returncode == 1
  assert _last_line(bad_value) == (
    "error: flag --config.num_epochs=many: invalid literal for int() with "
    "base 10: 'many' (--help lists the flags)"
  )
  assert not workdir.exists()


def test_missing_teacher_is_one_line_and_leaves_no_workdir(
  tmp_path, tiny_data_dir
):
  workdir = tmp_path / "student"
  teacher = tmp_path / "no_teacher"
  proc = _command(
    "train",
    "--config",
    os.path.join("configs", "synthetic_distill_model.py"),
    "--workdir",
    str(workdir),
    f"--config.teacher_workdir={teacher}",
    "--config.dataset.name=synthetic_sync/tiny",
    f"--config.dataset.data_dir={tiny_data_dir}",
  )
  assert proc.returncode == 1
  assert _last_line(proc) == (
    f"error: {teacher}/config.json not found: {teacher} is not a run "
    "directory of exo2ego_jax.train"
  )
  assert not workdir.exists()


def test_mismatched_teacher_leaves_no_workdir(tmp_path, teacher_dir):
  """A teacher of 16-d features for a dataset of 4-d features."""
  manual, data_dir = tmp_path / "manual", tmp_path / "data"
  test_builders_real._folder(manual, test_builders_real.FF_VIDEOS)
  ff.Builder(
    config=ff.config_for(str(manual), name="t4"),
    data_dir=str(data_dir),
    file_format="array_record",
  ).download_and_prepare(
    download_config=datasets.tfds.download.DownloadConfig(
      manual_dir=str(manual)
    )
  )
  config = ml_collections.ConfigDict(trainer.read_run_config(teacher_dir))
  config.mode = "distill_model"
  config.teacher_workdir = teacher_dir
  config.dataset.name, config.dataset.data_dir = (
    "feature_folder/t4",
    str(data_dir),
  )
  workdir = tmp_path / "student"
  with pytest.raises(
    ValueError,
    match="does not match this run's C2F-TCN "
    r"for feature_folder/t4 \(4-d features, 3 classes\)",
  ):
    trainer.train_and_evaluate(config, str(workdir))
  assert not workdir.exists()
  # A workdir that existed before is left, with its files.
  workdir.mkdir()
  (workdir / "notes.txt").write_text("mine")
  with pytest.raises(ValueError):
    trainer.train_and_evaluate(config, str(workdir))
  assert sorted(os.listdir(workdir)) == [".lock", "notes.txt"]


def test_unbuilt_dataset_names_its_build_command_and_leaves_nothing(tmp_path):
  data_dir = tmp_path / "tfds"
  workdir = tmp_path / "run"
  proc = _command(
    "train",
    "--config",
    EXO,
    "--workdir",
    str(workdir),
    "--config.dataset.name=feature_folder/d64",
    f"--config.dataset.data_dir={data_dir}",
  )
  assert proc.returncode == 1
  assert _last_line(proc) == (
    f"error: dataset feature_folder/d64 is not built in {data_dir} and its "
    "files' folder (manual dir) was not given: build it with `tfds build "
    "tfds_builders/feature_folder --config=d64 --manual_dir=<folder of your "
    f"files> --data_dir={data_dir} --file_format=array_record` (see "
    "tfds_builders/feature_folder/README.md), or fix config.dataset.name / "
    "data_dir"
  )
  assert not data_dir.exists() and not workdir.exists()


def test_failed_first_build_leaves_no_downloads_or_config(tmp_path):
  manual = tmp_path / "manual"  # 4-d features, built as the 64-d config
  test_builders_real._folder(manual, test_builders_real.FF_VIDEOS)
  data_dir = tmp_path / "tfds"
  data_dir.mkdir()
  with pytest.raises(
    ValueError,
    match=r"shape \(12, 4\) but the config "
    "declares feature_dim=64",
  ):
    datasets.open_dataset("feature_folder/d64", str(data_dir), str(manual))
  assert os.listdir(data_dir) == []


def test_data_error_ending_a_program_prints_one_line():
  """What `tfds build` (TFDS's own command line) shows for a DataError."""
  proc = subprocess.run(
    [
      sys.executable,
      "-c",
      "from absl import app\n"
      "from tfds_builders.common import errors, repair\n"
      "def main(argv):\n"
      "  raise errors.DataError('a.npy: bad; ' + "
      "repair.repair_fix(nan='zero'))\n"
      "app.run(main)\n",
    ],
    cwd=ROOT,
    capture_output=True,
    text=True,
    env=dict(os.environ, PYTHONPATH=ROOT),
  )
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines() == [
    'error: a.npy: bad; put {"nan": "zero"} in repair.json in the manual '
    "dir (--manual_dir) and build again"
  ]


# ----- Progress, TensorBoard, the study line. -----


def _scalars(workdir) -> dict:
  events = event_accumulator.EventAccumulator(str(workdir))
  events.Reload()
  return {
    tag: [(e.step, e.value) for e in events.Scalars(tag)]
    for tag in events.Tags()["scalars"]
  }


def _records(workdir) -> list[dict]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def test_progress_messages_and_tensorboard_scalars(
  tmp_path, make_config, caplog, monkeypatch
):
  monkeypatch.setattr(run_log, "PROGRESS_LINE_SECONDS", 0.0)
  caplog.set_level(logging.INFO, logger="exo2ego_jax")
  workdir = str(tmp_path / "run")
  config = make_config(num_epochs=1, progress=True)
  trainer.train_and_evaluate(config, workdir)
  first_steps = checkpoints.restore_state(workdir, checkpoints.LATEST)[0]
  messages = [r.getMessage() for r in caplog.records]
  assert messages[0] == "exo_supervised: compiling the training step..."
  assert any(
    m.startswith(
      f"exo_supervised: step {first_steps} of {first_steps} (100%), "
    )
    and " steps/s, ETA 0s" in m
    for m in messages
  ), messages
  # Resuming with more epochs says so, and TensorBoard holds each step once.
  caplog.clear()
  trainer.train_and_evaluate(
    make_config(num_epochs=2, progress=True), workdir, allow_config_change=True
  )
  total = 2 * first_steps
  assert caplog.records[0].getMessage() == (
    f"exo_supervised: resumed at step {first_steps} of {total}"
  )
  scalars = _scalars(workdir)
  train = [r for r in _records(workdir) if r["split"] == "train"]
  assert [s for s, _ in scalars["train/loss"]] == list(range(1, total + 1))
  assert [s for s, _ in scalars["train/loss"]] == [r["step"] for r in train]
  np.testing.assert_allclose(
    [v for _, v in scalars["train/loss"]], [r["loss"] for r in train], rtol=1e-6
  )
  evals = [r for r in _records(workdir) if r["split"] == "validation"]
  assert [r["step"] for r in evals] == [first_steps, total]
  for metric in ("f1@10", "f1@25", "f1@50", "edit", "mof"):
    steps, values = zip(*scalars[f"validation/{metric}"])
    assert list(steps) == [first_steps, total]
    np.testing.assert_allclose(values, [r[metric] for r in evals], rtol=1e-6)
  rates = [v for _, v in scalars["train/steps_per_second"]]
  assert len(rates) == total - 2 and all(r > 0 for r in rates)  # not step 1


def test_study_line_has_elapsed_time_and_eta():
  assert study.study_progress(1, 15, [], 0.4) == "run 1 of 15, elapsed 0s"
  assert study.study_progress(3, 15, [60.0, 120.0], 180.2) == (
    "run 3 of 15, elapsed 3m00s, ETA 19m30s (from 2 runs so far)"
  )
  assert run_log.duration(3725) == "1h02m"


def test_a_training_command_speaks_in_one_style(tmp_path, tiny_data_dir):
  """stderr holds the project's plain lines only (no absl-formatted library
  chatter, no duplicates); the results go to stdout."""
  workdir = tmp_path / "run"
  proc = _command(
    "train",
    "--config",
    EXO,
    "--workdir",
    str(workdir),
    "--config.dataset.name=synthetic_sync/tiny",
    f"--config.dataset.data_dir={tiny_data_dir}",
    "--config.data.max_frames=64",
    "--config.data.batch_size=4",
    "--config.data.eval_batch_size=4",
    "--config.num_epochs=1",
    "--config.eval_every_epochs=1",
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = proc.stderr.strip().splitlines()
  assert lines[0] == "exo_supervised: compiling the training step..."
  assert lines[1].startswith("exo_supervised: compiled in ")
  assert lines[2].startswith("exo_supervised: step 2: validation/exo f1@10=")
  assert len(lines) == 3, lines
  assert set(json.loads(proc.stdout)) >= {"f1@25", "edit", "mof"}
  assert any(
    name.startswith("events.out.tfevents.") for name in os.listdir(workdir)
  )


def test_bounded_compilation_cache_takes_over_an_unbounded_one(tmp_path):
  """The commands bound the compilation cache (JAX's LRU eviction). JAX
  reads every entry's last use from a `<key>-atime` file, which entries of
  an unbounded cache lack: each later write failed. They get one from
  their modification time, and the bound then evicts the oldest first."""
  from jax._src import lru_cache  # pylint: disable=g-import-not-at-top
  from exo2ego_jax.runtime import cli  # pylint: disable=g-import-not-at-top

  old, new = tmp_path / "old-cache", tmp_path / "new-cache"
  old.write_bytes(b"o" * 600)
  new.write_bytes(b"n" * 300)
  os.utime(old, ns=(10**18, 10**18))
  os.utime(new, ns=(2 * 10**18, 2 * 10**18))
  with pytest.raises(FileNotFoundError):
    lru_cache.LRUCache(str(tmp_path), max_size=1000).put("x", b"x" * 200)
  before = (
    jax.config.jax_compilation_cache_dir,
    jax.config.jax_compilation_cache_max_size,
  )
  try:
    cli.enable_compilation_cache(str(tmp_path), 1000)
    assert jax.config.jax_compilation_cache_max_size == 1000
  finally:  # the session's cache again, for the tests that follow
    cli.enable_compilation_cache(*before)
  stamp = (tmp_path / "old-atime").read_bytes()
  assert stamp == (10**18).to_bytes(8, "little")
  lru_cache.LRUCache(str(tmp_path), max_size=1000).put("x", b"x" * 200)
  cached = sorted(p.name for p in tmp_path.glob("*-cache"))
  assert cached == ["new-cache", "x-cache"]  # the oldest made room


def test_benchmark_workdir_takes_the_results_dir_inside_it_along():
  """`--workdir W` keeps every output of a study under W: the baselines'
  results_dir (inside the config's workdir) moves with it; a results_dir
  elsewhere, or none, stays as it is."""
  from configs import synthetic_benchmark  # pylint: disable=g-import-not-at-top
  from configs import synthetic_benchmark_baselines  # pylint: disable=g-import-not-at-top

  bench = synthetic_benchmark_baselines.get_config()
  study.move_to_workdir(bench, "/data/W")
  assert (bench.workdir, bench.results_dir) == ("/data/W", "/data/W/baselines")
  bench = synthetic_benchmark.get_config()
  study.move_to_workdir(bench, "W")
  assert (bench.workdir, bench.results_dir) == ("W", None)
  for elsewhere in ("/abs/results", "workdirs/other/results"):
    bench = synthetic_benchmark_baselines.get_config()
    bench.results_dir = elsewhere
    study.move_to_workdir(bench, "W")
    assert bench.results_dir == elsewhere
