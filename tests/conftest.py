"""Shared fixtures: the tiny synthetic benchmark, built once per session."""

import os
import sys

# The suite compiles hundreds of small programs and runs each briefly:
# LLVM's quickest code generation cuts its time by about a third (set
# before JAX starts its backend; subprocesses inherit it). Speed is measured
# by benchmarks/, with XLA's defaults.
TEST_XLA_FLAGS = "--xla_backend_optimization_level=0"
if TEST_XLA_FLAGS not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " " + TEST_XLA_FLAGS
  ).strip()

import jax  # noqa: E402
import numpy as np
import pytest

from configs import synthetic_exo
from exo2ego_jax.data import datasets
from exo2ego_jax.runtime import cli
from exo2ego_jax.runtime import programs


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The suite's compilation cache (pytest_configure), for its subprocesses too.
JAX_CACHE = os.path.join(ROOT, ".pytest_cache", "jax")


def command_env(**extra) -> dict:
  """Environment of a command the tests start: the checkout importable and
  the suite's compilation cache."""
  return dict(
    os.environ, PYTHONPATH=ROOT, JAX_COMPILATION_CACHE_DIR=JAX_CACHE, **extra
  )


def tiny_train_command(data_dir: str, workdir: str, **flags) -> list[str]:
  """`python -m exo2ego_jax.train` of the exo config on synthetic_sync/tiny,
  sized as tiny_config (64-frame windows, batch 4), without the progress
  line; each keyword is one more `--config.<key>=<value>`."""
  command = [
    sys.executable,
    "-m",
    "exo2ego_jax.train",
    "--config",
    os.path.join(ROOT, "configs", "synthetic_exo.py"),
    "--workdir",
    workdir,
    "--config.dataset.name=synthetic_sync/tiny",
    f"--config.dataset.data_dir={data_dir}",
    "--config.data.max_frames=64",
    "--config.data.batch_size=4",
    "--config.data.eval_batch_size=4",
    "--config.progress=False",
  ]
  return command + [f"--config.{key}={value}" for key, value in flags.items()]


def pytest_configure(config):
  """Compiled steps are cached on disk: the many small runs of the suite
  compile the same C2F-TCN programs again and again otherwise."""
  cli.enable_compilation_cache(JAX_CACHE, 1 << 30)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


# The slowest files (CI's --durations), run first: with `-n 2 --dist
# loadfile` each file runs whole on one worker, and starting the long ones
# first keeps one worker from running a long file alone at the end.
SLOW_FILES = (
  "test_sharding.py",
  "test_members.py",
  "test_benchmarks.py",
  "test_fault_injection.py",
  "test_trainer.py",
  "test_winograd.py",
  "test_methods.py",
  "test_baselines.py",
  "test_reliability.py",
  "test_c2f_tcn.py",
  "test_robustness.py",
)


def pytest_collection_modifyitems(items):
  """Slow files first (order within a file kept; the sort is stable)."""
  rank = {name: k for k, name in enumerate(SLOW_FILES)}
  items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FILES)))


@pytest.fixture(autouse=True)
def fresh_programs():
  """Each test starts (and leaves) without the programs a process's runs
  share (runtime/programs.py), as a new process would: a test's runs
  compile what they use, whatever ran before it on the worker."""
  programs.clear()
  yield
  programs.clear()


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  datasets.open_dataset("synthetic_sync/tiny", data_dir)  # builds it
  return data_dir


@pytest.fixture(scope="session")
def teacher_dir(tmp_path_factory, tiny_data_dir):
  """A trained exo teacher on synthetic_sync/tiny (4 epochs, 8 steps).
  Shared by the whole session: tests must not change it."""
  from exo2ego_jax.training import trainer  # pylint: disable=g-import-not-at-top

  workdir = str(tmp_path_factory.mktemp("teacher"))
  trainer.train_and_evaluate(tiny_config(tiny_data_dir, num_epochs=4), workdir)
  return workdir


@pytest.fixture
def make_config(tiny_data_dir):
  """Factory of configs sized for tests: make_config(mode, **overrides)."""
  return lambda mode="exo_supervised", **overrides: tiny_config(
    tiny_data_dir, mode, **overrides
  )


def tiny_config(data_dir: str, mode: str = "exo_supervised", **overrides):
  """A config of `mode` on synthetic_sync/tiny: 64-step windows, batch 4."""
  config = synthetic_exo.get_config()
  config.mode = mode
  config.dataset.name = "synthetic_sync/tiny"
  config.dataset.data_dir = data_dir
  config.data.max_frames = 64
  config.data.batch_size = 4
  config.data.eval_batch_size = 4
  config.num_epochs = 2
  config.eval_every_epochs = 1
  config.log_every_steps = 1
  config.progress = False
  if mode != "exo_supervised":
    config.data.train_split = "sync_pairs"
    config.data.view = "ego"
    config.data.eval_view = "ego"
  if mode == "ego_oracle":
    config.data.label_key = "ego_labels"
  for key, value in overrides.items():
    section, _, name = key.rpartition(".")
    (config[section] if section else config)[name] = value
  return config


class ListSource:
  """A data source (len and index) over a list of example dicts."""

  def __init__(self, examples):
    self.examples = examples

  def __len__(self):
    return len(self.examples)

  def __getitem__(self, i):
    return self.examples[i]


class EditedSource:
  """A data source whose examples pass through `edit(index, example)`."""

  def __init__(self, source, edit):
    self.source, self.edit = source, edit

  def __len__(self):
    return len(self.source)

  def __getitem__(self, i):
    return self.edit(i, dict(self.source[i]))


def poison(*keys):
  """An edit that replaces the fields `keys` (labels) with garbage."""

  def edit(index, example):
    del index
    for key in keys:
      example[key] = np.full_like(example[key], 10**6)
    return example

  return edit


def edit_splits(monkeypatch, **edits):
  """Makes datasets.open_dataset pass each example of split `name` through
  `edits[name]` (see EditedSource), for the rest of the test."""
  open_dataset = datasets.open_dataset

  def edited_open(*args, **kwargs):
    info, sources = open_dataset(*args, **kwargs)
    return info, dict(
      sources,
      **{
        split: EditedSource(sources[split], edit)
        for split, edit in edits.items()
      },
    )

  monkeypatch.setattr(datasets, "open_dataset", edited_open)
