"""The training-loop skeleton (training/loop.py) on a counter "model": when
it flushes logs, what it checkpoints, and how a SIGTERM or an early stop
ends it. Real checkpoints and a real signal; no JAX program."""

import os
import signal

import jax.numpy as jnp
from exo2ego_jax.runtime import checkpoints
from exo2ego_jax.runtime import workdir as workdir_lib
from exo2ego_jax.training import loop


def _run(workdir, end_step=7, sigterm_at=None, stop_at=None, **options):
  """Runs the loop on state {"step", "total"}; returns (outcome, flushes,
  steps trained, whether the preemption flag was released)."""
  flushes, trained = [], []

  def train_step(state, step):
    trained.append(step)
    if step == sigterm_at:
      os.kill(os.getpid(), signal.SIGTERM)
    return ({"step": state["step"] + 1, "total": state["total"] + step}, step)

  ckpt = checkpoints.RunCheckpoints(str(workdir), "score")
  with workdir_lib.PreemptionFlag() as preemption:
    if sigterm_at == 0:
      os.kill(os.getpid(), signal.SIGTERM)  # during set-up
    released, give_back = [], preemption.release

    def release():  # the real release, noted
      released.append(True)
      give_back()

    preemption.release = release
    outcome = loop.run(
      {"step": jnp.zeros((), jnp.int32), "total": jnp.zeros((), jnp.int32)},
      start_step=0,
      end_step=end_step,
      train_step=train_step,
      ckpt=ckpt,
      preemption=preemption,
      log_now=lambda step: step % 3 == 0,
      flush=lambda step, entries: flushes.append((step, list(entries))),
      evaluate_now=lambda step: step in (4, end_step),
      evaluate=lambda step, state: {"score": float(-abs(step - 4))},
      stop_after_evaluation=lambda step: step == stop_at,
      **options,
    )
    released_by_loop = bool(released)
  return outcome, flushes, trained, released_by_loop


def _saved(workdir, which):
  return sorted(
    int(n) for n in os.listdir(os.path.join(workdir, which)) if n.isdigit()
  )


def test_logs_are_flushed_at_log_steps_and_before_every_save(tmp_path):
  outcome, flushes, trained, released = _run(tmp_path, checkpoint_every=5)
  assert trained == [1, 2, 3, 4, 5, 6, 7]
  assert flushes == [(3, [1, 2, 3]), (4, [4]), (5, [5]), (6, [6]), (7, [7])]
  assert int(outcome.state["total"]) == 28 and outcome.preempted_at is None
  assert released
  assert _saved(tmp_path, "checkpoints") == [5, 7]  # the latest two
  assert _saved(tmp_path, "best") == [4]  # score 0 beats -3


def test_without_flush_before_save_only_log_steps_flush(tmp_path):
  _, flushes, _, _ = _run(tmp_path, flush_before_save=False)
  assert flushes == [(3, [1, 2, 3]), (6, [4, 5, 6])]


def test_sigterm_saves_the_current_step_and_stops(tmp_path):
  outcome, flushes, trained, released = _run(tmp_path, sigterm_at=2)
  assert trained == [1, 2]
  assert (outcome.preempted_at, outcome.saved) == (2, True)
  assert flushes == [(2, [1, 2])]  # before the save
  assert _saved(tmp_path, "checkpoints") == [2]
  assert not released  # a second Ctrl-C would still be caught
  _, state = checkpoints.restore_state(str(tmp_path), checkpoints.LATEST)
  assert int(state["step"]) == 2 and int(state["total"]) == 3


def test_sigterm_during_setup_trains_nothing(tmp_path):
  outcome, flushes, trained, _ = _run(tmp_path, sigterm_at=0)
  assert (outcome.preempted_at, outcome.saved) == (0, False)
  assert trained == [] and flushes == []
  assert not os.listdir(os.path.join(tmp_path, "checkpoints"))


def test_early_stop_ends_after_the_evaluation_is_saved(tmp_path):
  outcome, _, trained, released = _run(tmp_path, stop_at=4)
  assert trained == [1, 2, 3, 4] and outcome.stopped_early == 4
  assert _saved(tmp_path, "best") == [4] and released


def test_a_finished_run_trains_no_step(tmp_path):
  outcome, flushes, trained, released = _run(tmp_path, end_step=0)
  assert trained == [] and flushes == [] and released
  assert outcome.preempted_at is None
