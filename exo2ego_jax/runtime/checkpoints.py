"""Orbax checkpoints of a run: the latest states (for resuming) and the best
state by a validation metric (for evaluation and as a teacher).

`<workdir>/checkpoints/<step>` holds the latest two, `<workdir>/best/<step>`
the best. What keeps them usable through kills, full disks and damage
(docs/failure_behaviour.md says it from the user's side):

* Orbax writes a checkpoint into `<step>.orbax-checkpoint-tmp` and renames it
  when complete. Just before that rename `checksums.json` (size and sha256 of
  every file) is written into it, so every complete checkpoint carries its
  checksums; restoring checks them first.
* At an evaluation step the best candidate is committed before the latest
  state: a crash between the two leaves best/ ahead, never behind.
* Old checkpoints are renamed into `.deleting/` before they are removed, so a
  reader (evaluate, a student loading its teacher) sees a checkpoint whole or
  not at all, and retries on the newest one when it disappears.

A run can name state entries it re-attaches at every start rather than
saves (`unsaved`: the frozen teacher/adapter, runtime/frozen.py). Workdirs
whose checkpoints were written with those entries (by older versions) keep
that layout, and restoring reads them when a checkpoint holds them.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import logging as std_logging
import math
import os
import shutil
import signal
import time

from absl import logging
import jax
import orbax.checkpoint as ocp
from orbax.checkpoint.path import atomicity

from exo2ego_jax.runtime import errors

LATEST = "checkpoints"
BEST = "best"
DAMAGED = "damaged"  # <workdir>/damaged/: checkpoints set aside on restore
CHECKSUMS = "checksums.json"
KEEP_LATEST = 2  # a damaged latest checkpoint falls back to the one before
TMP_SUFFIX = atomicity.TMP_DIR_SUFFIX
_TRASH = ".deleting"
# Written or rewritten by orbax after the checksums, while committing.
_UNCHECKED = ("_CHECKPOINT_METADATA", "commit_success.txt", CHECKSUMS)

# Fault injection (tests): EXO2EGO_JAX_FAULT="<point>@<n>" kills the process
# with SIGKILL at the n-th pass through fault_point(<point>);
# EXO2EGO_JAX_FAULT_MARKERS=<dir> leaves an empty file <dir>/<point> at each.
FAULT_ENV = "EXO2EGO_JAX_FAULT"
MARKERS_ENV = "EXO2EGO_JAX_FAULT_MARKERS"
_passes = collections.Counter()


def fault_point(name: str) -> None:
  """A named instant of a save or a training step (see FAULT_ENV).

  Tests also replace this function, e.g. to copy the workdir as a crash at
  that instant would leave it. Points: `<kind>:before_save`,
  `<kind>:tmp_created`, `<kind>:tmp_written`, `<kind>:checksummed`,
  `<kind>:renamed`, `<kind>:saved` (kind: checkpoints or best), and the
  trainer's `train_step`.
  """
  fault, markers = os.environ.get(FAULT_ENV), os.environ.get(MARKERS_ENV)
  if not (fault or markers):
    return
  _passes[name] += 1
  if markers:
    with open(os.path.join(markers, name.replace(":", "-")), "w"):
      pass
  if fault == f"{name}@{_passes[name]}":
    os.kill(os.getpid(), signal.SIGKILL)


class CheckpointError(ValueError):
  """A checkpoint that cannot be used; the message names it and the fix."""


# ----- Checksums. -----


def _files(path: str) -> list[str]:
  out = []
  for root, dirs, names in os.walk(path):
    dirs.sort()
    out += [
      os.path.relpath(os.path.join(root, n), path)
      for n in sorted(names)
      if n not in _UNCHECKED
    ]
  return out


def _sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      digest.update(block)
  return digest.hexdigest()


def write_checksums(path: str) -> None:
  """Records the size and sha256 of every file of the checkpoint `path`."""
  files = {
    rel: {
      "bytes": os.path.getsize(os.path.join(path, rel)),
      "sha256": _sha256(os.path.join(path, rel)),
    }
    for rel in _files(path)
  }
  with open(os.path.join(path, CHECKSUMS), "w") as f:
    json.dump({"files": files}, f, indent=1)
    f.flush()
    os.fsync(f.fileno())


def verify(path: str) -> str | None:
  """What is wrong with the checkpoint `path` by its checksums, or None.

  A checkpoint without checksums.json (written before they existed) passes.
  """
  listing = os.path.join(path, CHECKSUMS)
  if not os.path.exists(listing):
    return None
  try:
    with open(listing) as f:
      files = json.load(f)["files"]
  except (ValueError, KeyError, TypeError):
    return f"its {CHECKSUMS} is unreadable"
  for rel, want in files.items():
    full = os.path.join(path, rel)
    if not os.path.exists(full):
      return f"{rel} is missing"
    size = os.path.getsize(full)
    if size < want["bytes"]:
      return f"{rel} has {size} of its {want['bytes']} bytes (truncated)"
    if size > want["bytes"]:
      return f"{rel} has {size} bytes instead of {want['bytes']}"
    if _sha256(full) != want["sha256"]:
      return f"{rel} differs from the saved file (a changed byte)"
  return None


class _ChecksummedPath(atomicity.AtomicRenameTemporaryPath):
  """Orbax's write-then-rename, with checksums written just before the
  rename of a step folder (orbax also uses this class for the item folders
  inside it, which are left alone)."""

  def _kind(self) -> str | None:
    parent = self._final_path.parent
    return None if TMP_SUFFIX in parent.name else parent.name

  async def create(self):
    path = await super().create()
    if self._kind():
      fault_point(f"{self._kind()}:tmp_created")
    return path

  async def finalize(self):
    kind = self._kind()
    if kind:
      fault_point(f"{kind}:tmp_written")
      write_checksums(os.fspath(self.get()))
      fault_point(f"{kind}:checksummed")
    await super().finalize()
    if kind:
      fault_point(f"{kind}:renamed")


# ----- Managers. -----


def _manager(
  directory: str,
  keep: int | None = None,
  best_metric: str | None = None,
  writable: bool = False,
) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(
    max_to_keep=keep,
    create=writable,
    enable_async_checkpointing=False,
    temporary_path_class=_ChecksummedPath,
    todelete_subdir=_TRASH if writable else None,
    best_fn=(lambda m: m[best_metric]) if best_metric else None,
    best_mode="max",
  )
  return ocp.CheckpointManager(os.path.abspath(directory), options=options)


def _steps(directory: str) -> list[int]:
  """Complete checkpoints in `directory`, by their folder names."""
  if not os.path.isdir(directory):
    return []
  return sorted(int(n) for n in os.listdir(directory) if n.isdigit())


def saved_keys(path: str) -> set[str] | None:
  """Top-level keys of the state saved in the checkpoint `path` (None if
  its metadata is unreadable: the restore then reports the damage)."""
  try:
    with open(os.path.join(path, "state", "_METADATA")) as f:
      tree = json.load(f)["tree_metadata"]
    return {entry["key_metadata"][0]["key"] for entry in tree.values()}
  except (OSError, ValueError, KeyError, IndexError, TypeError):
    return None


def _held_target(path: str, target: dict | None, optional) -> dict | None:
  """`target` without the `optional` entries the checkpoint lacks."""
  if target is None or not optional:
    return target
  keys = saved_keys(path)
  if keys is None:
    return target
  return {k: v for k, v in target.items() if k in keys or k not in optional}


def size_of(path: str) -> int:
  """Bytes of all files under `path`."""
  return sum(
    os.path.getsize(os.path.join(r, n))
    for r, _, names in os.walk(path)
    for n in names
  )


def _describe(e: BaseException) -> str:
  """`Type: first line of the message`, without library object reprs."""
  lines = [l.strip() for l in str(e).splitlines() if l.strip()]
  text = next((l for l in lines if "<bound method" not in l), "")
  return f"{type(e).__name__}: {text[:160]}" if text else type(e).__name__


def _remove_unfinished(directory: str, log: bool = True) -> None:
  """Removes the temporary folders of saves cut short (run by the workdir's
  lock holder only: a reader must never touch a running run's files)."""
  if not os.path.isdir(directory):
    return
  for name in sorted(os.listdir(directory)):
    if TMP_SUFFIX in name or name == _TRASH:
      if log and name != _TRASH:
        logging.warning(
          "Removing %s: a save that was cut short",
          os.path.join(directory, name),
        )
      shutil.rmtree(os.path.join(directory, name))


@contextlib.contextmanager
def _orbax_errors_held():
  """Holds back orbax's error logs (its worker threads log each failed write
  with a traceback) until the caller has decided what to report."""
  held = []

  def hold(record) -> bool:
    if record.levelno >= std_logging.ERROR and "orbax" in record.pathname:
      held.append(record)
      return False
    return True

  logger = std_logging.getLogger("absl")
  logger.addFilter(hold)
  try:
    yield held
  finally:
    logger.removeFilter(hold)


class RunCheckpoints:
  """The latest and the best checkpoints of one workdir, for the process
  that holds its lock (the run)."""

  def __init__(
    self, workdir: str, best_metric: str, unsaved: tuple[str, ...] = ()
  ):
    self.workdir, self.best_metric = workdir, best_metric
    latest_dir = os.path.join(workdir, LATEST)
    best_dir = os.path.join(workdir, BEST)
    best_steps = _steps(best_dir)
    if not os.path.isdir(latest_dir) and best_steps:
      # checkpoints/ is made before best/ is, so only a person removes it.
      k = best_steps[-1]
      raise CheckpointError(
        f"{latest_dir} is missing but {best_dir} holds step {k}: the latest "
        f"state is gone. To resume from step {k}, copy it back (mkdir "
        f"{latest_dir} && cp -r {os.path.join(best_dir, str(k))} "
        f"{latest_dir}/) and run the same command again; to start over, "
        "use a new --workdir"
      )
    if jax.process_index() == 0:
      for directory in (latest_dir, best_dir):
        _remove_unfinished(directory)
    self.latest = _manager(latest_dir, KEEP_LATEST, writable=True)
    self.best = _manager(best_dir, 1, best_metric, writable=True)
    # Finish the removals of old checkpoints that a crash cut short.
    latest_steps = sorted(self.latest.all_steps())
    self._remove(self.latest, latest_steps[:-KEEP_LATEST])
    best = self.best.best_step()
    self._remove(self.best, [s for s in self.best.all_steps() if s != best])
    # `unsaved` entries are left out of the checkpoints, except in workdirs
    # whose checkpoints hold them (written by older versions): those keep
    # their layout, so that all of a run's checkpoints have one.
    saved = [
      os.path.join(d, str(s))
      for d in (latest_dir, best_dir)
      for s in reversed(_steps(d))
    ]
    held = next((k for k in map(saved_keys, saved) if k is not None), set())
    self.unsaved = tuple(k for k in unsaved if k not in held)

  @staticmethod
  def _remove(manager, steps) -> None:
    for step in steps:
      manager.delete(step)  # renamed into .deleting/, then removed
    if steps and jax.process_index() == 0:
      shutil.rmtree(manager.directory / _TRASH, ignore_errors=True)

  def latest_step(self) -> int | None:
    return self.latest.latest_step()

  def best_step(self) -> int | None:
    """Step of the best checkpoint so far (None before the first)."""
    return self.best.best_step()

  def save(self, step: int, state: dict, metrics: dict | None = None) -> None:
    """Saves the latest state; with validation `metrics`, first offers it as
    the best (kept only if its metric beats the best so far)."""
    state = {k: v for k, v in state.items() if k not in self.unsaved}
    if metrics is not None:
      self._offer_best(step, state, metrics)
    self._save(self.latest, step, state)

  def _offer_best(self, step: int, state: dict, metrics: dict) -> None:
    if step in self.best.all_steps():
      return  # committed before a crash; runs are deterministic
    best = self.best.best_step()
    if best is not None:
      old = (self.best.metrics(best) or {}).get(self.best_metric)
      if old is not None and not metrics[self.best_metric] > old:
        return
    self._save(self.best, step, state, metrics)

  def _save(
    self, manager, step: int, state: dict, metrics: dict | None = None
  ) -> None:
    kind = manager.directory.name
    fault_point(f"{kind}:before_save")
    try:
      with _orbax_errors_held() as held:
        manager.save(
          step,
          args=ocp.args.Composite(state=ocp.args.StandardSave(state)),
          metrics=metrics,
          force=True,
        )
    except Exception as e:  # orbax wraps I/O errors in its async machinery
      if errors.is_disk_full(e):
        held.clear()  # tracebacks of what the one-line error says
        raise self._disk_full(manager, step, state) from None
      raise
    finally:
      for record in held:
        std_logging.getLogger("absl").handle(record)
    if jax.process_index() == 0:
      shutil.rmtree(manager.directory / _TRASH, ignore_errors=True)
    fault_point(f"{kind}:saved")

  def _disk_full(self, manager, step: int, state: dict) -> errors.DiskFullError:
    directory = os.fspath(manager.directory)
    if jax.process_index() == 0:
      _remove_unfinished(directory, log=False)
    previous = [s for s in _steps(directory) if s != step]
    need = (
      size_of(os.path.join(directory, str(previous[-1])))
      if previous
      else sum(x.nbytes for x in jax.tree.leaves(state))
    )
    free = shutil.disk_usage(directory).free
    kept = (
      f"{os.path.join(directory, str(previous[-1]))} is intact"
      if previous
      else "no earlier checkpoint was touched"
    )
    path = os.path.join(directory, str(step))
    return errors.DiskFullError(
      f"disk full while saving checkpoint {path}: it needs about "
      f"{errors.megabytes(need)}, {errors.megabytes(free)} "
      f"are free there. The partial folder was removed and {kept}: free "
      "some space, then run the same command again to resume"
    )

  def restore_latest(
    self, target: dict, recorded: dict[int, dict] | None = None
  ) -> dict:
    """The newest latest state whose checksums hold.

    A damaged newest checkpoint is moved to <workdir>/damaged/ (with a
    warning) when an older one is left to fall back to. `recorded` maps
    steps to their recorded validation metrics: the restored step's are
    offered to best/ again, for runs that stopped between the two saves.
    """
    steps = sorted(self.latest.all_steps())
    while True:
      step = steps.pop()
      path = os.fspath(self.latest.directory / str(step))
      problem = verify(path)
      if problem is None:
        break
      if not steps:
        raise CheckpointError(self._damaged_message(path, problem))
      aside = self._set_aside(path)
      again = (
        f"step {step} is"
        if step == steps[-1] + 1
        else f"steps {steps[-1] + 1}-{step} are"
      )
      logging.warning(
        "checkpoint %s is damaged (%s): moved to %s; resuming "
        "from step %d instead (%s trained again)",
        path,
        problem,
        aside,
        steps[-1],
        again,
      )
      self.latest.reload()
    try:
      state = _restore(
        self.latest, step, _held_target(path, target, self.unsaved)
      )
    except Exception as e:  # orbax/tensorstore raise many kinds
      raise CheckpointError(
        f"checkpoint {path} cannot be restored into this run "
        f"({_describe(e)}): it is from a run with another model or dataset, "
        "or damaged. Every file was left as it is: use a new --workdir"
      ) from None
    if recorded and step in recorded:
      self._offer_best(
        step,
        {k: v for k, v in state.items() if k not in self.unsaved},
        recorded[step],
      )
    return state

  def _damaged_message(self, path: str, problem: str) -> str:
    latest_dir = os.fspath(self.latest.directory)
    best = self.best.best_step()
    resume = (
      f" (or first copy {self.best.directory / str(best)} into "
      f"{latest_dir} to resume from step {best})"
      if best
      else ""
    )
    return (
      f"checkpoint {path} is damaged: {problem}. No earlier checkpoint "
      "is left and every file was left as it is: move it out of "
      f"{latest_dir} and run the same command to start this run "
      f"again{resume}, or use a new --workdir"
    )

  def _set_aside(self, path: str) -> str:
    folder = os.path.join(self.workdir, DAMAGED)
    os.makedirs(folder, exist_ok=True)
    name = f"{os.path.basename(os.path.dirname(path))}-{os.path.basename(path)}"
    aside = os.path.join(folder, name)
    n = 1
    while os.path.exists(aside):
      n += 1
      aside = os.path.join(folder, f"{name}.{n}")
    os.rename(path, aside)
    return aside

  def close(self) -> None:
    self.latest.close()
    self.best.close()


def _restore(manager, step: int, target: dict | None) -> dict:
  restore = (
    ocp.args.StandardRestore(target)
    if target is not None
    else ocp.args.StandardRestore()
  )
  return manager.restore(step, args=ocp.args.Composite(state=restore))["state"]


def _pick(directory: str, which: str) -> int | None:
  """The step to read: the newest, or in best/ the best by its metric."""
  steps = _steps(directory)
  if which != BEST or len(steps) < 2:
    return steps[-1] if steps else None
  # Two best checkpoints: a crash between the commit of a new best and the
  # removal of the old one (in runs of older versions, the newer could be
  # the worse one).
  manager = _manager(directory)
  try:

    def value(step):
      metrics = list((manager.metrics(step) or {}).values())
      return metrics[0] if metrics else -math.inf

    return max(steps, key=value)
  finally:
    manager.close()


def restore_state(
  workdir: str,
  which: str = BEST,
  target: dict | None = None,
  attempts: int = 5,
  optional: tuple[str, ...] = (),
) -> tuple[int, dict]:
  """(step, state) of a finished or running workdir's best/latest checkpoint.

  Reads only: safe while that run trains. A checkpoint that the run deletes
  while it is read is no error: the newest one is read instead. Without
  `target` the arrays come back as saved (host arrays), which is what
  loading a teacher or an adapter from another run needs. Entries of
  `target` named in `optional` are not restored where the checkpoint lacks
  them (the run's `unsaved` entries).
  """
  directory = os.path.join(workdir, which)
  if not os.path.isdir(directory):
    raise FileNotFoundError(
      f"no {which!r} checkpoints in {workdir}: train that run first "
      f"(python -m exo2ego_jax.train --workdir {workdir} ...)"
    )
  for attempt in range(attempts):
    step = _pick(directory, which)
    if step is None:
      raise FileNotFoundError(
        f"{directory} holds no complete checkpoint: "
        "train that run (again) first"
      )
    path = os.path.join(directory, str(step))
    try:
      problem = verify(path)
      if problem is not None:
        raise CheckpointError(problem)
      manager = _manager(directory)
      try:
        return step, _restore(
          manager, step, _held_target(path, target, optional)
        )
      finally:
        manager.close()
    except Exception as e:  # orbax/tensorstore raise many kinds
      if attempt + 1 < attempts and (
        not os.path.isdir(path) or _pick(directory, which) != step
      ):
        time.sleep(0.1 * attempt)  # deleted under us by the running run
        continue
      what = (
        str(e)
        if isinstance(e, CheckpointError)
        else f"{_describe(e)}; truncated, corrupt, or from another model"
      )
      raise CheckpointError(
        f"checkpoint {path} is unreadable: {what}. It was left as it is: "
        "restore it from a copy, or train that run again"
      ) from None
  raise AssertionError("unreachable")


def abstract_like(tree):
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)
