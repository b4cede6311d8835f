"""Guards of a run directory: one run at a time, one config per workdir,
files that a crash never leaves half written, a metrics log with one record
per step after any number of resumes, and a clean stop on SIGTERM
(preemption) or Ctrl-C."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import sys
import threading

# Fields that may change between invocations of the same run.
MUTABLE_FIELDS = ("progress",)
# Sections a run reads only when their switch is on: where the switch is off
# in both the run's config and the new one, the rest of the section cannot
# change the run (a new default of config.sync.max_rate does not refuse an
# exo-only run).
SWITCHED_SECTIONS = {"sync.": "sync.estimate"}
# Fields added after runs already existed, with the value that means "as
# before": a run whose config.json lacks one continues (and is reused by the
# benchmark) when the new config leaves it at that value.
ADDED_FIELDS = {
  "data.train_fraction": 1.0,
  "data.subset_seed": 0,
  "data.sync_offset": 0,
  "data.sync_offset_mode": "fixed",
  "data.eval_chunk_sizes": None,
  "model.conv_impl": "xla",
  "data.windows": "random",
  "loss.ignore_background": False,
  "loss.smooth_average": "valid_pairs",
  "early_stopping_patience": 0,
  "model.bn_unbiased_var": False,
  "sync.estimate": False,
  "sync.rounds": 1,
  "sync.max_offset": 450,
  "sync.max_rate": 0.005,
  "sync.first_round_max_rate": 0.0,
  "sync.rate_steps": 21,
  "sync.min_overlap": 0.5,
  "sync.min_frames": 64,
  "sync.min_confidence": 2.0,
  "sync.folds": 2,
  "sync.holdout": None,
  "model.name": "c2f_tcn",
  "multiview.view": None,
  "multiview.teachers": None,
  "student_init_workdir": None,
}


class WorkdirInUseError(RuntimeError):
  pass


class ConfigMismatchError(ValueError):
  pass


@contextlib.contextmanager
def locked(workdir: str):
  """Holds an exclusive lock on `<workdir>/.lock` for the whole run.

  The OS drops the lock when the process dies, even by SIGKILL, so a crashed
  run never blocks its own resumption.
  """
  path = os.path.join(workdir, ".lock")
  with open(path, "a+") as f:
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      f.seek(0)
      owner = f.read().strip() or "another process"
      raise WorkdirInUseError(
        f"{workdir} is in use by {owner}: wait for that run to end, or "
        "choose another --workdir"
      ) from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()} on {os.uname().nodename}")
    f.flush()
    try:
      yield
    finally:
      f.seek(0)
      f.truncate()
      fcntl.flock(f, fcntl.LOCK_UN)


def flatten(tree: dict, prefix: str = "") -> dict:
  """Nested dicts as one level of dotted keys: {"data": {"x": 1}} ->
  {"data.x": 1}."""
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(flatten(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = value
  return flat


def check_same_config(
  workdir: str, config_json: str, allow_change: bool
) -> None:
  """Refuses to continue a run in `workdir` under a different config."""
  path = os.path.join(workdir, "config.json")
  if allow_change or not os.path.exists(path):
    return
  old = flatten(
    read_json(
      path,
      "if the config you pass is this run's, "
      "--allow_config_change writes it again; otherwise "
      "use a new --workdir",
    )
  )
  new = flatten(json.loads(config_json))
  for key, value in ADDED_FIELDS.items():
    old.setdefault(key, value)
  changed = sorted(
    k
    for k in set(old) | set(new)
    if k not in MUTABLE_FIELDS
    and old.get(k) != new.get(k)
    and not _switched_off(k, old, new)
  )
  if changed:
    details = ", ".join(
      f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in changed[:6]
    )
    raise ConfigMismatchError(
      f"{workdir} holds a run with another config ({details}): use a new "
      "--workdir, or pass --allow_config_change to continue this run with "
      "the new config"
    )


def _switched_off(key: str, old: dict, new: dict) -> bool:
  """Whether `key` lies in a SWITCHED_SECTIONS section whose switch is off
  in both configs."""
  return any(
    key.startswith(section)
    and key != switch
    and not old.get(switch)
    and not new.get(switch)
    for section, switch in SWITCHED_SECTIONS.items()
  )


def read_json(path: str, fix: str):
  """The JSON file `path`; unreadable, a one-line error naming it and `fix`."""
  try:
    with open(path) as f:
      return json.load(f)
  except ValueError as e:  # json.JSONDecodeError, UnicodeDecodeError
    raise ValueError(
      f"{path} is unreadable (cut short or edited: {e}): {fix}"
    ) from None


def write_atomic(path: str, text: str) -> None:
  """Writes `path` whole or not at all (a crash leaves the old file)."""
  tmp = f"{path}.tmp{os.getpid()}"
  with open(tmp, "w") as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


# ----- metrics.jsonl: one JSON record per line, each with its "step". -----

METRICS = "metrics.jsonl"


def _read_records(path: str) -> tuple[list[dict], bool]:
  """(the records, whether a line was unreadable: one cut by a crash)."""
  records, cut = [], False
  if os.path.exists(path):
    with open(path) as f:
      for line in f:
        try:
          records.append(json.loads(line))
        except ValueError:
          cut = True
  return records, cut


def append_metrics(workdir: str, record: dict) -> None:
  with open(os.path.join(workdir, METRICS), "a") as f:
    f.write(json.dumps(record) + "\n")


def rewind_metrics(workdir: str, step: int) -> None:
  """Drops the records past `step` (the resumed step: the run computes them
  again) and any line a crash cut; leaves the file alone if there is none."""
  path = os.path.join(workdir, METRICS)
  records, cut = _read_records(path)
  kept = [r for r in records if r.get("step", 0) <= step]
  if cut or len(kept) < len(records):
    write_atomic(path, "".join(json.dumps(r) + "\n" for r in kept))


def evaluations(workdir: str, split: str) -> dict[int, dict]:
  """{step: record} of the evaluations on `split` in metrics.jsonl."""
  records, _ = _read_records(os.path.join(workdir, METRICS))
  return {
    r["step"]: r for r in records if r.get("split") == split and "step" in r
  }


class PreemptionFlag:
  """Set by SIGTERM or Ctrl-C (SIGINT) while installed: the train loop then
  saves and returns. Nothing is raised inside the program (a
  KeyboardInterrupt raised during XLA compilation can crash the process);
  a second Ctrl-C stops at once, without saving (checkpoints are written
  atomically, so that loses only the unsaved steps)."""

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.requested = False
    self.signal = None  # "SIGTERM" or "SIGINT", once requested
    self._previous = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for signum in self.SIGNALS:
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def _handle(self, signum, frame):
    del frame
    if signum == signal.SIGINT and self.signal == "SIGINT":
      sys.stderr.write(
        "\nerror: interrupted again (Ctrl-C): stopped without "
        "saving; run the same command again to resume from "
        "the last checkpoint\n"
      )
      sys.stderr.flush()
      os._exit(130)  # pylint: disable=protected-access
    if signum == signal.SIGINT:
      sys.stderr.write(
        "\nCtrl-C: stopping after this step and saving it "
        "(Ctrl-C again stops at once, without saving)\n"
      )
      sys.stderr.flush()
    self.requested = True
    self.signal = self.signal or signal.Signals(signum).name

  def release(self) -> None:
    """Gives the signals back (for what follows the train loop: Ctrl-C
    there stops at once, as nothing is left unsaved)."""
    for signum, previous in self._previous.items():
      signal.signal(signum, previous)
    self._previous = {}

  def __exit__(self, *exc):
    self.release()
