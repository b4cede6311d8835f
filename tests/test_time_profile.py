"""The run time profile: disjoint parts that add up to the wall time, with
compilation cut out of the phase it happened in."""

import time

import jax
import jax.numpy as jnp

from exo2ego_jax.runtime import time_profile
from exo2ego_jax.training import study


def test_compilation_is_cut_out_of_its_phase_and_parts_add_up():
  profile = time_profile.RunProfile()
  with profile.part("evaluation"):
    # A function of its own: traced and compiled here, whatever the cache.
    f = jax.jit(lambda x: jnp.tanh(x) * 3.0 + 1.0)
    assert float(f(jnp.ones(()))) > 0
    with profile.part("input_wait"):
      time.sleep(0.05)
  profile.close()
  seconds = profile.seconds()
  assert seconds["compile"] > 0
  assert seconds["input_wait"] >= 0.05
  assert all(v >= 0 for v in seconds.values())
  parts = sum(v for k, v in seconds.items() if k != "wall")
  assert abs(parts - seconds["wall"]) < 0.01
  assert profile.seconds() == seconds  # closed: the clock stopped


def test_profiles_add_and_tabulate():
  a = {"compile": 1.25, "train_steps": 2.0, "wall": 3.5, "trained_steps": 8}
  b = {"compile": 0.5, "test_evaluation": 1.0, "wall": 1.5}
  total = time_profile.add(a, b)
  assert total == {
    "compile": 1.75,
    "train_steps": 2.0,
    "wall": 5.0,
    "trained_steps": 8,
    "test_evaluation": 1.0,
  }
  assert time_profile.markdown_table({"x/seed0": a, "total": total}).split(
    "\n"
  ) == [
    "| run | compile | train_steps | test_evaluation | wall | trained_steps |",
    "|---|---|---|---|---|---|",
    "| x/seed0 | 1.2 | 2.0 | 0.0 | 3.5 | 8 |",
    "| total | 1.8 | 2.0 | 1.0 | 5.0 | 8 |",
  ]


def test_study_counts_reused_runs_and_its_own_time():
  trained = {"compile": 2.0, "other": 0.5, "wall": 2.5, "trained_steps": 4}
  testing = {"test_evaluation": 1.0, "other": 0.25, "wall": 1.25}
  run = study.run_profile({"profile": trained}, testing, 4.0)
  assert run == {
    "compile": 2.0,
    "other": 1.0,  # 0.25 s of the study's own around the calls
    "wall": 4.0,
    "trained_steps": 4,
    "test_evaluation": 1.0,
  }
  # A run from before profiles existed, re-reported: its time is "other".
  old = study.run_profile({"mode": "exo_supervised"}, testing, 2.0)
  assert old == {
    "trained_steps": 0,
    "test_evaluation": 1.0,
    "other": 1.0,
    "wall": 2.0,
  }
  total = study.study_profile({"a": run, "b": old}, 7.0)["total"]
  assert total["wall"] == 7.0 and total["other"] == 3.0
  assert total["trained_steps"] == 4
