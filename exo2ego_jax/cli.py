"""What every command-line entry point shares."""

from absl import app
from absl import flags
from absl import logging


def run(main) -> None:
  """`app.run(main)` with library chatter (orbax logs each save at INFO) off
  unless the user asks for it with --verbosity / -v."""

  def quiet_main(argv):
    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)
    return main(argv)

  app.run(quiet_main)
