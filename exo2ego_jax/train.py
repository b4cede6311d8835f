"""Trains a model: python -m exo2ego_jax.train --config configs/X.py --workdir DIR

Config overrides work as usual, e.g. `--config.num_epochs=3`. Re-running the
same command resumes from the workdir's latest checkpoint; SIGTERM saves the
state and exits 0, Ctrl-C saves it and exits 130.

`--seeds=0,1,2` trains those seeds as members of one compiled program
(training/members.py, docs/performance.md), each seed's run in
`DIR/seed<k>`, the layout a study reuses. `{seed}` in the config's
teacher_workdir, adapter_workdir, student_init_workdir or
multiview.teachers becomes each member's seed, e.g.
`--config.teacher_workdir=workdirs/exo/seed{seed}`. See `exo2ego_jax.training.trainer`
for what a run does and writes, docs/failure_behaviour.md for failures.
"""

import json

from absl import app
from absl import flags
from ml_collections import config_flags

from exo2ego_jax.runtime import cli
from exo2ego_jax.runtime import errors

_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "Experiment config file (configs/*.py).", lock_config=True
)
_WORKDIR = flags.DEFINE_string(
  "workdir", None, "Directory of the run.", required=True
)
_SEEDS = flags.DEFINE_list(
  "seeds",
  None,
  "Train these seeds (e.g. 0,1,2) as members of one compiled program, each "
  "in <workdir>/seed<k>; '{seed}' in teacher/adapter/student-init workdirs "
  "becomes each member's seed.",
)
_ALLOW_CONFIG_CHANGE = flags.DEFINE_bool(
  "allow_config_change",
  False,
  "Continue a run in --workdir even though its config.json differs.",
)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from exo2ego_jax.training import trainer  # pylint: disable=g-import-not-at-top

  if _SEEDS.value is not None:
    train_seeds(_CONFIG.value, _WORKDIR.value, _SEEDS.value)
    return
  results = trainer.train_and_evaluate(
    _CONFIG.value, _WORKDIR.value, _ALLOW_CONFIG_CHANGE.value
  )
  if results.get("preempted"):
    errors.end_of_stopped_run(results)  # exits: 130 for Ctrl-C
  print(json.dumps(results["validation"], indent=2))


def train_seeds(config, workdir: str, seeds) -> None:
  """--seeds: the seeds as members of one program; prints each member's
  validation scores by seed."""
  from exo2ego_jax.training import members  # pylint: disable=g-import-not-at-top

  configs, workdirs = members.seed_runs(config, workdir, seeds)
  results = members.train_members(configs, workdirs, _ALLOW_CONFIG_CHANGE.value)
  if results[0].get("preempted"):
    errors.end_of_stopped_run(results[0])  # exits: 130 for Ctrl-C
  print(
    json.dumps(
      {f"seed{c.seed}": r["validation"] for c, r in zip(configs, results)},
      indent=2,
    )
  )


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  cli.run(main)
