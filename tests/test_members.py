"""Seeds trained as members of one program (training/members.py) against
the same seeds trained as separate runs.

Tolerances (docs/performance.md): XLA compiles the vmapped step into other
kernels than the single one (the member axis is folded into the
convolutions), so results agree to float32 rounding, not bit for bit. The
first step (same initialisation, same batch) gives the same loss to 1e-6.
Later, Adam's first updates are lr * sign(gradient) per entry, so entries
whose exact gradient is zero (e.g. biases before a BatchNorm, gradient =
rounding noise in both programs) move by up to +-lr in either: parameters
then agree to 2 * lr * steps, and losses to a few percent.
"""

import json
import os

import jax
import pytest
import numpy as np

from exo2ego_jax.runtime import checkpoints
from exo2ego_jax.training import members
from exo2ego_jax.training import trainer


def _train_losses(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  return [r["loss"] for r in records if r["split"] == "train"]


def test_three_members_train_as_the_three_separate_seeds(tmp_path, make_config):
  seeds = (0, 1, 2)
  configs = [make_config(seed=s, num_epochs=1) for s in seeds]
  apart = [str(tmp_path / "apart" / f"seed{s}") for s in seeds]
  together = [str(tmp_path / "members" / f"seed{s}") for s in seeds]
  for config, workdir in zip(configs, apart):
    trainer.train_and_evaluate(config, workdir)
  results = members.train_members(configs, together)
  lr, steps = configs[0].optim.learning_rate, 2
  first_losses = set()
  for k, (a, b) in enumerate(zip(apart, together)):
    losses_a, losses_b = _train_losses(a), _train_losses(b)
    assert len(losses_a) == len(losses_b) == steps
    print(k, np.array(losses_b) - np.array(losses_a))
    np.testing.assert_allclose(losses_b[0], losses_a[0], rtol=1e-6)
    np.testing.assert_allclose(losses_b, losses_a, rtol=3e-2)
    first_losses.add(round(losses_a[0], 4))
    _, state_a = checkpoints.restore_state(a, checkpoints.LATEST)
    _, state_b = checkpoints.restore_state(b, checkpoints.LATEST)
    assert int(state_b["step"]) == steps
    for x, y in zip(
      jax.tree.leaves(state_a["params"]), jax.tree.leaves(state_b["params"])
    ):
      np.testing.assert_allclose(y, x, atol=2 * lr * steps, rtol=0)
    with open(os.path.join(b, "results.json")) as f:
      written = json.load(f)
    assert written["members"] == list(seeds) and written["total_steps"] == 2
    assert results[k]["workdir"] == os.path.abspath(b)
    assert sorted(os.listdir(os.path.join(b, "best"))) == sorted(
      os.listdir(os.path.join(a, "best"))
    )
  assert len(first_losses) == 3  # each member its own seed's init and data


def test_train_command_seeds_become_member_runs_with_their_own_teachers(
  make_config,
):
  """`train --seeds=0,2`: each seed's run in <workdir>/seed<k> (a study's
  layout), `{seed}` in teacher/student-init paths replaced per member, all
  else shared; bad seed lists are one-line errors."""
  config = make_config("distill_model", seed=7)
  config.teacher_workdir = "runs/exo/seed{seed}"
  config.student_init_workdir = "runs/start/seed{seed}/x"
  configs, workdirs = members.seed_runs(config, "out", ["0", "2"])
  assert workdirs == [
    os.path.join("out", "seed0"),
    os.path.join("out", "seed2"),
  ]
  assert [c.seed for c in configs] == [0, 2]
  assert [c.teacher_workdir for c in configs] == [
    "runs/exo/seed0",
    "runs/exo/seed2",
  ]
  assert configs[1].student_init_workdir == "runs/start/seed2/x"
  assert config.seed == 7 and config.teacher_workdir == "runs/exo/seed{seed}"
  members.check_alike(configs)  # one program
  # A path without {seed}: every member distills from the same teacher.
  config.teacher_workdir = "runs/exo/seed0"
  shared, _ = members.seed_runs(config, "out", [0, 1])
  assert {c.teacher_workdir for c in shared} == {"runs/exo/seed0"}
  for bad, says in ((["0", "x"], "must be integers"), (["1", "1"], "distinct")):
    with pytest.raises(ValueError, match=says):
      members.seed_runs(config, "out", bad)
