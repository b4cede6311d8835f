"""How a command ends when something fails or is stopped.

Every failure ends with one line `error: ...` (the last line of output) that
names the file and what to do; `--verbose` (defined in cli.py) prints the
traceback above it, and a failure that is not a known mistake also leaves it
in `<workdir>/error.log`. Ctrl-C exits 130: during training it saves the state
first (see workdir.PreemptionFlag), elsewhere it stops at once.
"""

from __future__ import annotations

import datetime
import errno
import os
import signal
import sys
import traceback

from absl import app
from absl import flags

from exo2ego_jax.runtime import workdir

INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT, what shells report for Ctrl-C
LOG_NAME = "error.log"


class DiskFullError(OSError):
  """No space left while writing; the message names where and how much."""

  def __init__(self, message: str):
    super().__init__(errno.ENOSPC, message)

  def __str__(self):
    return self.strerror


def _chain(e: BaseException):
  """`e`, its cause or context, theirs, and so on."""
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    yield e
    e = e.__cause__ or e.__context__


def is_disk_full(e: BaseException) -> bool:
  """Whether ENOSPC is anywhere in `e`'s chain (orbax and asyncio wrap it,
  sometimes only as text)."""
  for x in _chain(e):
    if (
      isinstance(x, OSError)
      and x.errno == errno.ENOSPC
      or "No space left on device" in str(x)
    ):
      return True
    if any(is_disk_full(y) for y in getattr(x, "exceptions", None) or ()):
      return True  # an ExceptionGroup
  return False


def megabytes(n: int) -> str:
  return f"{n / 2**20:.1f} MB"


def one_line(e: BaseException) -> tuple[str, bool]:
  """(the message after `error: `, whether it is a mistake a person can fix
  from the message alone)."""
  if isinstance(e, DiskFullError):
    return str(e), True
  if is_disk_full(e):
    where = next(
      (x.filename for x in _chain(e) if isinstance(x, OSError) and x.filename),
      None,
    )
    return (
      f"disk full{f' writing {where}' if where else ''}: free some "
      "space, then run the same command again"
    ), True
  known = (
    ValueError,
    FileNotFoundError,
    FloatingPointError,
    workdir.WorkdirInUseError,
  )
  text = " ".join(str(e).split()) or type(e).__name__
  return text, isinstance(e, known)


def _write_log(e: BaseException) -> str | None:
  """Appends the traceback to <--workdir>/error.log; returns its path."""
  workdir = flags.FLAGS["workdir"].value if "workdir" in flags.FLAGS else None
  if not workdir or not os.path.isdir(workdir):
    return None
  path = os.path.join(workdir, LOG_NAME)
  try:
    with open(path, "a") as f:
      f.write(
        f"----- {datetime.datetime.now().isoformat()} {' '.join(sys.argv)}\n"
      )
      traceback.print_exception(e, file=f)
  except OSError:
    return None
  return path


def _interrupt_now(signum, frame) -> None:
  """Ctrl-C outside training: nothing to save, stop at once. Exiting here
  (not raising KeyboardInterrupt) never unwinds through compiled code."""
  del signum, frame
  sys.stdout.flush()
  sys.stderr.write("\nerror: interrupted (Ctrl-C)\n")
  sys.stderr.flush()
  os._exit(INTERRUPTED_EXIT_CODE)  # pylint: disable=protected-access


def _quiet_unraisable(unraisable) -> None:
  """Drops the errors of library callbacks that fire after the event loop
  they report to was closed (orbax's writes still in flight after a failed
  save: hundreds of identical tracebacks after the real error)."""
  if (
    unraisable.exc_type is RuntimeError
    and str(unraisable.exc_value) == "Event loop is closed"
  ):
    return
  sys.__unraisablehook__(unraisable)


def install_handlers() -> None:
  """Ctrl-C and library-noise handling of a command (see cli.run)."""
  signal.signal(signal.SIGINT, _interrupt_now)
  sys.unraisablehook = _quiet_unraisable


def call(main, argv):
  """Runs `main(argv)`; turns any failure into one last line `error: ...`
  and exit status 1."""
  try:
    return main(argv)
  except (SystemExit, app.UsageError):
    raise
  except KeyboardInterrupt:
    sys.stdout.flush()
    sys.stderr.write("error: interrupted (Ctrl-C)\n")
    sys.exit(INTERRUPTED_EXIT_CODE)
  except Exception as e:  # pylint: disable=broad-except
    verbose = (
      flags.FLAGS["verbosity"].present
      or "verbose" in flags.FLAGS
      and flags.FLAGS["verbose"].value
    )
    message, known = one_line(e)
    if verbose:
      traceback.print_exc()
    elif not known:
      log = _write_log(e)
      where = f"the traceback is in {log}" if log else "--verbose prints it"
      message = (
        f"{type(e).__name__}: {message} (an unexpected failure; "
        f"{where}; please report it)"
      )
    sys.stdout.flush()
    sys.exit(f"error: {message}")


def end_of_stopped_run(results: dict) -> None:
  """Ends a command whose run stopped on a signal (its state saved): prints
  how to resume and exits, with 130 for Ctrl-C and 0 for SIGTERM (a
  scheduler's preemption: the job is simply started again)."""
  what = {"SIGINT": "interrupted (Ctrl-C)"}.get(results["signal"], "preempted")
  saved = (
    f"state saved in {results['workdir']}"
    if results.get("saved", True)
    else f"nothing new to save in {results['workdir']}"
  )
  print(
    f"{what} at step {results['step']}; {saved}: run the same command "
    "again to resume",
    flush=True,
  )
  sys.exit(INTERRUPTED_EXIT_CODE if results["signal"] == "SIGINT" else 0)
