"""Where a run's time goes: seconds per part (dataset, compilation, training
steps, evaluation, ...), recorded in its results.json and summed by the
study (docs/performance.md).

The parts are disjoint and add up to the wall time: the run marks its
phases (`with profile.part("evaluation"): ...`), and compilation is cut out
of whichever phase it happened in. Compilation is what JAX itself reports
as tracing, lowering to MLIR and backend compilation (persistent cache reads
included), through `jax.monitoring` time spans; nested spans (a jit traced
inside another) count once. Time outside every marked phase is "other".
"""

from __future__ import annotations

import contextlib
import threading
import time


# Parts in the order tables show them; runs may add others.
PARTS = (
  "dataset",  # opening (and on first use building) the dataset
  "pseudo_labels",  # teacher outputs computed before training
  "compile",  # tracing, lowering and compiling (or cache reads)
  "input_wait",  # the step loop waiting on its next batch
  "train_steps",  # dispatching steps, waiting on their logs, writing them
  "evaluation",  # validation while training and of the best checkpoint
  "checkpoints",  # saving and restoring state
  "test_evaluation",  # the study's scoring of the finished run
  "other",  # the rest: config checks, state init, setup
)
COMPILE = "compile"
OTHER = "other"
STEPS = "trained_steps"  # a count a run's profile carries, not seconds

# The JAX events whose time spans are compilation.
COMPILE_EVENTS = (
  "/jax/core/compile/jaxpr_trace_duration",
  "/jax/core/compile/jaxpr_to_mlir_module_duration",
  "/jax/core/compile/backend_compile_duration",
)

_active: list["RunProfile"] = []
_lock = threading.Lock()
_listening = False


def _on_span(event: str, start: float, end: float, **kwargs) -> None:
  del kwargs
  if event in COMPILE_EVENTS:
    with _lock:
      for profile in _active:
        profile._compile_spans.append((start, end))


def _listen() -> None:
  """Registers the JAX listener once per process (it cannot be removed)."""
  global _listening
  # JAX is imported here, not at the top: `benchmark --help` must answer
  # without loading it (tests/test_cli.py).
  from jax import monitoring  # pylint: disable=g-import-not-at-top

  with _lock:
    if not _listening:
      monitoring.register_event_time_span_listener(_on_span)
      _listening = True


def _union(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
  merged: list[list[float]] = []
  for start, end in sorted(spans):
    if merged and start <= merged[-1][1]:
      merged[-1][1] = max(merged[-1][1], end)
    else:
      merged.append([start, end])
  return [(s, e) for s, e in merged]


def _overlap(spans: list[tuple[float, float]], start: float, end: float):
  return sum(max(0.0, min(e, end) - max(s, start)) for s, e in spans)


class RunProfile:
  """Times the phases of one run; `seconds()` is the profile.

  Phases may nest: the inner one's time is its own, not the outer one's.
  """

  def __init__(self):
    _listen()
    self._compile_spans: list[tuple[float, float]] = []
    self._intervals: list[tuple[str, float, float]] = []
    self._current = OTHER
    self._since = self._start = time.time()
    self._end = None
    with _lock:
      _active.append(self)

  def _switch(self, part: str) -> str:
    now = time.time()
    if now > self._since:
      self._intervals.append((self._current, self._since, now))
    previous, self._current, self._since = self._current, part, now
    return previous

  @contextlib.contextmanager
  def part(self, name: str):
    """Counts the time inside the block as `name` (less compilation)."""
    previous = self._switch(name)
    try:
      yield
    finally:
      self._switch(previous)

  def timed(self, name: str, fn=None):
    """`fn`, its calls counted as `name` (without `fn`: a decorator)."""
    if fn is None:
      return lambda f: self.timed(name, f)

    def call(*args, **kwargs):
      with self.part(name):
        return fn(*args, **kwargs)

    return call

  def close(self) -> None:
    """Stops the clock (a closed profile keeps its figures)."""
    if self._end is None:
      self._switch(OTHER)
      self._end = self._since
      with _lock:
        if self in _active:
          _active.remove(self)

  def seconds(self) -> dict:
    """{part: seconds} of every part that took time, "compile" and "other"
    included, and "wall": their sum, the time since the profile began."""
    end = self._end if self._end is not None else time.time()
    with _lock:
      compiling = _union(
        [
          (max(s, self._start), min(e, end))
          for s, e in self._compile_spans
          if e > self._start and s < end
        ]
      )
    intervals = list(self._intervals)
    if self._end is None and end > self._since:
      intervals.append((self._current, self._since, end))
    totals = {COMPILE: sum(e - s for s, e in compiling)}
    for name, start, stop in intervals:
      own = (stop - start) - _overlap(compiling, start, stop)
      totals[name] = totals.get(name, 0.0) + max(0.0, own)
    totals.setdefault(OTHER, 0.0)
    result = {k: round(v, 3) for k, v in totals.items()}
    result["wall"] = round(end - self._start, 3)
    return result


def add(*profiles: dict) -> dict:
  """Part-wise sum of profiles ({part: seconds} dicts, "wall" and
  "trained_steps" included)."""
  total: dict = {}
  for profile in profiles:
    for name, value in profile.items():
      if name == STEPS:
        total[name] = total.get(name, 0) + int(value)
      elif isinstance(value, (int, float)) and not isinstance(value, bool):
        total[name] = round(total.get(name, 0.0) + value, 3)
  return total


def columns(profiles) -> list[str]:
  """The parts any of `profiles` has, in PARTS order, then "wall" (and
  "trained_steps" where any has it)."""
  seen = {k for p in profiles for k in p if k not in ("wall", STEPS)}
  known = [k for k in PARTS if k in seen]
  steps = [STEPS] if any(STEPS in p for p in profiles) else []
  return known + sorted(seen - set(PARTS)) + ["wall"] + steps


def markdown_table(rows: dict) -> str:
  """{row name: profile} as a Markdown table of seconds."""
  names = columns(rows.values())
  lines = [
    "| run | " + " | ".join(names) + " |",
    "|---" * (len(names) + 1) + "|",
  ]
  for row, profile in rows.items():
    cells = [
      str(profile.get(k, 0)) if k == STEPS else f"{profile.get(k, 0.0):.1f}"
      for k in names
    ]
    lines.append(f"| {row} | " + " | ".join(cells) + " |")
  return "\n".join(lines)
