"""Every config file loads, and every benchmark config names runnable runs."""

import glob
import os

import pytest

from exo2ego_jax.training import study
from exo2ego_jax.methods import registry

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "*.py")))
# Configs of other commands: python -m exo2ego_jax.distill_backbone.
OTHER = [
  c for c in CONFIGS if c.endswith(("__init__.py", "video_distill_backbone.py"))
]
BENCHMARKS = [
  c
  for c in CONFIGS
  if os.path.basename(c).endswith(
    ("_benchmark.py", "_benchmark_baselines.py", "_benchmark_multiview.py")
  )
  or "_ablation_" in c
]


def _name(path):
  return os.path.basename(path)[:-3]


@pytest.mark.parametrize(
  "path", [c for c in CONFIGS if c not in BENCHMARKS + OTHER], ids=_name
)
def test_training_configs_load_with_a_known_mode(path):
  config = study.load_config_file(path)
  assert config.mode in registry.names()
  assert config.data.train_split and config.seed == 0


@pytest.mark.parametrize("path", BENCHMARKS, ids=_name)
def test_benchmark_configs_name_every_run(path, monkeypatch):
  monkeypatch.chdir(ROOT)  # method configs are paths from the repository root
  bench = study.load_config_file(path)
  workdirs = set()
  for row, method, point in study.study_rows(bench):
    config, workdir = study.method_config(bench, method, 1, point)
    assert config.seed == 1 and config.mode in registry.names()
    if bench.dataset_name:
      assert config.dataset.name == bench.dataset_name
    if registry.get(config.mode).loads_teacher:
      teacher = (bench.get("teachers") or {}).get(method, bench.teacher)
      per_view = isinstance(teacher, (tuple, list))  # a teacher per view
      teachers = tuple(teacher) if per_view else (teacher,)
      assert config.teacher_workdir.endswith(os.path.join(teachers[0], "seed1"))
      if per_view:
        assert [os.path.dirname(w) for w in config.multiview.teachers] == [
          os.path.join(os.path.dirname(os.path.dirname(workdir)), t)
          for t in teachers
        ]
      # Teachers are rows, trained before their students.
      for t in teachers:
        assert t in bench.methods, (t, row)
        if method in bench.methods:
          assert bench.methods.index(t) < bench.methods.index(method), row
    start = (bench.get("student_inits") or {}).get(method)
    if start:  # the row the student starts from, trained before it
      assert config.student_init_workdir.endswith(os.path.join(start, "seed1"))
      assert bench.methods.index(start) < bench.methods.index(method), row
    assert workdir not in workdirs or point is not None, row
    workdirs.add(workdir)
  assert bench.teacher in bench.methods


def test_a_method_without_a_config_file_is_refused_before_training(
  monkeypatch,
):
  # `--config.methods` naming a row the config has no file for used to
  # train the rows before it and then fail with a bare KeyError.
  monkeypatch.chdir(ROOT)
  bench = study.load_config_file("configs/synthetic_benchmark.py")
  bench.methods = ("exo_only", "distill_model", "align_pseudo_label")
  with pytest.raises(ValueError) as err:
    study.study_rows(bench)
  message = str(err.value)
  assert message.startswith("config.methods names 'align_pseudo_label'")
  known = message.split("(known: ")[1].split(")")[0].split(", ")
  assert sorted(known) == sorted(bench.method_configs)
  assert "synthetic_benchmark_baselines.py" in message


def test_assembly101_benchmark_uses_the_reference_schedule(monkeypatch):
  monkeypatch.chdir(ROOT)
  bench = study.load_config_file("configs/assembly101_benchmark.py")
  for method in bench.methods:
    config, _ = study.method_config(bench, method, 0)
    assert config.dataset.name.startswith("assembly101_sync/dinov2")
    assert (config.data.max_frames, config.data.chunk_size) == (600, 4)
    assert config.optim.learning_rate == 1e-5 and config.num_epochs == 100
