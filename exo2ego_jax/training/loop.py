"""The training-loop skeleton of every run (training/trainer.py and
backbone distillation): steps, per-step logs flushed with the caller's
non-finite check, checkpoints at evaluations and every N steps, and
preemption (SIGTERM or Ctrl-C: save the current step and stop).

The caller restores or initialises its state (runtime/checkpoints.py) and
supplies what differs: its compiled step and batches, how a window of step
logs is checked and written, and its evaluation (which metric the best
checkpoint keeps, early stopping). What a kill, a preemption or a non-finite
loss leaves behind is docs/failure_behaviour.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from exo2ego_jax.runtime import checkpoints
from exo2ego_jax.runtime import distributed


@dataclasses.dataclass
class Outcome:
  """How the loop ended: the last state, and (when preempted) the step it
  stopped at and whether that step was saved; `stopped_early`: the step of
  an early stop (the caller's `stop_after_evaluation` said so)."""

  state: Any
  preempted_at: int | None = None
  saved: bool = False
  stopped_early: int | None = None


def run(
  state,
  *,
  start_step: int,
  end_step: int,
  train_step: Callable[[Any, int], tuple[Any, Any]],
  ckpt: checkpoints.RunCheckpoints,
  preemption,
  log_now: Callable[[int], bool],
  flush: Callable[[int, list], None],
  evaluate_now: Callable[[int], bool],
  evaluate: Callable[[int, Any], dict],
  checkpoint_every: int = 0,
  flush_before_save: bool = True,
  stop_after_evaluation: Callable[[int], bool] | None = None,
) -> Outcome:
  """Trains steps start_step+1..end_step; returns how it ended.

  `train_step(state, step)` -> (state, log entry): one compiled step on
  the step's batch. Entries pile up until `flush(step, entries)` (at
  `log_now` steps, and, with `flush_before_save`, before every save, so
  that no state that went non-finite is ever checkpointed) checks and
  writes them. At `evaluate_now` steps `evaluate(step, state)` gives the
  metrics the checkpoint is offered to best/ with. `ckpt` is closed at the
  end; a loop that ends without preemption releases `preemption` (Ctrl-C
  then stops at once).
  """

  def steps(state) -> Outcome:
    if start_step < end_step and distributed.any_process(
      preemption.requested
    ):  # during setup: nothing new to save
      return Outcome(state, preempted_at=start_step, saved=False)
    pending = []  # log entries since the last flush
    for step in range(start_step + 1, end_step + 1):
      checkpoints.fault_point("train_step")
      state, entry = train_step(state, step)
      pending.append(entry)
      evaluating = evaluate_now(step)
      preempted = distributed.any_process(preemption.requested)
      save_now = (
        evaluating
        or preempted
        or bool(checkpoint_every and step % checkpoint_every == 0)
      )
      if log_now(step) or (flush_before_save and save_now):
        flush(step, pending)  # never checkpoint a state that went non-finite
        pending = []
      if evaluating:
        ckpt.save(step, state, evaluate(step, state))
        if stop_after_evaluation and stop_after_evaluation(step):
          return Outcome(state, stopped_early=step)
      elif save_now:
        ckpt.save(step, state)
      if preempted:  # the last step too: results are left to the re-run
        return Outcome(state, preempted_at=step, saved=True)
    return Outcome(state)

  try:
    outcome = steps(state)
  finally:
    ckpt.close()
  if outcome.preempted_at is None:
    preemption.release()  # all is saved: Ctrl-C now stops at once
  return outcome
