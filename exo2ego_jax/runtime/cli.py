"""What every command-line entry point shares: one logging set-up, a
`--help` that exits 0 and lists the fields of the config file given, and
one-line errors for mistakes in the command line.

Command modules import JAX, TFDS and the like inside `main` (or lazily), so
`--help` answers without loading them.
"""

import difflib
import glob
import logging
import os
import sys

from absl import app
from absl import flags
from absl import logging as absl_logging

from exo2ego_jax.runtime import errors

# Compiled programs are cached across runs (a benchmark compiles the same
# C2F-TCN steps for every seed). JAX_COMPILATION_CACHE_DIR overrides the place.
CACHE_DIR = os.path.join(
  os.path.expanduser("~"), ".cache", "exo2ego_jax", "xla"
)
# Beyond this size the least recently used programs are deleted (JAX's own
# eviction): unbounded, months of studies fill a disk.
# JAX_COMPILATION_CACHE_MAX_SIZE (bytes; -1: no limit) overrides it.
CACHE_MAX_BYTES = 2 << 30


def enable_compilation_cache(directory: str, max_bytes: int) -> None:
  """JAX's persistent compilation cache in `directory`, at most `max_bytes`
  (-1: no bound). JAX's bound reads each entry's last use from a
  `<key>-atime` file, which entries written without a bound (caches of
  earlier versions) lack, and then fails every later write with a warning:
  those entries get one, from their modification time."""
  import jax  # pylint: disable=g-import-not-at-top

  if max_bytes != -1 and os.path.isdir(directory):
    for name in os.listdir(directory):
      if not name.endswith("-cache"):
        continue
      atime = os.path.join(directory, name.removesuffix("-cache") + "-atime")
      if not os.path.exists(atime):
        try:
          stamp = os.stat(os.path.join(directory, name)).st_mtime_ns
          with open(atime, "wb") as f:
            f.write(stamp.to_bytes(8, "little"))
        except OSError:  # another process evicted it meanwhile
          pass
  jax.config.update("jax_compilation_cache_dir", directory)
  jax.config.update("jax_compilation_cache_max_size", max_bytes)


flags.DEFINE_bool(
  "verbose",
  False,
  "On a failure, print the traceback above the one-line error (see errors.py).",
)

HELP_FLAGS = ("--help", "-help", "-h", "-?", "--helpshort", "--helpfull")
# The flag that names a config file, in the commands that have one.
CONFIG_FLAG = "config"


class _Format(logging.Formatter):
  """Plain lines; warnings and errors say so."""

  def format(self, record):
    message = super().format(record)
    if record.levelno >= logging.WARNING:
      return f"{record.levelname.lower()}: {message}"
    return message


def setup_logging(verbose: bool = False) -> None:
  """The one logging path of the commands: the project's loggers
  (`exo2ego_jax.*`, used by the dataset builders too) print plain lines to
  stderr; what libraries log through absl (orbax's every save, tfds) shows
  from WARNING up, all of it when `verbose` (--verbosity / -v given)."""
  logger = logging.getLogger("exo2ego_jax")
  if not any(getattr(h, "_exo2ego", False) for h in logger.handlers):
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Format())
    handler._exo2ego = True  # pylint: disable=protected-access
    logger.addHandler(handler)
  logger.setLevel(logging.DEBUG if verbose else logging.INFO)
  logger.propagate = False  # not again in absl's format
  if not verbose:
    absl_logging.set_verbosity(absl_logging.WARNING)


def _flag_value(argv, name: str) -> str | None:
  """The value of `--name=X` or `--name X` in argv (the last one)."""
  value = None
  for i, arg in enumerate(argv):
    if arg.startswith(f"--{name}="):
      value = arg.split("=", 1)[1]
    elif arg == f"--{name}" and i + 1 < len(argv):
      value = argv[i + 1]
  return value


def _config_overrides(argv) -> list[str]:
  """Dotted names of the `--config.<name>` overrides in argv."""
  prefix = f"--{CONFIG_FLAG}."
  return [
    arg[len(prefix) :].split("=", 1)[0]
    for arg in argv
    if arg.startswith(prefix)
  ]


def _missing_config_message(path: str) -> str:
  here = os.path.dirname(path)
  names = [os.path.basename(p) for p in glob.glob(os.path.join(here, "*.py"))]
  near = difflib.get_close_matches(
    os.path.basename(path), names, n=1, cutoff=0.6
  )
  hint = (
    f"did you mean {os.path.join(here, near[0])}? "
    if near
    else "run the command from the repository root (where configs/ is) or "
  )
  return (
    f"--{CONFIG_FLAG} {path}: no such config file; {hint}"
    "give the path of a configs/*.py file"
  )


def _config_file(argv) -> str | None:
  """The config file named in argv, if the command has a config flag."""
  if CONFIG_FLAG not in flags.FLAGS:
    return None
  value = _flag_value(argv, CONFIG_FLAG)
  return value.split(":", 1)[0] if value else None


def print_help(argv) -> None:
  """The command's docstring and flags; with --config, its fields."""
  # pylint: disable=g-import-not-at-top
  from exo2ego_jax.runtime import config_help

  main_module = sys.modules["__main__"]
  print((main_module.__doc__ or "").strip() + "\n")
  if "--helpfull" in argv:
    print(flags.FLAGS.get_help())
    return
  print(flags.FLAGS.main_module_help())
  path = _config_file(argv)
  if path and os.path.exists(path):
    print("\n" + config_help.describe(path))
  elif path:
    print(f"\n{_missing_config_message(path)}")
  elif CONFIG_FLAG in flags.FLAGS:
    print(
      f"\nAdd --{CONFIG_FLAG} configs/<file>.py to --help to list the "
      "fields of that config,\nwith their values and meanings."
    )
  print("\n--helpfull lists the flags of every library too.")


def _parse_flags(argv):
  """absl's flag parsing, with every mistake reported in one line."""
  # pylint: disable=g-import-not-at-top
  from exo2ego_jax.runtime import config_help

  path = _config_file(argv)
  if path is not None and not os.path.exists(path):
    sys.exit(f"error: {_missing_config_message(path)}")
  if path is not None:
    unknown = config_help.unknown_field(path, _config_overrides(argv))
    if unknown:
      sys.exit(f"error: {unknown}")
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    sys.exit(f"error: {e} (--help lists the flags)")
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    # A config override that does not parse, e.g. a value of the wrong type.
    last = str(e).strip().splitlines()[-1] if str(e).strip() else repr(e)
    sys.exit(f"error: {' '.join(argv[1:])}: {last}")


def run(main) -> None:
  """`app.run(main)` with: --help (exit 0, fast, the config's fields),
  one logging set-up (library chatter off unless --verbosity / -v), the
  compilation cache, Ctrl-C handled like SIGTERM, and every failure ending
  in one line `error: ...` (the command line's here, the rest in errors.py;
  --verbose adds the traceback)."""
  errors.install_handlers()  # Ctrl-C: before anything compiles
  argv = sys.argv
  if any(arg in HELP_FLAGS for arg in argv[1:]):
    try:
      print_help(argv)
      sys.stdout.flush()
    except BrokenPipeError:  # `--help | head`: not an error
      os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(0)

  def quiet_main(argv):
    import jax  # pylint: disable=g-import-not-at-top

    setup_logging(
      verbose=flags.FLAGS["verbosity"].present or flags.FLAGS.verbose
    )
    enable_compilation_cache(
      os.environ.get("JAX_COMPILATION_CACHE_DIR") or CACHE_DIR,
      int(os.environ.get("JAX_COMPILATION_CACHE_MAX_SIZE") or CACHE_MAX_BYTES),
    )
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    return errors.call(main, argv)

  app.run(quiet_main, flags_parser=_parse_flags)
