"""Training runs on the tiny synthetic benchmark: resume, teacher
immutability and label blindness of every label-blind method (from the
registry), evaluation outputs."""

import json
import os

import jax
import numpy as np
import pytest

import shutil

from exo2ego_jax.runtime import checkpoints
from exo2ego_jax.runtime import frozen as frozen_lib
from exo2ego_jax.runtime import programs
from exo2ego_jax.data import datasets
from exo2ego_jax.methods import pseudo_labels
from exo2ego_jax.methods import registry
from exo2ego_jax.training import trainer
from conftest import edit_splits
from conftest import poison


def _leaves(tree):
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _assert_trees_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(_leaves(a), _leaves(b)):
    np.testing.assert_array_equal(x, y)


def _train_losses(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  return [r["loss"] for r in records if r["split"] == "train"]


def test_supervised_training_lowers_the_loss(teacher_dir):
  losses = _train_losses(teacher_dir)
  assert len(losses) == 8  # 8 recordings / batch 4 * 4 epochs
  assert np.mean(losses[-2:]) < np.mean(losses[:2])
  with open(os.path.join(teacher_dir, "results.json")) as f:
    results = json.load(f)
  assert results["mode"] == "exo_supervised" and results["total_steps"] == 8
  assert 1 <= results["best_step"] <= 8
  assert 0.0 <= results["validation"]["mof"] <= 100.0
  _check_profile(results["profile"], trained_steps=8)


def _check_profile(profile, trained_steps):
  """Where a run's time went: non-negative parts that add up to its wall
  time; a run that trained has compiled, stepped and evaluated."""
  assert profile["trained_steps"] == trained_steps
  seconds = {k: v for k, v in profile.items() if k != "trained_steps"}
  assert all(v >= 0 for v in seconds.values())
  parts = sum(v for k, v in seconds.items() if k != "wall")
  assert parts <= seconds["wall"] + 0.01
  assert seconds["evaluation"] > 0 and seconds["dataset"] > 0
  if trained_steps:
    assert seconds["train_steps"] > 0 and seconds["compile"] > 0
    assert "input_wait" in seconds and "checkpoints" in seconds


def test_rerunning_a_finished_run_reuses_it(teacher_dir, make_config):
  before = os.path.getmtime(os.path.join(teacher_dir, "metrics.jsonl"))
  with open(os.path.join(teacher_dir, "results.json")) as f:
    trained_profile = json.load(f)["profile"]
  step, state = checkpoints.restore_state(teacher_dir, checkpoints.LATEST)
  again = trainer.train_and_evaluate(make_config(num_epochs=4), teacher_dir)
  assert os.path.getmtime(os.path.join(teacher_dir, "metrics.jsonl")) == before
  # The re-report returns its own profile; results.json keeps the training's.
  _check_profile(again["profile"], trained_steps=0)
  with open(os.path.join(teacher_dir, "results.json")) as f:
    assert json.load(f)["profile"] == trained_profile
  step2, state2 = checkpoints.restore_state(teacher_dir, checkpoints.LATEST)
  assert step == step2 == 8
  _assert_trees_equal(state["params"], state2["params"])


def test_interrupted_run_resumes_to_the_same_parameters(
  tmp_path, make_config, monkeypatch
):
  config = make_config(num_epochs=3)
  straight = str(tmp_path / "straight")
  trainer.train_and_evaluate(config, straight)

  resumed = str(tmp_path / "resumed")
  original_save = checkpoints.RunCheckpoints.save

  def save_then_interrupt(self, step, state, metrics=None):
    original_save(self, step, state, metrics)
    if step == 2:
      raise KeyboardInterrupt  # as Ctrl-C right after the step-2 checkpoint

  monkeypatch.setattr(checkpoints.RunCheckpoints, "save", save_then_interrupt)
  with pytest.raises(KeyboardInterrupt):
    trainer.train_and_evaluate(config, resumed)
  monkeypatch.setattr(checkpoints.RunCheckpoints, "save", original_save)
  assert checkpoints.restore_state(resumed, checkpoints.LATEST)[0] == 2
  trainer.train_and_evaluate(config, resumed)

  _, a = checkpoints.restore_state(straight, checkpoints.LATEST)
  _, b = checkpoints.restore_state(resumed, checkpoints.LATEST)
  assert int(a["step"]) == int(b["step"]) == 6
  _assert_trees_equal(a["params"], b["params"])
  _assert_trees_equal(a["batch_stats"], b["batch_stats"])
  assert _train_losses(straight)[2:] == _train_losses(resumed)[-4:]


@pytest.fixture(scope="module")
def feature_dir(tmp_path_factory, tiny_data_dir, teacher_dir):
  from conftest import tiny_config  # pylint: disable=g-import-not-at-top

  workdir = str(tmp_path_factory.mktemp("distill_feature"))
  trainer.train_and_evaluate(
    tiny_config(
      tiny_data_dir,
      "distill_feature",
      teacher_workdir=teacher_dir,
      **{"adapter.hidden_dim": 16, "adapter.window": 8},
    ),
    workdir,
  )
  return workdir


@pytest.mark.parametrize(
  "mode", registry.names(where=lambda m: not m.reads_labels)
)
def test_label_blind_methods_train_and_never_read_a_label(
  mode, tmp_path, make_config, teacher_dir, feature_dir, monkeypatch
):
  """Every method that declares it reads no label trains, never touches its
  frozen teacher/adapter, and poisoning every label of the training splits
  gives bit-identical training."""
  method = registry.get(mode)
  _, teacher_before = checkpoints.restore_state(teacher_dir)
  files_before = {
    p: os.path.getmtime(os.path.join(r, p))
    for r, _, ps in os.walk(os.path.join(teacher_dir, "best"))
    for p in ps
  }
  config = make_config(
    mode,
    teacher_workdir=teacher_dir,
    adapter_workdir=feature_dir,
    num_epochs=1,
    **{"adapter.hidden_dim": 16, "adapter.window": 8},
  )
  if issubclass(method, pseudo_labels.PseudoLabel):
    config.data.label_key = pseudo_labels.PSEUDO_LABEL_KEY
    config.pseudo_labels.band_fraction = 0.2
  clean = str(tmp_path / "clean")
  results = trainer.train_and_evaluate(config, clean)
  assert results["validation"]["num_videos"] == 6
  _, state = checkpoints.restore_state(clean, checkpoints.LATEST)
  losses = _train_losses(clean)
  assert len(losses) == 2 and all(np.isfinite(losses))
  # Checkpoints hold what trains; frozen.json records what the run loaded.
  assert set(state) == {"step", "params", "batch_stats", "opt_state"}
  record = {}
  if method.loads_teacher or method.loads_adapter:
    with open(os.path.join(clean, frozen_lib.RECORD)) as f:
      record = json.load(f)
  if method.loads_teacher:
    # The frozen teacher the run used is the teacher checkpoint, bit for
    # bit, and the teacher's own checkpoint files were not rewritten.
    teacher_vars = {
      "params": teacher_before["params"],
      "batch_stats": teacher_before["batch_stats"],
    }
    teacher_step = checkpoints.restore_state(teacher_dir)[0]
    assert record["teacher"] == {
      "workdir": os.path.abspath(teacher_dir),
      "step": teacher_step,
      "checkpoint": os.path.join(
        os.path.abspath(teacher_dir), "best", str(teacher_step)
      ),
      "sha256": frozen_lib.content_hash(teacher_vars),
    }
    _, teacher_after = checkpoints.restore_state(teacher_dir)
    _assert_trees_equal(teacher_after["params"], teacher_before["params"])
    assert files_before == {
      p: os.path.getmtime(os.path.join(r, p))
      for r, _, ps in os.walk(os.path.join(teacher_dir, "best"))
      for p in ps
    }
  if method.trains_adapter:
    assert set(state["params"]) == {
      "embed",
      "block0_ln_attn",
      "block0_attn",
      "block0_ln_mlp",
      "block0_mlp_in",
      "block0_mlp_out",
      "block1_ln_attn",
      "block1_attn",
      "block1_ln_mlp",
      "block1_mlp_in",
      "block1_mlp_out",
      "ln_out",
      "out",
    }
  elif method.loads_teacher:  # the student moved away from the teacher
    changed = [
      not np.array_equal(a, b)
      for a, b in zip(
        _leaves(state["params"]), _leaves(teacher_before["params"])
      )
    ]
    assert any(changed)
  if method.loads_adapter:
    _, adapter = checkpoints.restore_state(feature_dir)
    assert record["adapter"]["sha256"] == frozen_lib.content_hash(
      adapter["params"]
    )
  assert set(record) == ({"teacher"} if method.loads_teacher else set()) | (
    {"adapter"} if method.loads_adapter else set()
  )

  edit_splits(
    monkeypatch,
    sync_pairs=poison("labels", "ego_labels"),
    train=poison("labels", "ego_labels"),
  )
  poisoned = str(tmp_path / "poisoned")
  trainer.train_and_evaluate(config, poisoned)
  _, other = checkpoints.restore_state(poisoned, checkpoints.LATEST)
  _assert_trees_equal(state["params"], other["params"])
  assert losses == _train_losses(poisoned)


def test_changed_teacher_is_refused_on_resume_and_in_evaluate(
  tmp_path, make_config, teacher_dir
):
  teacher = str(tmp_path / "teacher")
  shutil.copytree(teacher_dir, teacher, ignore=shutil.ignore_patterns(".lock"))
  config = make_config("distill_model", teacher_workdir=teacher, num_epochs=1)
  workdir = str(tmp_path / "student")
  trainer.train_and_evaluate(config, workdir)
  trainer.evaluate_run(config, workdir, "test", write_predictions=False)
  # The teacher gets a new best checkpoint with other weights.
  step, state = checkpoints.restore_state(teacher)
  state["params"] = jax.tree.map(lambda a: a + 1, state["params"])
  ckpt = checkpoints.RunCheckpoints(teacher, "f1@25")
  ckpt.save(step + 100, state, {"f1@25": 1e9})
  ckpt.close()

  def contents():
    out = {}
    for root, _, names in os.walk(workdir):
      for name in names:
        with open(os.path.join(root, name), "rb") as f:
          out[os.path.join(root, name)] = f.read()
    return out

  files = contents()
  want = (
    f"the teacher changed since this run started: {workdir} trained "
    f"with {teacher}/best/{step} (sha256 "
  )
  for attempt in (
    lambda: trainer.train_and_evaluate(config, workdir),
    lambda: trainer.evaluate_run(config, workdir, "test"),
  ):
    with pytest.raises(ValueError) as e:
      attempt()
    assert str(e.value).startswith(want)
    assert str(e.value).endswith(
      f"now holds {teacher}/best/{step + 100} (sha256 "
      f"{frozen_lib.content_hash({k: state[k] for k in ('params', 'batch_stats')})[:12]}"
      f"). Restore the teacher's checkpoint of step {step} in {teacher}, "
      "or start the run in a new --workdir"
    )
  assert contents() == files  # nothing written, nothing removed


def test_checkpoints_holding_the_teacher_resume_and_evaluate(
  tmp_path, make_config, teacher_dir, monkeypatch
):
  """Workdirs of older versions: every checkpoint holds state["frozen"]
  (written here through the same checkpoints API, unsaved=() as those
  versions saved). They resume, keep that layout, and end as a new run."""
  config = make_config(
    "distill_model", teacher_workdir=teacher_dir, num_epochs=3
  )
  straight = str(tmp_path / "straight")
  trainer.train_and_evaluate(config, straight)

  old = str(tmp_path / "old")
  original_init = checkpoints.RunCheckpoints.__init__
  original_save = checkpoints.RunCheckpoints.save

  def save_then_interrupt(self, step, state, metrics=None):
    assert "frozen" in state
    original_save(self, step, state, metrics)
    if step == 2:
      raise KeyboardInterrupt

  monkeypatch.setattr(
    checkpoints.RunCheckpoints,
    "__init__",
    lambda self, workdir, metric, unsaved=(): original_init(
      self, workdir, metric
    ),
  )
  monkeypatch.setattr(checkpoints.RunCheckpoints, "save", save_then_interrupt)
  with pytest.raises(KeyboardInterrupt):
    trainer.train_and_evaluate(config, old)
  monkeypatch.undo()
  # Such a workdir has no frozen.json (nor gets one: its checkpoints hold
  # their own copy of the teacher).
  assert not os.path.exists(os.path.join(old, frozen_lib.RECORD))
  _, saved = checkpoints.restore_state(old, checkpoints.LATEST)
  assert "frozen" in saved
  trainer.train_and_evaluate(config, old)

  _, a = checkpoints.restore_state(straight, checkpoints.LATEST)
  _, b = checkpoints.restore_state(old, checkpoints.LATEST)
  assert int(a["step"]) == int(b["step"]) == 6
  assert "frozen" not in a and "frozen" in b  # each keeps its layout
  for key in ("params", "batch_stats", "opt_state"):
    _assert_trees_equal(a[key], b[key])
  _, teacher = checkpoints.restore_state(teacher_dir)
  _assert_trees_equal(
    b["frozen"]["teacher"],
    {"params": teacher["params"], "batch_stats": teacher["batch_stats"]},
  )
  assert not os.path.exists(os.path.join(old, frozen_lib.RECORD))
  assert _train_losses(straight)[2:] == _train_losses(old)[-4:]
  summaries = [
    trainer.evaluate_run(config, w, "test", write_predictions=False)
    for w in (straight, old)
  ]
  assert summaries[0]["f1@25"] == summaries[1]["f1@25"]
  assert summaries[0]["mof"] == summaries[1]["mof"]


def test_supervised_run_does_read_labels(tmp_path, make_config, monkeypatch):
  """The poisoning above would be noticed by a run that reads labels."""
  config = make_config("ego_oracle", num_epochs=1)
  info, _ = datasets.open_dataset(config.dataset.name, config.dataset.data_dir)

  def shift(index, example):
    del index
    example["ego_labels"] = (example["ego_labels"] + 1) % info.num_classes
    return example

  clean = str(tmp_path / "clean")
  trainer.train_and_evaluate(config, clean)
  edit_splits(monkeypatch, sync_pairs=shift)
  shifted = str(tmp_path / "shifted")
  trainer.train_and_evaluate(config, shifted)
  assert _train_losses(clean) != _train_losses(shifted)


def test_evaluate_run_writes_predictions_and_metrics(teacher_dir, make_config):
  summary = trainer.evaluate_run(
    make_config(), teacher_dir, "test", view="ego", chunk_sizes=(3, 4)
  )
  out = os.path.join(teacher_dir, "eval", "test_ego")
  with open(os.path.join(out, "metrics.json")) as f:
    saved = json.load(f)
  assert saved["chunk_sizes"] == [3, 4] and saved["view"] == "ego"
  assert saved["num_videos"] == 6 and saved["split"] == "test"
  info, sources = datasets.open_dataset(
    "synthetic_sync/tiny", make_config().dataset.data_dir
  )
  example = sources["test"][0]
  video_id = example["video_id"].decode()
  with open(os.path.join(out, "predictions", f"{video_id}.txt")) as f:
    lines = f.read().splitlines()
  assert len(lines) == len(example["ego"])
  assert set(lines) <= set(info.class_names)
  per_video = {v["video_id"]: v for v in summary["per_video"]}
  assert per_video[video_id]["num_frames"] == len(lines)


@pytest.mark.parametrize(
  "overrides, message",
  [
    (dict(mode="distill_model"), "needs a teacher"),
    (dict(mode="distill_both", teacher_workdir="x"), "needs a trained adapter"),
    (dict(**{"data.eval_split": "test"}), "test split must never"),
    (dict(**{"data.train_split": "trian"}), "has no split 'trian'"),
    (dict(mode="supervised"), "config.mode='supervised' is unknown"),
    (
      dict(
        mode="distill_model",
        teacher_workdir="x",
        **{"loss.distill_heads": ("y9",)},
      ),
      "distill_heads",
    ),
  ],
)
def test_config_mistakes_are_reported_before_compute(
  make_config, overrides, message, tmp_path
):
  mode = overrides.pop("mode", "exo_supervised")
  config = make_config(**overrides)
  config.mode = mode
  with pytest.raises(ValueError, match=message):
    trainer.train_and_evaluate(config, str(tmp_path / "run"))
  assert not os.path.exists(tmp_path / "run" / "checkpoints")


def test_evaluations_of_a_run_share_one_compiled_predictor(
  teacher_dir, tiny_data_dir, make_config
):
  """A run evaluates every few steps with new parameters: the predictor is
  traced for the first evaluation only (it used to be a new jitted function
  each time, compiled again at every evaluation), and scores what it is
  given, not the state it was first called with."""
  config = make_config()
  info, sources = datasets.open_dataset("synthetic_sync/tiny", tiny_data_dir)
  mode = trainer.build_mode(config, info)
  _, state = checkpoints.restore_state(teacher_dir, "best")
  traced = []
  predict_probs = mode.predict_probs

  def counting(*args):
    traced.append(1)  # runs only while JAX traces
    return predict_probs(*args)

  object.__setattr__(mode, "predict_probs", counting)
  evaluate = trainer.make_evaluate(
    config, info, sources, mode, trainer.sharding_lib.data_parallel()
  )
  first = evaluate(state, "validation", "exo")
  traces = len(traced)
  assert traces >= 1
  assert evaluate(state, "validation", "exo") == first
  zeroed = jax.tree.map(jax.numpy.zeros_like, state["params"])
  other = evaluate(dict(state, params=zeroed), "validation", "exo")
  assert len(traced) == traces
  assert other != first


def test_a_second_seed_in_the_same_process_reuses_the_compiled_programs(
  tmp_path, make_config, caplog
):
  """A study's seeds trace the same programs (the seed and the teacher are
  their arguments): the second seed's run compiles nothing, and the initial
  state the shared init program gives a seed is bit for bit the one a
  program built for that seed alone gives."""
  first = trainer.train_and_evaluate(
    make_config(num_epochs=1, seed=0), str(tmp_path / "seed0")
  )
  caplog.clear()
  with caplog.at_level("INFO"):
    second = trainer.train_and_evaluate(
      make_config(num_epochs=1, seed=1), str(tmp_path / "seed1")
    )
  assert "compiled by an earlier run of this process" in caplog.text
  assert "compiling the training step" not in caplog.text
  assert first["profile"]["compile"] > 0
  assert second["profile"]["trained_steps"] == first["profile"]["trained_steps"]
  assert second["profile"]["compile"] <= 0.1 * first["profile"]["compile"]
  # Another optimiser setting is another program.
  assert trainer.optimizer_key(
    make_config(**{"optim.learning_rate": 0.5})
  ) != trainer.optimizer_key(make_config())

  config = make_config(seed=1)
  info, _ = datasets.open_dataset(config.dataset.name, config.dataset.data_dir)
  mode = trainer.build_mode(config, info)
  replicated = trainer.sharding_lib.data_parallel().replicated
  optimizer = trainer.make_optimizer(config)
  key = trainer.optimizer_key(config)
  shared = trainer.initial_state(
    mode, {}, optimizer, info.feature_dim, 1, replicated, key
  )
  alone = jax.jit(
    lambda: trainer.init_state(mode, {}, optimizer, info.feature_dim, 1)
  )()
  _assert_trees_equal(shared, alone)
  zero = trainer.initial_state(
    mode, {}, optimizer, info.feature_dim, 0, replicated, key
  )
  assert not all(  # the seed is an argument, not a constant of the program
    np.array_equal(a, b)
    for a, b in zip(_leaves(zero["params"]), _leaves(shared["params"]))
  )
  # Frozen parts are arguments too: the state holds copies, never the
  # caller's buffers (the training step donates the state).
  frozen = {"teacher": {"w": jax.numpy.arange(3.0)}}
  with_frozen = trainer.initial_state(
    mode, frozen, optimizer, info.feature_dim, 1, replicated
  )
  copy = with_frozen["frozen"]["teacher"]["w"]
  np.testing.assert_array_equal(copy, frozen["teacher"]["w"])
  assert (
    copy.unsafe_buffer_pointer()
    != frozen["teacher"]["w"].unsafe_buffer_pointer()
  )


def test_programs_are_shared_by_key_and_unhashable_keys_build_each_time():
  built = []
  build = lambda: built.append(1) or len(built)
  assert programs.cached(("step", 1), build) == 1
  assert programs.cached(("step", 1), build) == 1  # shared
  assert programs.cached(("step", 2), build) == 2
  unhashable = ("step", np.zeros(2))  # e.g. a method holding an array
  assert programs.cached(unhashable, build) == 3
  assert programs.cached(unhashable, build) == 4
  programs.clear()
  assert programs.cached(("step", 1), build) == 5
