"""Frozen parts of a run (a teacher, a trained adapter): loaded from their
own workdirs at every start, never copied into the run's checkpoints.

Checkpoints hold only what trains, so a run must know that the parts it
re-attaches on a resume (or in `evaluate`) are the ones it trained with.
On its first start it writes `<workdir>/frozen.json`: for each part, the
workdir and checkpoint it was read from and a content hash of its arrays.
Every later start compares, and refuses with one line if a part changed.
Checkpoints written before this (they hold the parts under "frozen") keep
their own copy and need no record.
"""

from __future__ import annotations

import hashlib
import json
import os

import jax
import numpy as np

from exo2ego_jax.runtime import checkpoints
from exo2ego_jax.runtime import workdir as workdir_lib

RECORD = "frozen.json"
STATE_KEY = "frozen"  # the state entry the parts are attached under


def content_hash(tree) -> str:
  """sha256 of a tree's arrays: paths, dtypes, shapes and bytes, in path
  order (equal for equal arrays, whatever device holds them)."""
  digest = hashlib.sha256()
  for path, leaf in sorted(
    jax.tree_util.tree_leaves_with_path(tree),
    key=lambda item: jax.tree_util.keystr(item[0]),
  ):
    array = np.ascontiguousarray(np.asarray(leaf))
    digest.update(jax.tree_util.keystr(path).encode())
    digest.update(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.tobytes())
  return digest.hexdigest()


def restore(workdir: str, loaded: dict | None, role: str) -> dict:
  """The best checkpoint's state of `workdir` (host arrays); notes in
  `loaded[role]` where it came from (for `check_or_record`)."""
  step, state = checkpoints.restore_state(workdir)
  if loaded is not None:
    loaded[role] = {
      "workdir": os.path.abspath(workdir),
      "checkpoint": os.path.join(
        os.path.abspath(workdir), checkpoints.BEST, str(step)
      ),
      "step": int(step),
    }
  return state


def restore_variables(workdir: str, loaded: dict | None, role: str) -> dict:
  """The network variables (params, batch_stats) of `workdir`'s best
  checkpoint, as a frozen teacher or start is kept; see `restore`."""
  state = restore(workdir, loaded, role)
  return {"params": state["params"], "batch_stats": state["batch_stats"]}


def describe(loaded: dict, frozen: dict) -> dict:
  """The record of frozen.json: `loaded` with each part's content hash."""
  return {
    role: dict(source, sha256=content_hash(frozen[role]))
    for role, source in loaded.items()
  }


def check_or_record(workdir: str, record: dict, first_start: bool) -> None:
  """Writes the record on a run's first start (before its first
  checkpoint: nothing trained yet depends on an older record); afterwards
  refuses a part whose content differs from the recorded one."""
  path = os.path.join(workdir, RECORD)
  if first_start:
    if record and jax.process_index() == 0:
      workdir_lib.write_atomic(path, json.dumps(record, indent=2))
    return
  if not os.path.exists(path):
    if record:
      raise ValueError(
        f"{path} is missing: this run cannot tell whether its "
        f"{' and '.join(record)} changed since it started. Restore the "
        "file from a copy, or start the run in a new --workdir"
      )
    return
  recorded = workdir_lib.read_json(
    path, "restore it from a copy, or start the run in a new --workdir"
  )
  for role in sorted(set(recorded) | set(record)):
    was, now = recorded.get(role), record.get(role)
    if was and now and was["sha256"] == now["sha256"]:
      continue
    if not (was and now):
      raise ValueError(
        f"{path} records {' and '.join(sorted(recorded)) or 'no frozen part'}"
        f" but this run loads {' and '.join(sorted(record)) or 'none'}: "
        "run it with the config it started with, or use a new --workdir"
      )
    raise ValueError(
      f"the {role} changed since this run started: {workdir} trained with "
      f"{was['checkpoint']} (sha256 {was['sha256'][:12]}), "
      f"{now['workdir']} now holds {now['checkpoint']} (sha256 "
      f"{now['sha256'][:12]}). Restore the {role}'s checkpoint of step "
      f"{was['step']} in {was['workdir']}, or start the run in a new "
      "--workdir"
    )
