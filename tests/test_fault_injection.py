"""Fault injection: a tiny run crashed at every phase of a save and at 20
random instants, and damaged in the ways a disk or a person damages files,
must resume to the state of an uninterrupted run, bit for bit, or stop with
one line naming the damage and leave every file as it was.

A crash is simulated by copying the workdir at the instant (hard links for
orbax's write-once data files): what a SIGKILL there leaves on disk. A real
SIGKILL and a full disk are checked to leave the same state as the copy of
that instant. Crash states that differ only in temporary folders (which
every start removes before reading anything) are resumed once.
"""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import threading

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from conftest import command_env, tiny_config, tiny_train_command
from exo2ego_jax.runtime import checkpoints
from exo2ego_jax.runtime import errors
from exo2ego_jax.training import trainer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# 4 steps, a checkpoint after each, evaluations at 2 and 4; best/ (by MoF)
# gets step 2, then step 4 replaces it.
OVERRIDES = dict(
  num_epochs=2, eval_every_epochs=1, checkpoint_every_steps=1, best_metric="mof"
)
STEPS = 4
# Every phase of the saves at step 4 (best, then latest) and the commit of
# the first best: `<fault point>@<pass>`. States that differ only in a
# temporary folder are resumed once, so those with one come first.
PHASES = [
  "best:renamed@1",  # the first best/ committed, latest still at step 1
  "best:checksummed@2",  # complete temporary folder, not renamed
  "best:tmp_written@2",  # arrays written, no checksums yet
  "best:tmp_created@2",  # only orbax's metadata written
  "best:before_save@2",  # before the temporary folder
  "best:renamed@2",  # best/4 and the old best/2 side by side
  "checkpoints:checksummed@4",  # during the latest save
  "checkpoints:tmp_created@4",
  "best:saved@2",  # between best and latest
  "checkpoints:renamed@4",  # checkpoints/2, 3 and 4
  "checkpoints:saved@4",  # after both, before results.json
]
RANDOM_INSTANTS = 8


def _config(data_dir):
  return tiny_config(data_dir, **OVERRIDES)


def _copy_state(src: str, dst: str) -> None:
  """The workdir as a crash now would leave it. Orbax never rewrites a data
  file (`.../d/<hash>`), so those are hard links; the rest is copied."""
  for root, _, names in os.walk(src):
    rel = os.path.relpath(root, src)
    os.makedirs(os.path.join(dst, rel), exist_ok=True)
    for name in names:
      if name == ".lock":
        continue
      source, target = os.path.join(root, name), os.path.join(dst, rel, name)
      try:
        if os.path.basename(root) == "d":
          os.link(source, target)
        else:
          shutil.copy2(source, target)
      except FileNotFoundError:  # removed by orbax meanwhile
        pass


def _temporary(name: str) -> bool:
  return checkpoints.TMP_SUFFIX in name or name == ".deleting"


def _signature(workdir: str) -> tuple:
  """Identifies a crash state: every file by name and content (hard-linked
  data files by inode, which is their content), temporary folders aside."""
  out = []
  for root, dirs, names in os.walk(workdir):
    dirs[:] = sorted(d for d in dirs if not _temporary(d))
    rel = os.path.relpath(root, workdir)
    out.append((rel, None))
    for name in sorted(names):
      path = os.path.join(root, name)
      if os.path.basename(root) == "d":
        out.append((os.path.join(rel, name), os.stat(path).st_ino))
      else:
        with open(path, "rb") as f:
          out.append(
            (os.path.join(rel, name), hashlib.sha256(f.read()).hexdigest())
          )
  return tuple(out)


def _states(workdir: str) -> dict:
  """{(kind, step): numpy leaves} of every checkpoint in the workdir."""
  out = {}
  for kind in (checkpoints.LATEST, checkpoints.BEST):
    directory = os.path.join(workdir, kind)
    manager = ocp.CheckpointManager(
      directory, options=ocp.CheckpointManagerOptions(create=False)
    )
    for step in manager.all_steps():
      state = manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore())
      )["state"]
      out[kind, step] = [np.asarray(x) for x in jax.tree.leaves(state)]
    manager.close()
  return out


def _records(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  for r in records:
    for clock in ("seconds_since_resume", "steps_per_second"):  # wall clock
      r.pop(clock, None)
  return records


def _results(workdir: str) -> dict:
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  results.pop("workdir")
  results.pop("profile", None)  # seconds: they differ between any two runs
  return results


def _leftovers(workdir: str) -> list[str]:
  return [
    os.path.join(kind, name)
    for kind in (checkpoints.LATEST, checkpoints.BEST)
    for name in os.listdir(os.path.join(workdir, kind))
    if not name.isdigit()
  ]


def _digest(path: str) -> dict:
  out = {}
  for root, _, names in os.walk(path):
    for name in names:
      if name != ".lock":
        full = os.path.join(root, name)
        with open(full, "rb") as f:
          out[os.path.relpath(full, path)] = hashlib.sha256(
            f.read()
          ).hexdigest()
  return out


class Reference:
  """The uninterrupted run, and the workdir at every fault point of it."""

  def __init__(self, base: str, data_dir: str):
    self.data_dir, self.workdir = data_dir, os.path.join(base, "reference")
    self.instants = []  # (name, pass, snapshot folder)
    self.base = base
    self.read_errors, self.reads = [], 0

  def run(self, monkeypatch):
    passes = {}

    def snapshot(name):
      passes[name] = passes.get(name, 0) + 1
      folder = os.path.join(self.base, f"crash{len(self.instants):03d}")
      _copy_state(self.workdir, folder)
      self.instants.append((name, passes[name], folder))

    stop = threading.Event()

    def read_while_training():
      """What `evaluate --checkpoint checkpoints` does during the run."""
      while not stop.is_set():
        try:
          checkpoints.restore_state(self.workdir, checkpoints.LATEST)
          self.reads += 1
        except FileNotFoundError:  # nothing saved yet
          pass
        except Exception as e:  # pylint: disable=broad-except
          self.read_errors.append(str(e))
        stop.wait(0.2)

    with monkeypatch.context() as patch:
      patch.setattr(checkpoints, "fault_point", snapshot)
      reader = threading.Thread(target=read_while_training)
      reader.start()
      try:
        trainer.train_and_evaluate(_config(self.data_dir), self.workdir)
      finally:
        stop.set()
        reader.join()
    self.states = _states(self.workdir)
    self.records = _records(self.workdir)
    self.results = _results(self.workdir)

  def snapshot(self, name: str, count: int) -> str:
    return next(f for n, c, f in self.instants if (n, c) == (name, count))

  def assert_same_state(self, workdir: str, name: str, count: int):
    """`workdir` (left by another process) holds what the copy made at
    fault point `name`@`count` holds: the same checkpoints, arrays and
    records, temporary folders aside."""
    folder = self.snapshot(name, count)
    mine, theirs = _states(workdir), _states(folder)
    assert sorted(mine) == sorted(theirs)
    for key, leaves in theirs.items():
      for x, y in zip(leaves, mine[key]):
        np.testing.assert_array_equal(x, y, err_msg=str(key))
    assert _records(workdir) == _records(folder)
    return folder

  def assert_same_end(self, workdir: str, old_latest: bool = True):
    """The resumed run ended as the reference: checkpoints (both kinds,
    every step kept), results.json and metrics.jsonl (wall clock aside)."""
    assert _leftovers(workdir) == []
    states = _states(workdir)
    if not old_latest:  # resumed from a copy of best/: one latest step
      states[checkpoints.LATEST, STEPS - 1] = self.states[
        checkpoints.LATEST, STEPS - 1
      ]
    assert sorted(states) == sorted(self.states)
    for key, leaves in self.states.items():
      for x, y in zip(leaves, states[key]):
        np.testing.assert_array_equal(x, y, err_msg=str(key))
    assert _results(workdir) == self.results
    assert _records(workdir) == self.records


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_data_dir):
  monkeypatch = pytest.MonkeyPatch()
  ref = Reference(str(tmp_path_factory.mktemp("faults")), tiny_data_dir)
  try:
    ref.run(monkeypatch)
  finally:
    monkeypatch.undo()
  yield ref
  shutil.rmtree(ref.base, ignore_errors=True)


_resumed = {}  # crash state (signature or folder) -> the instant resumed


def _resume_and_compare(reference, folder, label):
  """Resumes the crash state in `folder`, once per distinct state; returns
  the label of the instant that resumed it."""
  if folder in _resumed:
    return _resumed[folder]
  signature = _signature(folder)
  if signature not in _resumed:
    workdir = folder + "-resumed"  # the crash state stays for comparisons
    _copy_state(folder, workdir)
    trainer.train_and_evaluate(_config(reference.data_dir), workdir)
    reference.assert_same_end(workdir)
    _resumed[signature] = label
  _resumed[folder] = _resumed[signature]
  return _resumed[signature]


def test_reference_run_saw_every_phase_and_readers_never_failed(reference):
  names = {(n, c) for n, c, _ in reference.instants}
  for phase in PHASES:
    name, count = phase.split("@")
    assert (name, int(count)) in names, phase
  # best/ was written at steps 2 and 4; the latest after every step.
  assert sum(n == "best:saved" for n, _, _ in reference.instants) == 2
  assert sum(n == "checkpoints:saved" for n, _, _ in reference.instants) == 4
  assert sorted(reference.states) == [
    (checkpoints.BEST, 4),
    (checkpoints.LATEST, 3),
    (checkpoints.LATEST, 4),
  ]
  # Reading the latest checkpoint all along the run never failed.
  assert reference.read_errors == [] and reference.reads > 0


@pytest.mark.parametrize("phase", PHASES)
def test_crash_at_save_phase_resumes_bit_identical(reference, phase):
  name, count = phase.split("@")
  folder = reference.snapshot(name, int(count))
  if phase in ("best:checksummed@2", "checkpoints:checksummed@4"):
    assert any(
      checkpoints.TMP_SUFFIX in n
      for n in os.listdir(os.path.join(folder, name.split(":")[0]))
    ), "no temporary folder"
  _resume_and_compare(reference, folder, phase)


def test_crash_at_random_instants_resumes_bit_identical(reference):
  rng = np.random.default_rng(15)
  picks = rng.choice(len(reference.instants), RANDOM_INSTANTS, replace=False)
  resumed = set()
  for i in sorted(picks):
    name, count, folder = reference.instants[i]
    resumed.add(_resume_and_compare(reference, folder, f"{name}@{count}"))
  print(
    f"{RANDOM_INSTANTS} instants of {len(reference.instants)}: "
    f"{len(resumed)} distinct crash states: {sorted(resumed)}"
  )
  assert len(resumed) >= 5


def _train_command(data_dir, workdir):
  return tiny_train_command(
    data_dir,
    workdir,
    num_epochs=2,
    eval_every_epochs=1,
    checkpoint_every_steps=1,
    best_metric="mof",
    log_every_steps=1,
  )


def test_real_sigkill_between_best_and_latest_resumes_bit_identical(
  reference, tmp_path
):
  """The issue's case, with a real kill: best/4 committed, latest at 3."""
  workdir = str(tmp_path / "run")
  env = command_env(**{checkpoints.FAULT_ENV: "best:renamed@2"})
  killed = subprocess.run(
    _train_command(reference.data_dir, workdir),
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
  )
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
  assert sorted(os.listdir(os.path.join(workdir, "best"))) == ["2", "4"]
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["2", "3"]
  folder = reference.assert_same_state(workdir, "best:renamed", 2)
  _resume_and_compare(reference, folder, "best:renamed@2")


# ----- Damage. -----


def _finished_copy(reference, tmp_path) -> str:
  workdir = str(tmp_path / "run")
  shutil.copytree(
    reference.workdir, workdir, ignore=shutil.ignore_patterns(".lock")
  )
  return workdir


def _array_files(checkpoint: str) -> list[str]:
  return sorted(
    os.path.join(r, n)
    for r, _, ns in os.walk(checkpoint)
    for n in ns
    if os.path.basename(r) == "d"
  )


def _flip(path: str, offset: int) -> None:
  with open(path, "r+b") as f:
    f.seek(offset)
    byte = f.read(1)
    f.seek(offset)
    f.write(bytes([byte[0] ^ 0x01]))


def _truncate(path: str) -> None:
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)


def test_a_flipped_byte_anywhere_in_an_array_file_is_detected(
  reference, tmp_path
):
  workdir = _finished_copy(reference, tmp_path)
  latest = os.path.join(workdir, "checkpoints", str(STEPS))
  files = _array_files(latest)
  assert len(files) >= 3
  rng = np.random.default_rng(0)
  for path in files:
    size = os.path.getsize(path)
    for offset in {0, size - 1, int(rng.integers(size))}:
      _flip(path, offset)
      rel = os.path.relpath(path, latest)
      assert checkpoints.verify(latest) == (
        f"{rel} differs from the saved file (a changed byte)"
      )
      _flip(path, offset)  # back
  assert checkpoints.verify(latest) is None


def test_damaged_latest_falls_back_to_the_previous_one(reference, tmp_path):
  workdir = _finished_copy(reference, tmp_path)
  latest = os.path.join(workdir, "checkpoints", str(STEPS))
  target = max(_array_files(latest), key=os.path.getsize)
  _flip(target, os.path.getsize(target) // 2)
  os.remove(os.path.join(workdir, "results.json"))  # also written again
  trainer.train_and_evaluate(_config(reference.data_dir), workdir)
  reference.assert_same_end(workdir)
  assert os.listdir(os.path.join(workdir, "damaged")) == [
    f"checkpoints-{STEPS}"
  ]


def _one_line_error(call) -> str:
  with pytest.raises(Exception) as info:
    call()
  message, known = errors.one_line(info.value)
  assert known and "\n" not in str(info.value), repr(info.value)
  return message


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_damaged_only_checkpoint_is_refused_and_kept(
  reference, tmp_path, damage
):
  workdir = _finished_copy(reference, tmp_path)
  shutil.rmtree(os.path.join(workdir, "checkpoints", str(STEPS - 1)))
  latest = os.path.join(workdir, "checkpoints", str(STEPS))
  target = max(_array_files(latest), key=os.path.getsize)
  rel, size = os.path.relpath(target, latest), os.path.getsize(target)
  {"flip": lambda p: _flip(p, 7), "truncate": _truncate, "delete": os.remove}[
    damage
  ](target)
  before = _digest(workdir)
  message = _one_line_error(
    lambda: trainer.train_and_evaluate(_config(reference.data_dir), workdir)
  )
  what = {
    "flip": "differs from the saved file (a changed byte)",
    "truncate": f"has {size // 2} of its {size} bytes (truncated)",
    "delete": "is missing",
  }[damage]
  assert message == (
    f"checkpoint {latest} is damaged: {rel} {what}. No earlier checkpoint "
    "is left and every file was left as it is: move it out of "
    f"{workdir}/checkpoints and run the same command to start this run "
    f"again (or first copy {workdir}/best/{STEPS} into {workdir}/checkpoints"
    f" to resume from step {STEPS}), or use a new --workdir"
  )
  assert _digest(workdir) == before


def test_cut_config_json_is_named(reference, tmp_path):
  workdir = _finished_copy(reference, tmp_path)
  path = os.path.join(workdir, "config.json")
  with open(path, "r+") as f:
    f.truncate(1)
  before = _digest(workdir)
  message = _one_line_error(
    lambda: trainer.train_and_evaluate(_config(reference.data_dir), workdir)
  )
  assert message == (
    f"{path} is unreadable (cut short or edited: Expecting property name "
    "enclosed in double quotes: line 1 column 2 (char 1)): if the config "
    "you pass is this run's, --allow_config_change writes it again; "
    "otherwise use a new --workdir"
  )
  message = _one_line_error(lambda: trainer.read_run_config(workdir))
  assert message.startswith(f"{path} is unreadable (cut short or edited: ")
  assert message.endswith(
    "restore it from a copy, or pass the run's config with --config"
  )
  assert _digest(workdir) == before


def test_missing_checkpoints_folder_is_refused_then_resumed_from_best(
  reference, tmp_path
):
  workdir = _finished_copy(reference, tmp_path)
  shutil.rmtree(os.path.join(workdir, "checkpoints"))
  os.remove(os.path.join(workdir, "results.json"))
  before = _digest(workdir)
  message = _one_line_error(
    lambda: trainer.train_and_evaluate(_config(reference.data_dir), workdir)
  )
  best = os.path.join(workdir, "best", str(STEPS))
  assert message == (
    f"{workdir}/checkpoints is missing but {workdir}/best holds step "
    f"{STEPS}: the latest state is gone. To resume from step {STEPS}, copy "
    f"it back (mkdir {workdir}/checkpoints && cp -r {best} "
    f"{workdir}/checkpoints/) and run the same command again; to start "
    "over, use a new --workdir"
  )
  assert _digest(workdir) == before
  command = message.split("copy it back (")[1].split(")")[0]
  subprocess.run(command, shell=True, check=True)  # as the message says
  assert os.listdir(os.path.join(workdir, "checkpoints")) == [str(STEPS)]
  trainer.train_and_evaluate(_config(reference.data_dir), workdir)
  reference.assert_same_end(workdir, old_latest=False)


def test_full_disk_names_folder_and_size(reference, tmp_path, monkeypatch):
  """ENOSPC inside orbax's save of the latest state after best/ took the
  step's evaluation (raised where the checksums are written, so it travels
  through orbax's asyncio machinery as a real one does)."""
  kind = "checkpoints"
  workdir = str(tmp_path / "run")
  _copy_state(reference.snapshot("checkpoints:saved", STEPS - 1), workdir)
  write_checksums = checkpoints.write_checksums

  def full_disk(path):
    if os.path.basename(os.path.dirname(path)) == kind:
      raise OSError(28, "No space left on device", path)
    write_checksums(path)

  monkeypatch.setattr(checkpoints, "write_checksums", full_disk)
  previous = os.path.join(workdir, kind, str(STEPS - 1))
  before = _digest(previous)
  with pytest.raises(errors.DiskFullError) as info:
    trainer.train_and_evaluate(_config(reference.data_dir), workdir)
  size = errors.megabytes(checkpoints.size_of(previous))
  assert str(info.value).startswith(
    f"disk full while saving checkpoint {workdir}/{kind}/{STEPS}: it needs "
    f"about {size}, "
  )
  assert str(info.value).endswith(
    f"The partial folder was removed and {previous} is intact: free some "
    "space, then run the same command again to resume"
  )
  assert errors.one_line(info.value) == (str(info.value), True)
  assert _leftovers(workdir) == []
  assert _digest(previous) == before
  # Left as a crash just before that save leaves it, which resumes to the
  # uninterrupted end once there is space.
  monkeypatch.setattr(checkpoints, "write_checksums", write_checksums)
  folder = reference.assert_same_state(workdir, "best:saved", 2)
  _resume_and_compare(reference, folder, "best:saved@2")


def test_reader_retries_a_checkpoint_deleted_under_it(
  reference, tmp_path, monkeypatch
):
  """The race of `evaluate` with a run: the run's removal of an old
  checkpoint lands between the reader's listing and its reading."""
  workdir = _finished_copy(reference, tmp_path)
  verify = checkpoints.verify
  removed = []

  def verify_after_removal(path):
    if not removed:  # the run moves the newest away, as its deleter does
      os.rename(path, path + ".gone")
      removed.append(path)
    return verify(path)

  monkeypatch.setattr(checkpoints, "verify", verify_after_removal)
  step, state = checkpoints.restore_state(workdir, checkpoints.LATEST)
  assert removed == [os.path.join(workdir, "checkpoints", str(STEPS))]
  assert step == STEPS - 1
  for x, y in zip(
    reference.states[checkpoints.LATEST, STEPS - 1], jax.tree.leaves(state)
  ):
    np.testing.assert_array_equal(x, np.asarray(y))


# ----- The backbone distillation loop (exo2ego_jax.distill_backbone). -----


def _distill_config(teacher: str | None):
  """test_distill_backbone's tiny config; `teacher`: converted weights."""
  from test_distill_backbone import _config  # pylint: disable=g-import-not-at-top

  config = _config(train_last_blocks=1)
  config.backbone.params = teacher
  return config


def test_distill_backbone_crashes_and_ctrl_c_resume_bit_identical(
  tmp_path, monkeypatch
):
  """Every distinct crash state of the saves at the end of a 12-step
  distillation (validation at 6 and 12) resumes to the uninterrupted end;
  so does a run stopped by Ctrl-C at step 8, which saves that step first."""
  from exo2ego_jax.backbone import distill as distill_backbone  # pylint: disable=g-import-not-at-top
  from exo2ego_jax.interop import dinov2  # pylint: disable=g-import-not-at-top
  from exo2ego_jax.models import vit  # pylint: disable=g-import-not-at-top

  teacher = str(tmp_path / "teacher")
  model, params = distill_backbone.load_teacher(_distill_config(None))
  dinov2.save_backbone(teacher, jax.device_get(params), vit.config_of(model))
  config = _distill_config(teacher)

  def end(workdir):
    # A train record averages the losses since the previous one, and after
    # a resume only those since the resume: its values may differ.
    records = [
      r if r["split"] == "validation" else (r["step"], r["split"])
      for r in _records(workdir)
    ]
    return (
      _states(workdir),
      records,
      _results(workdir),
      dinov2.load_backbone(workdir)[1],
    )

  def assert_same(a, b):
    assert sorted(a[0]) == sorted(b[0])
    for key in a[0]:
      for x, y in zip(a[0][key], b[0][key]):
        np.testing.assert_array_equal(x, y, err_msg=str(key))
    assert a[1:3] == b[1:3]
    for x, y in zip(jax.tree.leaves(a[3]), jax.tree.leaves(b[3])):
      np.testing.assert_array_equal(x, y)

  straight = str(tmp_path / "straight")
  instants = []

  def snapshot(name):
    folder = str(tmp_path / f"crash{len(instants):03d}")
    _copy_state(straight, folder)
    instants.append((name, folder))

  with monkeypatch.context() as patch:
    patch.setattr(checkpoints, "fault_point", snapshot)
    distill_backbone.train_and_evaluate(config, straight)
  reference = end(straight)
  assert sorted(reference[0]) == [
    ("best", 12),
    ("checkpoints", 6),
    ("checkpoints", 12),
  ]
  seen = set()
  for name, folder in instants[-12:]:  # the saves at step 12, best first
    signature = _signature(folder)
    if signature in seen:
      continue
    seen.add(signature)
    distill_backbone.train_and_evaluate(config, folder)
    assert_same(end(folder), reference)
  assert [n for n, _ in instants[-12:]] == [
    f"{kind}:{phase}"
    for kind in ("best", "checkpoints")
    for phase in (
      "before_save",
      "tmp_created",
      "tmp_written",
      "checksummed",
      "renamed",
      "saved",
    )
  ]
  assert len(seen) == 4  # before, renamed, between, after

  stopped = str(tmp_path / "stopped")
  passes = []

  def ctrl_c_at_step_8(name):
    if name == "train_step":
      passes.append(name)
      if len(passes) == 8:
        os.kill(os.getpid(), signal.SIGINT)

  with monkeypatch.context() as patch:
    patch.setattr(checkpoints, "fault_point", ctrl_c_at_step_8)
    result = distill_backbone.train_and_evaluate(config, stopped)
  assert result == {
    "preempted": True,
    "signal": "SIGINT",
    "step": 8,
    "saved": True,
    "workdir": stopped,
  }
  assert sorted(os.listdir(os.path.join(stopped, "checkpoints"))) == ["6", "8"]
  distill_backbone.train_and_evaluate(config, stopped)
  resumed = end(stopped)
  del resumed[0][checkpoints.LATEST, 8]  # the extra save of the stop
  assert_same(
    resumed,
    (
      {k: v for k, v in reference[0].items() if k != ("checkpoints", 6)},
      *reference[1:],
    ),
  )
