"""Guards of a run directory: one run at a time, one config per workdir,
and a clean stop on SIGTERM (preemption)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import threading

# Fields that may change between invocations of the same run.
MUTABLE_FIELDS = ("progress",)
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
          "choose another --workdir") from None
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


def check_same_config(workdir: str, config_json: str,
                      allow_change: bool) -> None:
  """Refuses to continue a run in `workdir` under a different config."""
  path = os.path.join(workdir, "config.json")
  if allow_change or not os.path.exists(path):
    return
  with open(path) as f:
    old = flatten(json.load(f))
  new = flatten(json.loads(config_json))
  for key, value in ADDED_FIELDS.items():
    old.setdefault(key, value)
  changed = sorted(k for k in set(old) | set(new)
                   if k not in MUTABLE_FIELDS and old.get(k) != new.get(k))
  if changed:
    details = ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}"
                        for k in changed[:6])
    raise ConfigMismatchError(
        f"{workdir} holds a run with another config ({details}): use a new "
        "--workdir, or pass --allow_config_change to continue this run with "
        "the new config")


class PreemptionFlag:
  """Set by SIGTERM while installed; the train loop saves and returns."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
