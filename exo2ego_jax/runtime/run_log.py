"""What a run tells its user while it trains: progress with steps/s and ETA
on stderr, and every logged scalar in TensorBoard event files.

Event files go into the workdir itself, so `tensorboard --logdir <workdir>`
shows one run and `tensorboard --logdir <study workdir>` every run of a
benchmark (named `<method>/seed<k>`). They are written with TensorBoard's own
TensorFlow-free event writer; `metrics.jsonl` stays the record of the run.

Progress: a tqdm bar when stderr is a terminal, otherwise (logs, batch jobs)
one line every PROGRESS_LINE_SECONDS; `config.progress = False` turns both
off. Messages go to the `exo2ego_jax` logger (see `cli.setup_logging`).
"""

from __future__ import annotations

import logging
import sys
import time

import tqdm

log = logging.getLogger(__name__)

# Without a terminal, a progress line this often (seconds).
PROGRESS_LINE_SECONDS = 60.0


def duration(seconds: float) -> str:
  """Seconds as `1h02m`, `3m05s` or `42s`."""
  seconds = int(round(seconds))
  if seconds >= 3600:
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
  if seconds >= 60:
    return f"{seconds // 60}m{seconds % 60:02d}s"
  return f"{seconds}s"


class EventWriter:
  """Scalars as TensorBoard events in `logdir` (process 0 only)."""

  def __init__(self, logdir: str, start_step: int = 0):
    # pylint: disable=g-import-not-at-top
    # Imported here: only runs that write events need TensorBoard.
    from tensorboard.compat.proto import event_pb2
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.summary.writer import event_file_writer

    # pylint: enable=g-import-not-at-top
    self._event_pb2, self._summary_pb2 = event_pb2, summary_pb2
    self._writer = event_file_writer.EventFileWriter(logdir)
    if start_step:
      # A resumed run repeats the steps after its last checkpoint: a restart
      # event at the first new step makes TensorBoard drop the older events
      # from that step on.
      self._writer.add_event(
        event_pb2.Event(
          wall_time=time.time(),
          step=start_step + 1,
          session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START),
        )
      )

  def scalars(self, step: int, values: dict) -> None:
    """Writes {tag: number}; None values are left out."""
    summary = self._summary_pb2.Summary(
      value=[
        self._summary_pb2.Summary.Value(tag=tag, simple_value=float(value))
        for tag, value in values.items()
        if value is not None
      ]
    )
    self._writer.add_event(
      self._event_pb2.Event(
        wall_time=time.time(), step=int(step), summary=summary
      )
    )

  def flush(self) -> None:
    self._writer.flush()

  def close(self) -> None:
    self._writer.close()


class RunReport:
  """Progress, messages and TensorBoard events of one training run.

  Call `compiling()` before the first step, `step(n)` after each,
  `trained(n, means)` at each log, `evaluated(n, split, summary)` at each
  evaluation, and `close()` at the end (or use it as a context manager).
  """

  def __init__(
    self,
    workdir: str,
    name: str,
    total_steps: int,
    start_step: int = 0,
    progress: bool = True,
    write_events: bool = True,
  ):
    self.name, self.total, self.start = name, total_steps, start_step
    self.progress = progress
    # A finished run only re-reports: no new event file for it.
    self._events = (
      EventWriter(workdir, start_step)
      if write_events and start_step < total_steps
      else None
    )
    self._bar = None
    if progress and sys.stderr.isatty():
      self._bar = tqdm.tqdm(
        total=total_steps,
        initial=start_step,
        desc=name,
        dynamic_ncols=True,
        file=sys.stderr,
      )
    self._step = start_step
    self._loss = None
    self._timer_step = None  # first step timed (after compilation)
    self._timer_start = 0.0
    self._compile_start = None
    self._last_line = time.time()
    if start_step >= total_steps:
      log.info(
        "%s: finished run (step %d of %d), reporting its results",
        name,
        start_step,
        total_steps,
      )
    elif start_step:
      log.info("%s: resumed at step %d of %d", name, start_step, total_steps)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  def compiling(self, reused: bool = False) -> None:
    """Before the first step: compilation can take minutes (`reused`: an
    earlier run of this process compiled the step already)."""
    if reused:
      self.write(
        f"{self.name}: the training step was compiled by an earlier run "
        "of this process"
      )
      return
    self._compile_start = time.time()
    self.write(f"{self.name}: compiling the training step...")

  def step(self, step: int) -> None:
    """After step `step` was dispatched."""
    now = time.time()
    if self._compile_start is not None:
      log.info("%s: compiled in %.1f s", self.name, now - self._compile_start)
      self._compile_start = None
    if self._timer_step is None:  # steps/s from here on, compilation excluded
      self._timer_step, self._timer_start = step, now
    self._step = step
    if self._bar is not None:
      self._bar.update(step - self._bar.n)
    elif self.progress and now - self._last_line >= PROGRESS_LINE_SECONDS:
      self._last_line = now
      log.info("%s", self.status())

  def steps_per_second(self) -> float | None:
    if self._timer_step is None or self._step <= self._timer_step:
      return None
    return (self._step - self._timer_step) / max(
      time.time() - self._timer_start, 1e-9
    )

  def status(self) -> str:
    """`name: step n of N (p%), x steps/s, ETA t, loss l`."""
    parts = [
      f"{self.name}: step {self._step} of {self.total} "
      f"({100 * self._step / max(self.total, 1):.0f}%)"
    ]
    rate = self.steps_per_second()
    if rate:
      parts.append(
        f"{rate:.2f} steps/s, ETA {duration((self.total - self._step) / rate)}"
      )
    if self._loss is not None:
      parts.append(f"loss {self._loss:.4f}")
    return ", ".join(parts)

  def trained(self, step: int, means: dict) -> float | None:
    """Logs the mean training values since the last log; returns steps/s."""
    rate = self.steps_per_second()
    if means.get("loss") is not None:
      self._loss = means["loss"]
      if self._bar is not None:
        self._bar.set_postfix(loss=f"{self._loss:.4f}")
    if self._events is not None:
      values = {
        f"train/{k}": v for k, v in means.items() if isinstance(v, (int, float))
      }
      values["train/steps_per_second"] = rate
      self._events.scalars(step, values)
    return rate

  def evaluated(
    self,
    step: int,
    split: str,
    view: str,
    summary: dict,
    keys=("f1@10", "f1@25", "f1@50", "edit", "mof"),
  ) -> None:
    """Logs an evaluation: a line, and its metrics under `<split>/`."""
    self.write(
      f"{self.name}: step {step}: {split}/{view} "
      + " ".join(f"{k}={summary[k]:.2f}" for k in keys)
    )
    if self._events is not None:
      self._events.scalars(step, {f"{split}/{k}": summary[k] for k in keys})
      self._events.flush()

  def write(self, message: str) -> None:
    """An INFO line that does not tear the progress bar."""
    if self._bar is not None and log.isEnabledFor(logging.INFO):
      self._bar.clear()
      log.info("%s", message)
      self._bar.refresh()
    else:
      log.info("%s", message)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
      self._bar = None
    if self._events is not None:
      self._events.close()
      self._events = None
