"""Failure behaviour: preemption (SIGTERM), SIGKILL at any point, NaN
batches, locked workdirs, config changes and bad inputs. Every failure leaves
existing checkpoints and dataset files byte-identical."""

import hashlib
import json
import os
import signal
import subprocess
import time

import jax
import numpy as np
import pytest

from exo2ego_jax.runtime import checkpoints
from exo2ego_jax.data import datasets
from exo2ego_jax.training import trainer
from exo2ego_jax.runtime import workdir as workdir_lib
from conftest import command_env, edit_splits, tiny_train_command

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _digest(path):
  """sha256 of every file under `path` (a folder tree's content)."""
  out = {}
  for root, _, files in os.walk(path):
    for name in sorted(files):
      if name == ".lock":
        continue
      full = os.path.join(root, name)
      with open(full, "rb") as f:
        out[os.path.relpath(full, path)] = hashlib.sha256(f.read()).hexdigest()
  return out


def _params(workdir, which=checkpoints.LATEST):
  step, state = checkpoints.restore_state(workdir, which)
  return step, [np.asarray(x) for x in jax.tree.leaves(state["params"])]


def _train_command(data_dir, workdir, epochs):
  return tiny_train_command(
    data_dir,
    workdir,
    num_epochs=epochs,
    eval_every_epochs=epochs,
    checkpoint_every_steps=1,
  )


def _run_until_checkpoint(command, workdir, env, min_step, sig):
  """Starts training, sends `sig` once checkpoint `min_step` exists."""
  proc = subprocess.Popen(
    command,
    cwd=ROOT,
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
  )
  latest = os.path.join(workdir, checkpoints.LATEST)
  deadline = time.time() + 240
  while time.time() < deadline and proc.poll() is None:
    done = (
      [int(d) for d in os.listdir(latest) if d.isdigit()]
      if os.path.isdir(latest)
      else []
    )
    if done and max(done) >= min_step:
      proc.send_signal(sig)
      break
    time.sleep(0.02)
  out, _ = proc.communicate()  # no timeout: a loaded machine is slow
  return proc.returncode, out


EPOCHS = 10  # 20 steps, a checkpoint after each


@pytest.fixture(scope="module")
def straight(tmp_path_factory, tiny_data_dir):
  """An uninterrupted run, the reference of both interruptions below."""
  workdir = str(tmp_path_factory.mktemp("reliability") / "straight")
  subprocess.run(
    _train_command(tiny_data_dir, workdir, EPOCHS),
    cwd=ROOT,
    env=command_env(),
    check=True,
    capture_output=True,
  )
  return workdir


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_or_preempted_run_resumes_to_identical_parameters(
  sig, tmp_path, tiny_data_dir, straight
):
  env = command_env()
  epochs = EPOCHS

  resumed = str(tmp_path / "resumed")
  command = _train_command(tiny_data_dir, resumed, epochs)
  code, out = _run_until_checkpoint(command, resumed, env, 3, sig)
  if sig == signal.SIGKILL:
    assert code == -signal.SIGKILL, out
  else:
    assert code == 0, out
    assert "preempted at step" in out
  interrupted_at, _ = _params(resumed)
  assert 3 <= interrupted_at < 20, "the run ended before the signal"
  subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True)

  step_a, a = _params(straight)
  step_b, b = _params(resumed)
  assert step_a == step_b == 20
  for x, y in zip(a, b):  # bitwise: same batches, same order, same math
    np.testing.assert_array_equal(x, y)
  _, best_a = _params(straight, checkpoints.BEST)
  _, best_b = _params(resumed, checkpoints.BEST)
  for x, y in zip(best_a, best_b):
    np.testing.assert_array_equal(x, y)


def _nan_recording(i, example):
  if i == 3:
    example["exo"] = np.full_like(example["exo"], np.nan)
  return example


def test_nan_batch_stops_the_run_naming_step_and_videos(
  tmp_path, make_config, monkeypatch
):
  workdir = str(tmp_path / "run")
  config = make_config(num_epochs=1)
  trainer.train_and_evaluate(config, workdir)  # a good run: 2 steps
  before = _digest(workdir)
  edit_splits(monkeypatch, train=_nan_recording)
  config = make_config(num_epochs=3)
  with pytest.raises(
    trainer.NonFiniteLossError,
    match=r"at step \d+ \(batch of videos .*train_0003",
  ):
    trainer.train_and_evaluate(config, workdir, allow_config_change=True)
  after = _digest(workdir)
  # The good checkpoints are untouched; only the logs grew.
  for name in before:
    if not name.endswith(("metrics.jsonl", "config.json")):
      assert before[name] == after[name], name


def test_nan_batches_can_be_skipped(tmp_path, make_config, monkeypatch):
  edit_splits(monkeypatch, train=_nan_recording)
  config = make_config(num_epochs=2, skip_nonfinite_batches=True)
  workdir = str(tmp_path / "run")
  trainer.train_and_evaluate(config, workdir)
  _, params = _params(workdir)
  assert all(np.isfinite(p).all() for p in params)
  import json  # pylint: disable=g-import-not-at-top

  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    logs = [json.loads(l) for l in f if '"split": "train"' in l]
  assert sum(l["skipped"] for l in logs) == 2  # one bad batch per epoch
  # A log window of only skipped steps has no loss; the others are finite.
  assert [l["loss"] is None for l in logs].count(True) == 2
  assert all(np.isfinite(l["loss"]) for l in logs if l["loss"] is not None)


def test_locked_workdir_is_refused(tmp_path, make_config):
  workdir = str(tmp_path / "run")
  os.makedirs(workdir)
  with workdir_lib.locked(workdir):
    with pytest.raises(
      workdir_lib.WorkdirInUseError, match=f"in use by pid {os.getpid()}"
    ):
      trainer.train_and_evaluate(make_config(), workdir)


def test_changed_config_needs_explicit_flag(tmp_path, make_config):
  workdir = str(tmp_path / "run")
  trainer.train_and_evaluate(make_config(num_epochs=1), workdir)
  before = _digest(workdir)
  with pytest.raises(
    workdir_lib.ConfigMismatchError,
    match=r"optim.learning_rate: 0.001 -> 0.01.*"
    r"--allow_config_change",
  ):
    trainer.train_and_evaluate(
      make_config(num_epochs=1, **{"optim.learning_rate": 1e-2}), workdir
    )
  assert _digest(workdir) == before


def test_label_outside_class_table_names_the_video(
  tmp_path, make_config, monkeypatch
):
  def bad_label(i, example):
    if i == 2:
      example["labels"] = example["labels"].copy()
      example["labels"][7] = 99
    return example

  edit_splits(monkeypatch, train=bad_label)
  with pytest.raises(
    ValueError,
    match=r"recording train_\d+: labels holds "
    r"label 99 outside the class table \(0..30",
  ):
    trainer.train_and_evaluate(make_config(), str(tmp_path / "run"))


def test_wrong_feature_size_names_the_video(tmp_path, make_config, monkeypatch):
  def short_features(i, example):
    if i == 1:
      example["exo"] = example["exo"][:, :10]
    return example

  edit_splits(monkeypatch, train=short_features)
  with pytest.raises(
    ValueError,
    match=r"exo features have shape \(\d+, 10\), "
    r"expected \(T, 16\)",
  ):
    trainer.train_and_evaluate(make_config(), str(tmp_path / "run"))


def test_truncated_teacher_checkpoint_is_reported_and_kept(
  tmp_path, make_config
):
  teacher = str(tmp_path / "teacher")
  trainer.train_and_evaluate(make_config(num_epochs=1), teacher)
  best = os.path.join(teacher, checkpoints.BEST)
  biggest = max(
    (os.path.join(r, f) for r, _, fs in os.walk(best) for f in fs),
    key=os.path.getsize,
  )
  with open(biggest, "r+b") as f:
    f.truncate(os.path.getsize(biggest) // 2)
  before = _digest(teacher)
  with pytest.raises(
    checkpoints.CheckpointError,
    match=r"best/2 is unreadable: state/\S+ has \d+ of its "
    r"\d+ bytes \(truncated\)\. It was left as it is",
  ):
    trainer.train_and_evaluate(
      make_config("distill_model", teacher_workdir=teacher),
      str(tmp_path / "student"),
    )
  assert _digest(teacher) == before


def test_teacher_of_another_dataset_is_refused(tmp_path, make_config):
  teacher = str(tmp_path / "teacher")
  trainer.train_and_evaluate(make_config(num_epochs=1), teacher)
  config = make_config("distill_model", teacher_workdir=teacher)
  # Pretend the teacher was trained with 12-d features.
  _, state = checkpoints.restore_state(teacher)
  kernel = state["params"]["x1"]["conv0"]["kernel"]
  mode = trainer.build_mode(
    config,
    datasets.open_dataset(config.dataset.name, config.dataset.data_dir)[0],
  )
  info = datasets.open_dataset(config.dataset.name, config.dataset.data_dir)[0]
  state["params"]["x1"]["conv0"]["kernel"] = kernel[:, :12]
  with pytest.raises(ValueError, match="does not match this run's C2F-TCN"):
    trainer.check_teacher({"params": state["params"]}, config, info, mode)


def test_cli_reports_config_mistakes_in_one_line(tmp_path, tiny_data_dir):
  env = command_env()
  base = _train_command(tiny_data_dir, str(tmp_path / "run"), 1)
  unknown = subprocess.run(
    base + ["--config.num_epoch=3"],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
  )
  assert unknown.returncode != 0
  assert "num_epoch" in unknown.stderr
  no_teacher = subprocess.run(
    base + ["--config.mode=distill_model", "--config.data.view=ego"],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
  )
  assert no_teacher.returncode == 1
  assert no_teacher.stderr.strip().splitlines()[-1] == (
    "error: mode distill_model needs a teacher: set "
    "--config.teacher_workdir to an exo_supervised run"
  )
  missing = subprocess.run(
    base + ["--config.dataset.name=not_built_here"],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
  )
  assert missing.returncode == 1
  assert "not_built_here" in missing.stderr and "tfds build" in missing.stderr


def test_dataset_files_survive_failed_runs(
  tiny_data_dir, tmp_path, make_config
):
  before = _digest(tiny_data_dir)
  for config in (
    make_config("distill_model"),
    make_config(**{"data.train_split": "nope"}),
  ):
    with pytest.raises(ValueError):
      trainer.train_and_evaluate(config, str(tmp_path / "run"))
  assert _digest(tiny_data_dir) == before


def test_ctrl_c_during_first_compilation_saves_and_exits_130(
  tmp_path, tiny_data_dir
):
  """Ctrl-C while the first step compiles (a KeyboardInterrupt raised inside
  XLA compilation used to crash the process: exit 139)."""
  markers = tmp_path / "markers"
  markers.mkdir()
  env = command_env(**{checkpoints.MARKERS_ENV: str(markers)})
  workdir = str(tmp_path / "run")
  command = _train_command(tiny_data_dir, workdir, 3) + [
    "--config.checkpoint_every_steps=0"
  ]  # only Ctrl-C saves step 1
  proc = subprocess.Popen(
    command,
    cwd=ROOT,
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
  )
  while not (markers / "train_step").exists() and proc.poll() is None:
    time.sleep(0.01)  # the first step is being traced and compiled now
  proc.send_signal(signal.SIGINT)
  out, _ = proc.communicate()
  assert proc.returncode == 130, out
  assert "Segmentation fault" not in out and "Traceback" not in out
  assert out.strip().splitlines()[-1] == (
    f"interrupted (Ctrl-C) at step 1; state saved in {workdir}: run the "
    "same command again to resume"
  )
  assert os.listdir(os.path.join(workdir, checkpoints.LATEST)) == ["1"]


def test_cli_error_is_the_last_line_and_verbose_adds_the_traceback(
  tmp_path, tiny_data_dir
):
  workdir = tmp_path / "run"
  workdir.mkdir()
  (workdir / "config.json").write_text('{"mode": "exo_sup')  # cut short
  expected = (
    f"error: {workdir}/config.json is unreadable (cut short or edited: "
    "Unterminated string starting at: line 1 column 10 (char 9)): if the "
    "config you pass is this run's, --allow_config_change writes it "
    "again; otherwise use a new --workdir"
  )
  for verbose in (False, True):
    result = subprocess.run(
      _train_command(tiny_data_dir, str(workdir), 1) + ["--verbose"] * verbose,
      cwd=ROOT,
      env=command_env(),
      capture_output=True,
      text=True,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == expected
    assert ("Traceback" in result.stderr) == verbose
  assert (workdir / "config.json").read_text() == '{"mode": "exo_sup'


def test_unexpected_failure_is_one_line_with_its_traceback_logged(tmp_path):
  from absl import flags  # pylint: disable=g-import-not-at-top
  from absl.testing import flagsaver  # pylint: disable=g-import-not-at-top
  from exo2ego_jax.runtime import errors  # pylint: disable=g-import-not-at-top

  if "workdir" not in flags.FLAGS:
    flags.DEFINE_string("workdir", None, "Run directory (for this test).")
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()

  def main(argv):
    del argv
    raise RuntimeError("a library broke\nin two lines")

  with flagsaver.flagsaver(workdir=str(tmp_path)):
    with pytest.raises(SystemExit) as info:
      errors.call(main, [])
  log = tmp_path / errors.LOG_NAME
  assert info.value.code == (
    "error: RuntimeError: a library broke in two lines (an unexpected "
    f"failure; the traceback is in {log}; please report it)"
  )
  assert 'raise RuntimeError("a library broke' in log.read_text()
  with flagsaver.flagsaver(workdir=str(tmp_path)):
    with pytest.raises(SystemExit) as info:  # a known mistake: no log
      errors.call(lambda argv: trainer.read_run_config(str(tmp_path)), [])
  assert info.value.code == (
    f"error: {tmp_path}/config.json not found: {tmp_path} is not a run "
    "directory of exo2ego_jax.train"
  )
  assert log.read_text().count("Traceback") == 1


def test_metrics_rewind_keeps_one_record_per_step(tmp_path):
  workdir = str(tmp_path)
  for step in (1, 2, 3):
    workdir_lib.append_metrics(workdir, {"step": step, "split": "train"})
  workdir_lib.append_metrics(workdir, {"step": 2, "split": "validation"})
  path = os.path.join(workdir, workdir_lib.METRICS)
  mtime = os.stat(path).st_mtime_ns
  workdir_lib.rewind_metrics(workdir, 3)  # nothing past step 3: untouched
  assert os.stat(path).st_mtime_ns == mtime
  with open(path, "a") as f:
    f.write('{"step": 4, "spl')  # a line cut by a kill
  workdir_lib.rewind_metrics(workdir, 3)
  with open(path) as f:
    assert f.read().splitlines()[-1] == '{"step": 2, "split": "validation"}'
  workdir_lib.rewind_metrics(workdir, 1)
  with open(path) as f:
    assert [json.loads(l) for l in f] == [{"step": 1, "split": "train"}]
  assert workdir_lib.evaluations(workdir, "validation") == {}


def test_reader_of_two_best_checkpoints_takes_the_better(tmp_path):
  """best/ of a run stopped between the commit of a best checkpoint and the
  removal of the other (by an older version: the newer one is worse)."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  manager = ocp.CheckpointManager(str(tmp_path / checkpoints.BEST))
  for step, mof in ((2, 30.0), (4, 20.0)):
    manager.save(
      step,
      args=ocp.args.Composite(
        state=ocp.args.StandardSave({"w": jnp.full(3, step)})
      ),
      metrics={"mof": mof},
    )
  manager.close()
  step, state = checkpoints.restore_state(str(tmp_path))
  assert step == 2 and state["w"].tolist() == [2, 2, 2]


def test_full_disk_anywhere_is_one_line():
  from exo2ego_jax.runtime import errors  # pylint: disable=g-import-not-at-top

  try:
    try:
      raise OSError(28, "No space left on device", "/runs/a/metrics.jsonl")
    except OSError as e:
      raise RuntimeError("Event loop is closed") from e
  except RuntimeError as e:
    assert errors.one_line(e) == (
      "disk full writing /runs/a/metrics.jsonl: free some space, then run "
      "the same command again",
      True,
    )
  wrapped = ValueError(
    "RESOURCE_EXHAUSTED: Failed writing: ...: No space "
    "left on device [os_error_code='28']"
  )  # tensorstore's
  assert errors.is_disk_full(wrapped)
  assert not errors.is_disk_full(ValueError("No such file or directory"))
