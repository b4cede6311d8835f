r"""Runs a whole comparison study and prints the table.

  python -m exo2ego_jax.benchmark --config configs/synthetic_benchmark.py \
      [--workdir DIR] [--config.<field>=<value> ...]

For every seed and method it trains (or resumes, or reuses) a run under
`<workdir>/<method>/seed<k>` (--workdir, or the config's `workdir`; the old
`--config.workdir=DIR` still works), the teacher first, then scores every run
on the test split's ego view. Writes `results.json`, `results.md` (mean and
std over seeds of F1@10/25/50, Edit, MoF, and the share of the exo-only ->
ego-oracle gap each method closes) and `segmentation.png` (ground truth and
each method's prediction of one test recording as coloured bars) into
`config.results_dir` (default `config.workdir`; a results_dir inside the
config's workdir moves with --workdir), and prints the Markdown
table. A line per run says which run of how many it is, the time spent and
the study's ETA from the runs so far; `tensorboard --logdir <workdir>` shows
every run's training loss and validation metrics.

A config with a `sweep` (configs/synthetic_ablation_*.py) adds one row per
value of one config key of one method, e.g. data.train_fraction of a
distillation, and plots the score against the value (`sweep.png`) with the
`sweep.references` rows (exo-only, ego-oracle) as horizontal lines. Sweep
points that leave a method's config unchanged reuse its ordinary runs.
"""

from absl import flags
from ml_collections import config_flags

from exo2ego_jax.runtime import cli
from exo2ego_jax.training import study

_CONFIG = config_flags.DEFINE_config_file(
  "config", None, "Benchmark config file."
)
_WORKDIR = flags.DEFINE_string(
  "workdir",
  None,
  "Directory of the study (default: the config's "
  "`workdir`; --config.workdir=DIR is the same).",
)


def main(argv):
  del argv
  bench = _CONFIG.value
  if _WORKDIR.value:
    study.move_to_workdir(bench, _WORKDIR.value)
  study.run_benchmark(bench)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  cli.run(main)
