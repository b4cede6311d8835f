"""What every command-line entry point shares."""

import os

from absl import app
from absl import flags
from absl import logging
import jax

from exo2ego_jax import errors

# Compiled programs are cached across runs (a benchmark compiles the same
# C2F-TCN steps for every seed). JAX_COMPILATION_CACHE_DIR overrides the place.
CACHE_DIR = os.path.join(os.path.expanduser("~"), ".cache", "exo2ego_jax",
                         "xla")

flags.DEFINE_bool("verbose", False, "On a failure, print the traceback above "
                  "the one-line error (see errors.py).")


def run(main) -> None:
  """`app.run(main)` with library chatter (orbax logs each save at INFO) off
  unless the user asks for it with --verbosity / -v, the compilation cache
  on, and every failure ending in one line `error: ...` (see errors.py)."""
  errors.install_handlers()  # Ctrl-C: before anything compiles

  def quiet_main(argv):
    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)
    if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
      jax.config.update("jax_compilation_cache_dir", CACHE_DIR)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    return errors.call(main, argv)

  app.run(quiet_main)
