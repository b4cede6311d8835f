"""Orbax checkpoints of a run: the latest state (for resuming) and the best
state by a validation metric (for evaluation and as a teacher).

`<workdir>/checkpoints/<step>` holds the latest, `<workdir>/best/<step>` the
best. Orbax writes each checkpoint to a temporary folder and renames it when
complete, so a run killed mid-save never sees a partial checkpoint as valid.
"""

from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp

LATEST = "checkpoints"
BEST = "best"


def _manager(workdir: str, which: str, best_metric: str | None = None,
             create: bool = True) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(
      max_to_keep=1, create=create, enable_async_checkpointing=False,
      best_fn=(lambda m: m[best_metric]) if best_metric else None,
      best_mode="max")
  return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, which)),
                               options=options)


class RunCheckpoints:
  """The latest and the best checkpoint of one workdir."""

  def __init__(self, workdir: str, best_metric: str):
    self.latest = _manager(workdir, LATEST)
    self.best = _manager(workdir, BEST, best_metric)

  def latest_step(self) -> int | None:
    return self.latest.latest_step()

  def best_step(self) -> int | None:
    """Step of the best checkpoint so far (None before the first)."""
    return self.best.best_step()

  def save(self, step: int, state: dict, metrics: dict | None = None) -> None:
    """Saves the latest state; with validation `metrics`, also offers it as
    the best (kept only if its metric beats the best so far)."""
    self.latest.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state)), force=True)
    if metrics is not None:
      self.best.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state)), metrics=metrics, force=True)

  def restore_latest(self, target: dict) -> dict:
    step = self.latest.latest_step()
    try:
      restored = self.latest.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(target)))
    except Exception as e:  # orbax/tensorstore raise many kinds
      raise ValueError(
          f"checkpoint {self.latest.directory / str(step)} cannot be restored"
          f" into this run ({type(e).__name__}: {str(e)[:200]}): it is "
          "truncated, or from a run with another model or dataset. It was "
          "left as it is; use a new --workdir") from None
    return restored["state"]

  def close(self) -> None:
    self.latest.close()
    self.best.close()


def restore_state(workdir: str, which: str = BEST, target: dict | None = None
                  ) -> tuple[int, dict]:
  """(step, state) of a finished or running workdir's best/latest checkpoint.

  Without `target` the arrays come back as saved (host arrays), which is what
  loading a teacher or an adapter from another run needs.
  """
  path = os.path.join(workdir, which)
  if not os.path.isdir(path):
    raise FileNotFoundError(
        f"no {which!r} checkpoints in {workdir}: train that run first "
        f"(python -m exo2ego_jax.train --workdir {workdir} ...)")
  manager = _manager(workdir, which, create=False)
  step = manager.best_step() if which == BEST else manager.latest_step()
  if step is None:
    step = manager.latest_step()
  if step is None:
    raise FileNotFoundError(f"{path} holds no complete checkpoint: train "
                            "that run (again) first")
  restore = (ocp.args.StandardRestore(target) if target is not None
             else ocp.args.StandardRestore())
  try:
    state = manager.restore(step, args=ocp.args.Composite(state=restore))
  except Exception as e:  # orbax/tensorstore raise many kinds
    raise ValueError(
        f"checkpoint {os.path.join(path, str(step))} is unreadable (truncated "
        f"or corrupt: {type(e).__name__}: {str(e)[:200]}). It was left as it "
        "is: restore it from a copy, or retrain that run") from None
  finally:
    manager.close()
  return step, state["state"]


def abstract_like(tree):
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)
