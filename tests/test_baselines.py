"""Baselines: domain adaptation without synchronization (uda_*), teacher
pseudo-labels through DTW alignment or synchronization, and the DTW itself."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from exo2ego_jax.runtime import checkpoints
from exo2ego_jax.data import datasets
from exo2ego_jax.evaluation import evaluator
from exo2ego_jax.data import input_pipeline
from exo2ego_jax.training import losses
from exo2ego_jax.methods import dtw
from exo2ego_jax.methods import pseudo_labels
from exo2ego_jax.training import trainer
from exo2ego_jax.models import domain
from conftest import edit_splits
from conftest import poison


def _assert_trees_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _train_records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [r for r in map(json.loads, f) if r["split"] == "train"]


# ----- Gradient reversal. -----


def test_gradient_reversal_flips_and_scales_the_gradient():
  w = jnp.array([0.3, -1.2, 2.0])
  x = jnp.array([[0.5, 1.0, -2.0], [1.5, -0.5, 0.25]])
  classifier = lambda f: jnp.sum(jnp.tanh(f @ w) ** 2)  # any smooth head
  plain = jax.grad(classifier)(x)
  for scale in (0.0, 0.37, 1.0):
    reversed_ = jax.grad(
      lambda f: classifier(domain.gradient_reversal(f, scale))
    )(x)
    np.testing.assert_allclose(reversed_, -scale * plain, rtol=1e-6)
  # The forward pass is the identity, and the classifier's own parameters
  # get their ordinary gradient.
  np.testing.assert_array_equal(domain.gradient_reversal(x, 0.5), x)
  grad_w = jax.grad(
    lambda v: jnp.sum(jnp.tanh(domain.gradient_reversal(x, 0.5) @ v) ** 2)
  )(w)
  np.testing.assert_allclose(
    grad_w, jax.grad(lambda v: jnp.sum(jnp.tanh(x @ v) ** 2))(w), rtol=1e-6
  )


def test_reversal_schedule_ramps_from_zero_to_one():
  values = domain.reversal_schedule(jnp.array([0.0, 0.1, 0.5, 1.0]))
  np.testing.assert_allclose(
    values,
    [
      0.0,
      2 / (1 + np.exp(-1)) - 1,
      2 / (1 + np.exp(-5)) - 1,
      2 / (1 + np.exp(-10)) - 1,
    ],
    rtol=1e-6,
  )


def test_entropy_terms():
  mask = jnp.array([[1.0, 1.0, 0.0]])
  collapsed = jnp.array([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])
  assert float(losses.entropy(collapsed, mask)) == pytest.approx(0, abs=1e-6)
  # All valid frames say class 0 (the masked frame does not count).
  assert float(losses.marginal_entropy(collapsed, mask)) == pytest.approx(
    0, abs=1e-6
  )
  diverse = jnp.array([[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]])
  assert float(losses.marginal_entropy(diverse, mask)) == pytest.approx(
    np.log(2), rel=1e-5
  )
  uniform = jnp.full((1, 3, 4), 0.25)
  assert float(losses.entropy(uniform, mask)) == pytest.approx(
    np.log(4), rel=1e-5
  )


# ----- DTW. -----


def _cost_matrix(x, y, metric):
  if metric == "cosine":
    x = x / np.linalg.norm(x, axis=-1, keepdims=True)
    y = y / np.linalg.norm(y, axis=-1, keepdims=True)
    return 1.0 - x @ y.T
  squared = ((x[:, None] - y[None]) ** 2).sum(-1)
  return squared if metric == "sqeuclidean" else np.sqrt(squared)


def _brute_force_dtw(cost, starts, width):
  """O(nm) textbook DTW over the band cells; ties: diagonal, up, left."""
  n, m = cost.shape
  total = np.full((n, m), np.inf)
  came_from = np.zeros((n, m), np.int64)
  for i in range(n):
    for j in range(starts[i], starts[i] + width):
      if i == j == 0:
        total[0, 0] = cost[0, 0]
        continue
      options = [
        total[i - 1, j - 1] if i and j else np.inf,
        total[i - 1, j] if i else np.inf,
        total[i, j - 1] if j else np.inf,
      ]
      came_from[i, j] = int(np.argmin(options))
      total[i, j] = cost[i, j] + options[came_from[i, j]]
  i, j = n - 1, m - 1
  path = [(i, j)]
  while i or j:
    step = came_from[i, j]
    i, j = (
      (i - 1, j - 1) if step == 0 else (i - 1, j) if step == 1 else (i, j - 1)
    )
    path.append((i, j))
  return total[-1, -1], np.asarray(path[::-1])


def test_band_is_a_sakoe_chiba_band_around_the_scaled_diagonal():
  starts, width = dtw.band(10, 10, 2)
  assert width == 5 and list(starts) == [0, 0, 0, 1, 2, 3, 4, 5, 5, 5]
  starts, width = dtw.band(4, 30, 1)  # radius raised to the slope (29/3)
  assert width == 21 and starts[0] == 0 and starts[-1] + width == 30
  assert dtw.band(7, 5, None)[1] == 5


@pytest.mark.parametrize("metric", dtw.METRICS)
def test_dtw_matches_brute_force(metric):
  rng = np.random.default_rng(dtw.METRICS.index(metric))
  for case in range(25):
    n, m = (int(v) for v in rng.integers(1, 45, 2))
    radius = None if case % 4 == 0 else int(rng.integers(0, 12))
    x, y = rng.normal(size=(n, 5)), rng.normal(size=(m, 5))
    cost, path = dtw.dtw(x, y, radius=radius, metric=metric)
    starts, width = dtw.band(n, m, radius)
    expected_cost, expected_path = _brute_force_dtw(
      _cost_matrix(x, y, metric), starts, width
    )
    np.testing.assert_allclose(cost, expected_cost, rtol=1e-5)
    np.testing.assert_array_equal(path, expected_path)


def test_dtw_breaks_ties_like_the_brute_force():
  """Small integer features: costs are exact and ties are everywhere."""
  rng = np.random.default_rng(7)
  for case in range(40):
    n, m = (int(v) for v in rng.integers(1, 30, 2))
    radius = None if case % 3 == 0 else int(rng.integers(0, 8))
    x, y = rng.integers(0, 2, (n, 3)), rng.integers(0, 2, (m, 3))
    cost, path = dtw.dtw(x, y, radius=radius, metric="sqeuclidean")
    starts, width = dtw.band(n, m, radius)
    expected_cost, expected_path = _brute_force_dtw(
      _cost_matrix(x, y, "sqeuclidean").astype(np.float64), starts, width
    )
    assert cost == expected_cost
    np.testing.assert_array_equal(path, expected_path)


def test_dtw_recovers_a_time_stretch():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(50, 8))
  y = np.repeat(x, 2, axis=0)  # y is x played at half speed
  cost, path = dtw.dtw(x, y, radius=5, metric="euclidean")
  assert cost == pytest.approx(0.0, abs=1e-3)
  np.testing.assert_array_equal(path[:, 0], np.arange(100) // 2)
  np.testing.assert_array_equal(path[:, 1], np.arange(100))


# ----- Pseudo-labels. -----


def test_pseudo_labels_follow_the_path():
  exo_labels = np.array([0, 0, 3, 3, 3, 1, 2, 2])
  exo_probs = np.eye(4)[exo_labels] * 0.7 + 0.075
  path = np.array(
    [
      (0, 0),
      (1, 1),
      (2, 1),
      (3, 2),
      (4, 3),
      (4, 4),
      (5, 5),
      (6, 6),
      (7, 6),
      (7, 7),
    ]
  )
  # Ego step 1 sees exo steps 1 (class 0) and 2 (class 3): a tie of the mean
  # probabilities, broken towards the smaller class id like argmax.
  np.testing.assert_array_equal(
    pseudo_labels.transfer_along_path(path, exo_probs, 8),
    [0, 0, 3, 3, 3, 1, 2, 2],
  )


def test_time_stretched_ego_gets_the_stretched_labels():
  rng = np.random.default_rng(1)
  exo_labels = np.repeat(rng.integers(0, 5, 12), rng.integers(2, 6, 12))
  prototypes = rng.normal(size=(5, 16))
  exo_features = prototypes[exo_labels] + 0.05 * rng.normal(
    size=(len(exo_labels), 16)
  )
  stretch = np.repeat(np.arange(len(exo_labels)), 3)  # ego: 3x slower
  ego_features = exo_features[stretch] + 0.05 * rng.normal(
    size=(len(stretch), 16)
  )
  labels = pseudo_labels.aligned_labels(
    exo_features,
    ego_features,
    np.eye(5)[exo_labels],
    metric="cosine",
    band_fraction=0.2,
  )
  np.testing.assert_array_equal(labels, exo_labels[stretch])


# ----- Training runs on the tiny benchmark. -----


def _baseline_config(make_config, mode, teacher_dir, **overrides):
  config = make_config(mode, teacher_workdir=teacher_dir, **overrides)
  if mode.startswith("uda_"):  # labeled exo train split, unlabeled ego
    config.data.train_split = "train"
    config.data.view = "exo"
    config.data.label_key = "labels"
  else:
    config.data.label_key = "pseudo_labels"
    config.pseudo_labels.band_fraction = 0.2
  return config


@pytest.mark.parametrize(
  "mode",
  ["uda_adversarial", "uda_entropy", "align_pseudo_label", "sync_pseudo_label"],
)
def test_baselines_train_evaluate_and_never_read_ego_labels(
  mode, tmp_path, make_config, teacher_dir, monkeypatch
):
  """Each baseline trains, restores and scores the ego view; for the UDA
  ones, poisoning every label of the pairs (and the ego labels of the
  labeled exo split) gives bit-identical training."""
  config = _baseline_config(
    make_config, mode, teacher_dir, **{"uda.sequence_weight": 0.5}
  )
  workdir = str(tmp_path / mode)
  results = trainer.train_and_evaluate(config, workdir)
  assert results["validation"]["num_videos"] == 6
  records = _train_records(workdir)
  assert len(records) == 4 and all(np.isfinite(r["loss"]) for r in records)
  _, state = checkpoints.restore_state(workdir, checkpoints.LATEST)
  if mode == "uda_adversarial":
    assert set(state["params"]) == {"model", "domain"}
    assert set(state["params"]["domain"]) == {"frame", "sequence"}
    assert all("domain_frame" in r and "domain_sequence" in r for r in records)
    # The reversal weight ramps over the run: 0 at the first step.
    assert records[0]["ramp"] == 0.0 and records[-1]["ramp"] > 0.9
  if mode == "uda_entropy":
    assert all(
      "target_entropy" in r and "target_diversity" in r for r in records
    )
  if mode.endswith("pseudo_label"):
    _, teacher = checkpoints.restore_state(teacher_dir)
    changed = [
      not np.array_equal(a, b)
      for a, b in zip(
        jax.tree.leaves(state["params"]), jax.tree.leaves(teacher["params"])
      )
    ]
    assert any(changed)  # started from the teacher and moved
    saved = np.load(os.path.join(workdir, pseudo_labels.FILENAME))
    _, sources = datasets.open_dataset(
      config.dataset.name, config.dataset.data_dir
    )
    example = sources["sync_pairs"][0]
    assert saved[example["video_id"].decode()].shape == example["ego"].shape[:1]
  # The best checkpoint restores and scores the ego view.
  summary = trainer.evaluate_run(
    config, workdir, "test", view="ego", write_predictions=False
  )
  assert summary["num_videos"] == 6 and 0 <= summary["mof"] <= 100

  if mode.endswith("pseudo_label"):
    return  # label-blind: test_trainer poisons every label of its runs
  edit_splits(
    monkeypatch,
    sync_pairs=poison("labels", "ego_labels"),
    train=poison("ego_labels"),
  )
  poisoned = str(tmp_path / "poisoned")
  trainer.train_and_evaluate(config, poisoned)
  _, other = checkpoints.restore_state(poisoned, checkpoints.LATEST)
  _assert_trees_equal(state["params"], other["params"])
  assert [r["loss"] for r in records] == [
    r["loss"] for r in _train_records(poisoned)
  ]


def test_sync_pseudo_labels_are_the_teachers_exo_predictions(
  tmp_path, make_config, teacher_dir
):
  config = _baseline_config(make_config, "sync_pseudo_label", teacher_dir)
  info, sources = datasets.open_dataset(
    config.dataset.name, config.dataset.data_dir
  )
  mode = trainer.build_mode(config, info)
  teacher = trainer.load_frozen(config, info, mode)["teacher"]
  labels = pseudo_labels.compute(mode, teacher, sources["sync_pairs"], config)
  teacher_mode = trainer.build_mode(make_config(), info)
  state = {"params": teacher["params"], "batch_stats": teacher["batch_stats"]}
  predict = jax.jit(lambda w, m: teacher_mode.predict_probs(state, w, m))
  example = sources["sync_pairs"][3]
  probs = evaluator.predict_recordings(
    predict,
    [example["exo"]],
    (config.data.chunk_size,),
    config.data.max_frames,
    config.data.eval_batch_size,
  )[0]
  np.testing.assert_array_equal(
    labels[example["video_id"].decode()], probs.argmax(-1)
  )


def test_uda_target_windows_are_not_the_synchronized_ones(
  make_config, tiny_data_dir
):
  """UDA draws ego windows on their own: not the exo windows' partners."""
  _, sources = datasets.open_dataset("synthetic_sync/tiny", tiny_data_dir)
  kwargs = dict(batch_size=4, max_frames=64, chunk_size=4, zoom=True)
  labeled = input_pipeline.train_dataset(
    sources["sync_pairs"],
    views=("exo",),
    label_key=None,
    num_epochs=3,
    seed=0,
    **kwargs,
  )
  paired = input_pipeline.with_target_windows(
    labeled, sources["sync_pairs"], view="ego", seed=1, **kwargs
  )
  assert len(paired) == len(labeled) == 6
  batch = paired[0]
  assert batch["target"].shape == (4, 64, 16)
  synchronized = input_pipeline.train_dataset(
    sources["sync_pairs"],
    views=("ego",),
    label_key=None,
    num_epochs=3,
    seed=0,
    **kwargs,
  )[0]
  assert not np.array_equal(batch["target"], synchronized["ego"])


@pytest.mark.parametrize(
  "overrides, message",
  [
    (dict(mode="align_pseudo_label"), "needs a teacher"),
    (
      dict(mode="sync_pseudo_label", teacher_workdir="x"),
      "label_key='pseudo_labels'",
    ),
    (
      dict(mode="uda_entropy", **{"uda.target_split": "test"}),
      "target_split='test'",
    ),
  ],
)
def test_baseline_config_mistakes_are_reported(
  make_config, overrides, message, tmp_path
):
  mode = overrides.pop("mode")
  config = make_config(**overrides)
  config.mode = mode
  with pytest.raises(ValueError, match=message):
    trainer.train_and_evaluate(config, str(tmp_path / "run"))


def test_dtw_reads_the_streams_a_clock_error_gives(
  make_config, teacher_dir, tmp_path, monkeypatch
):
  """align_pseudo_label trusts no timestamp: config.data.sync_offset puts
  the error into the recordings it aligns (the ego stream shifted, as a rig
  with that clock gives it) and not, again, into its training windows."""
  from exo2ego_jax.runtime import time_profile  # pylint: disable=g-import-not-at-top
  from exo2ego_jax.sync import resync  # pylint: disable=g-import-not-at-top

  config = _baseline_config(make_config, "align_pseudo_label", teacher_dir)
  config.data.sync_offset, config.data.sync_offset_mode = 8, "per_video"
  info, sources = datasets.open_dataset(
    config.dataset.name, config.dataset.data_dir
  )
  mode = trainer.build_mode(config, info)
  frozen = trainer.load_frozen(config, info, mode)
  seen = {}
  labeled = mode.train_source

  def train_source(frozen, source, config, workdir):
    seen["source"] = source
    return labeled(frozen, source, config, workdir)

  train_dataset = input_pipeline.train_dataset

  def spy(*args, **kwargs):
    seen["window_offset"] = kwargs["sync_offset"]
    return train_dataset(*args, **kwargs)

  monkeypatch.setattr(mode, "train_source", train_source)
  monkeypatch.setattr(input_pipeline, "train_dataset", spy)
  trainer.training_data(
    config,
    info,
    sources,
    mode,
    frozen,
    str(tmp_path),
    time_profile.RunProfile(),
  )
  assert seen["window_offset"] is None
  pairs = sources["sync_pairs"]
  shifts = resync.draw_shifts(pairs, config)
  assert any(shifts.values()) and set(shifts) == set(range(len(pairs)))
  for i in range(len(pairs)):
    ego, given = pairs[i]["ego"], seen["source"][i]["ego"]
    frames = np.clip(np.arange(len(ego)) + shifts[i], 0, len(ego) - 1)
    np.testing.assert_array_equal(given, np.asarray(ego)[frames])
    np.testing.assert_array_equal(seen["source"][i]["exo"], pairs[i]["exo"])
  # Per-window offsets change inside a recording: refused for it.
  config.data.sync_offset_mode = "per_window"
  with pytest.raises(ValueError, match="not 'per_window'"):
    trainer.build_mode(config, info)
