"""Multi-view teachers (issue #20): the K-view synthetic world, its windows,
the views-as-recordings teacher data, the per-frame combinations of the
views' teacher logits, the views' vote and the teacher view-set check."""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from exo2ego_jax.data import datasets
from exo2ego_jax.data import input_pipeline
from exo2ego_jax.data import synthetic
from exo2ego_jax.data.constants import IGNORE_LABEL
from exo2ego_jax.methods import distill_multiview
from exo2ego_jax.training import trainer
from conftest import ListSource
from conftest import tiny_config

MULTI = synthetic.TINY_MULTIVIEW


def test_multiview_world_is_the_single_view_world_plus_cameras():
  """Same timeline, ego view and labels; view 0 is the single-view exo
  where present; each view misses its own stretches, zeroed."""
  one = synthetic.generate_video(synthetic.TINY, "sync_pairs", 2)
  many = synthetic.generate_video(MULTI, "sync_pairs", 2)
  for key in ("ego", "labels", "ego_labels", "task_id", "jitter"):
    assert np.asarray(one[key]).tobytes() == np.asarray(many[key]).tobytes()
  views, present = many["exo_views"], many["exo_present"]
  t = len(one["labels"])
  assert views.shape == (4, t, MULTI.feature_dim) and views.dtype == np.float32
  assert present.shape == (4, t) and set(np.unique(present)) == {0, 1}
  seen = present[0] == 1
  np.testing.assert_array_equal(many["exo"][seen], one["exo"][seen])
  np.testing.assert_array_equal(many["exo"], views[0])
  assert not views[present == 0].any()  # absent: zero features
  # Every view misses something, and not all the same frames.
  assert (present == 0).any(axis=1).all()
  assert len({present[k].tobytes() for k in range(4)}) == 4
  # Views differ (own MLP, style, noise) where both are present.
  both = (present[0] == 1) & (present[1] == 1)
  assert not np.allclose(views[0][both], views[1][both])


def test_study_world_view0_is_the_main_study_exo_byte_for_byte():
  """The study's world (synthetic.MULTIVIEW) keeps view 0 whole, so its
  single-view rows are the main study's; only views 1-3 miss stretches."""
  for split, index in (("train", 3), ("test", 0)):
    one = synthetic.generate_video(synthetic.DEFAULT, split, index)
    many = synthetic.generate_video(synthetic.MULTIVIEW, split, index)
    for key in ("exo", "ego", "labels", "ego_labels"):
      assert np.asarray(one[key]).tobytes() == np.asarray(many[key]).tobytes()
    present = many["exo_present"]
    assert present[0].all() and not present[1:].all()
    assert (present[1:] == 0).mean() < 0.15
  meta = synthetic.metadata(synthetic.MULTIVIEW)["generation"]
  assert meta["exo_view0_absent"] is False
  assert synthetic.metadata(MULTI)["generation"]["exo_view0_absent"] is True


def test_single_view_metadata_records_no_multiview_parameter():
  meta = synthetic.metadata(synthetic.TINY)
  assert "exo_view_names" not in meta
  multiview_keys = {"exo_views", "exo_occlusions", "exo_view0_absent"}
  assert not multiview_keys & set(meta["generation"])
  meta = synthetic.metadata(MULTI)
  assert meta["exo_view_names"] == ["exo0", "exo1", "exo2", "exo3"]
  assert meta["generation"]["exo_views"] == 4
  with pytest.raises(ValueError, match="exo_views must be >= 1"):
    dataclasses.replace(synthetic.TINY, exo_views=0)


def _recording():
  """A 10-frame, 3-view recording with known absences."""
  views = np.arange(3 * 10 * 2, dtype=np.float32).reshape(3, 10, 2)
  present = np.ones((3, 10), np.int32)
  present[0, 2:5] = 0
  present[1, 4:6] = 0
  present[2, 4:5] = 0  # frame 4: no view
  return {
    "exo": views[0],
    "ego": -views[0],
    "exo_views": views,
    "exo_present": present,
    "labels": np.arange(10, dtype=np.int32) % 3,
    "ego_labels": np.arange(10, dtype=np.int32) % 3,
    "video_id": b"rec",
  }


def test_windows_pool_every_view_and_min_pool_presence():
  example = _recording()
  views = ("ego", input_pipeline.EXO_VIEWS, input_pipeline.EXO_PRESENT)
  window = input_pipeline.make_window(example, 0, 10, 2, 8, views, "labels")
  assert window["exo_views"].shape == (3, 8, 2)
  np.testing.assert_array_equal(
    window["exo_views"][:, :5],
    np.stack([input_pipeline.pool_chunks(v, 2) for v in example["exo_views"]]),
  )
  # A step is seen by a view only if every frame of it is; padding unseen.
  np.testing.assert_array_equal(
    window["exo_present"],
    [
      [1, 0, 0, 1, 1, 0, 0, 0],
      [1, 1, 0, 1, 1, 0, 0, 0],
      [1, 1, 0, 1, 1, 0, 0, 0],
    ],
  )
  input_pipeline.check_recording(example, views, "labels", 2, 3)
  example["exo_views"] = example["exo_views"][:, :9]
  with pytest.raises(ValueError, match="recording rec: exo_views has 9"):
    input_pipeline.check_recording(example, views, "labels", 2, 3)


def test_views_as_recordings_ignore_the_labels_a_view_misses():
  source = distill_multiview.ViewsAsRecordings([_recording()] * 2, (0, 2))
  assert len(source) == 4
  item = source[1]  # recording 0, view 2
  np.testing.assert_array_equal(item["exo"], _recording()["exo_views"][2])
  assert "exo_views" not in item and "exo_present" not in item
  expected = np.arange(10) % 3
  expected[4] = IGNORE_LABEL
  np.testing.assert_array_equal(item["labels"], expected)
  np.testing.assert_array_equal(source[2]["labels"][2:5], [IGNORE_LABEL] * 3)


def test_vote_is_the_majority_of_the_present_views():
  labels = np.array([[1, 2, 3, 4], [1, 5, 6, 4], [2, 5, 6, 7]])
  present = np.array([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 0]])
  np.testing.assert_array_equal(
    distill_multiview.vote(labels, present, 8), [1, 5, 3, IGNORE_LABEL]
  )  # step 2: views 0 and 2 tie (3 vs 6): the smaller label


def test_combined_heads_average_the_present_views_only():
  b, k, t, c = 1, 3, 4, 2
  logits = jnp.arange(b * k * t * c, dtype=jnp.float32).reshape(b * k, t, c)
  weights = jnp.array([[[1, 1, 0, 0], [1, 0, 0, 0], [0, 1, 0, 0]]], jnp.float32)
  (target,), (seen,) = distill_multiview.combine_heads(
    [logits], weights, ["y"], k
  )
  per_view = np.asarray(logits).reshape(k, t, c)
  np.testing.assert_allclose(target[0, 0], per_view[:2, 0].mean(0))
  np.testing.assert_allclose(target[0, 1], per_view[[0, 2], 1].mean(0))
  np.testing.assert_array_equal(seen, [[1, 1, 0, 0]])
  # Confidence weights: a weighted mean; a coarse head pools the weights.
  weights = weights.at[0, 0, 0].set(3.0)
  (target,), _ = distill_multiview.combine_heads([logits], weights, ["y"], k)
  np.testing.assert_allclose(
    target[0, 0], (3 * per_view[0, 0] + per_view[1, 0]) / 4, rtol=1e-6
  )
  pooled = distill_multiview.pooled_weights(weights, 2, 2)
  np.testing.assert_allclose(pooled[0, :, 0], [2.0, 0.5, 0.5])


@pytest.fixture(scope="module")
def multiview_info():
  info = datasets.DatasetInfo(
    name="synthetic_sync/tiny_multiview",
    splits=("train", "sync_pairs", "validation", "test"),
    feature_dim=16,
    class_names=tuple(synthetic.class_names(synthetic.TINY)),
    background_classes=(0,),
    exo_views=("exo0", "exo1", "exo2", "exo3"),
  )
  return info


def _config(mode, teacher_workdir=None, **multiview):
  config = tiny_config(None, mode, teacher_workdir=teacher_workdir)
  config.dataset.name = "synthetic_sync/tiny_multiview"
  config.multiview = ml_collections.ConfigDict(
    dict({"num_views": None, "combine": "mean"}, **multiview)
  )
  return config


def _teacher_outputs(logits: list) -> dict:
  """C2F-TCN-shaped outputs: heads y1..y5 and y from (B, K, L, C) arrays,
  as the teacher returns them for B * K windows."""
  flat = [jnp.asarray(x.reshape(-1, *x.shape[2:])) for x in logits]
  return {
    "head_logits": tuple(flat[:5]),
    "head_masks": (None,) * 5,
    "logits": flat[5],
  }


def test_the_student_is_trained_only_where_a_view_is_present(multiview_info):
  """A view absent throughout changes no target, whatever the teacher says
  on it; steps no view sees are no target's and are counted."""
  method = trainer.build_mode(
    _config("distill_multiview", "teacher"), multiview_info
  )
  assert method.views == (0, 1, 2, 3) and method.multiview
  assert method.input_views == ("ego", "exo_views", "exo_present")
  rng = np.random.default_rng(0)
  b, k, t, c = 2, 3, 384, 5
  lengths = [t // f for f in (32, 16, 8, 4, 2, 1)]
  logits = [rng.normal(size=(b, k, n, c)).astype(np.float32) for n in lengths]
  for x in logits:
    x[:, 2] *= 1000.0  # view 2: absent, and wildly wrong
  present = np.ones((b, k, t), np.float32)
  present[:, 2] = 0
  present[0, :, 20:24] = 0  # recording 0: 4 steps no view sees
  mask = np.ones((b, t), np.float32)
  mask[1, 300:] = 0
  targets, seen, unseen = method.view_targets(
    _teacher_outputs(logits), present, mask
  )
  assert float(unseen) == 4.0
  two, seen_two, _ = method.view_targets(
    _teacher_outputs([x[:, :2] for x in logits]), present[:, :2], mask
  )
  for a, b_ in zip(targets + seen, two + seen_two):
    np.testing.assert_array_equal(a, b_)
  # Head y5 (2 steps a step): the mean of views 0 and 1 where seen.
  y5 = logits[4]
  np.testing.assert_allclose(targets[0][0, 0], y5[0, :2, 0].mean(0), rtol=1e-6)
  np.testing.assert_array_equal(seen[0][0, 8:14], [1, 1, 0, 0, 1, 1])
  np.testing.assert_array_equal(seen[0][1, 148:152], [1, 1, 0, 0])


def test_a_teacher_of_other_views_is_a_one_line_error(multiview_info, tmp_path):
  teacher = tmp_path / "teacher"
  teacher.mkdir()
  single = _config("exo_supervised")
  (teacher / "config.json").write_text(single.to_json())
  config = _config("distill_multiview", teacher_workdir=str(teacher))
  with pytest.raises(ValueError) as error:
    trainer.build_mode(config, multiview_info)
  message = str(error.value)
  assert message == (
    f"teacher {teacher} was trained on exo views (exo0) but dataset "
    "synthetic_sync/tiny_multiview gives this run views (exo0, exo1, exo2, "
    "exo3): train the teacher with mode exo_multiview on this dataset, or "
    "lower config.multiview.num_views"
  )
  # One view is what that teacher knows; an exo_multiview teacher on two
  # views teaches two.
  config.multiview.num_views = 1
  assert trainer.build_mode(config, multiview_info).views == (0,)
  two = _config("exo_multiview", num_views=2)
  (teacher / "config.json").write_text(two.to_json())
  config.multiview.num_views = 3
  with pytest.raises(ValueError, match=r"exo views \(exo0, exo1\) but"):
    trainer.build_mode(config, multiview_info)
  config.multiview.num_views = 5
  with pytest.raises(ValueError, match="num_views=5 but dataset"):
    trainer.build_mode(config, multiview_info)
  assert json.loads((teacher / "config.json").read_text())["mode"]
  assert os.path.isdir(teacher)


def test_a_causal_student_is_refused_in_one_line(multiview_info, tmp_path):
  """distill_multiview combines the teacher's heads at C2F-TCN's rates,
  which a causal student's heads (at the input rate) do not have."""
  teacher = tmp_path / "teacher"
  teacher.mkdir()
  (teacher / "config.json").write_text(_config("exo_supervised").to_json())
  config = _config("distill_multiview", str(teacher), num_views=1)
  assert trainer.build_mode(config, multiview_info).views == (0,)
  config.model.name = "causal_tcn"
  with pytest.raises(ValueError) as error:
    trainer.build_mode(config, multiview_info)
  assert str(error.value) == (
    "mode distill_multiview combines the teacher's heads at C2F-TCN's "
    "rates; config.model.name='causal_tcn' is not supported: use c2f_tcn, "
    "or distill_model for a causal student"
  )


def _teacher_run(workdir, config, info, seed: int) -> dict:
  """A teacher workdir: its config.json and a best checkpoint of random
  C2F-TCN variables (`seed`); returns the variables."""
  from exo2ego_jax.runtime import checkpoints  # pylint: disable=g-import-not-at-top

  workdir.mkdir()
  (workdir / "config.json").write_text(config.to_json())
  method = trainer.build_mode(config, info)
  x, mask = jnp.zeros((1, 8, 16)), jnp.ones((1, 8))
  variables = jax.jit(method.model.init)(jax.random.key(seed), x, mask)
  ckpt = checkpoints.RunCheckpoints(str(workdir), "f1@25")
  ckpt.save(1, {"step": jnp.int32(1), **variables}, {"f1@25": 1.0})
  ckpt.close()
  return variables


def test_one_teacher_per_view_each_on_its_own_view(multiview_info, tmp_path):
  """distill_multiview with multiview.teachers runs teacher k on view k
  (exo_only's teacher is view 0's; exo_multiview with multiview.view = k
  view k's), and refuses, in one line, teachers that do not match."""
  teachers, variables = [], []
  for k in range(3):
    config = (
      _config("exo_supervised") if k == 0 else _config("exo_multiview", view=k)
    )
    teachers.append(tmp_path / f"teacher{k}")
    variables.append(_teacher_run(teachers[k], config, multiview_info, k))
  dirs = tuple(str(t) for t in teachers)
  config = _config("distill_multiview", dirs[0], num_views=2, teachers=dirs[:2])
  method = trainer.build_mode(config, multiview_info)
  assert method.view_teachers == 2 and method.views == (0, 1)
  loaded = {}
  frozen = trainer.load_frozen(config, multiview_info, method, loaded)
  assert sorted(loaded) == ["teacher", "teacher_view1"]
  rng = np.random.default_rng(0)
  exo = jnp.asarray(rng.normal(size=(2, 2, 32, 16)), jnp.float32)
  mask = jnp.ones((2, 32)).at[1, 20:].set(0.0)
  outputs = jax.jit(method.teacher_outputs)(frozen, exo, mask)
  logits = np.asarray(outputs["logits"]).reshape(2, 2, 32, -1)
  apply = jax.jit(lambda v, x: method.model.apply(v, x, mask, train=False))
  for k in range(2):
    want = apply(variables[k], exo[:, k])["logits"]
    np.testing.assert_allclose(logits[:, k], want, atol=1e-5)
  assert not np.allclose(logits[:, 1], apply(variables[0], exo[:, 1])["logits"])
  # Teachers that do not match the views: one line each.
  bad = [
    (dirs, "lists 3 teachers for 2 exo views (exo0, exo1): give one"),
    (
      (dirs[0], dirs[2]),
      f"teacher {dirs[2]} was trained on exo views (exo2) but "
      "config.multiview.teachers gives it view exo1 of dataset "
      "synthetic_sync/tiny_multiview: list each view's teacher in view order",
    ),
    (
      (dirs[1], dirs[0]),
      f"config.teacher_workdir={dirs[0]} is not config.multiview.teachers[0]="
      f"{dirs[1]}: set it to the first view's teacher (the student starts "
      "from it)",
    ),
  ]
  for listed, message in bad:
    config = _config("distill_multiview", dirs[0], num_views=2, teachers=listed)
    with pytest.raises(ValueError) as error:
      trainer.build_mode(config, multiview_info)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_one_view_teacher_trains_validates_and_tests_on_its_view(
  multiview_info,
):
  method = trainer.build_mode(_config("exo_multiview", view=2), multiview_info)
  assert method.views == (2,)
  source = ListSource([_recording()] * 2)
  item = method.train_source(None, source, None, None)[1]
  np.testing.assert_array_equal(item["exo"], _recording()["exo_views"][2])
  assert item["labels"][4] == IGNORE_LABEL  # view 2 misses frame 4
  evaluated = method.data_sources({"test": source})["test"][0]
  np.testing.assert_array_equal(evaluated["exo"], _recording()["exo_views"][2])
  np.testing.assert_array_equal(evaluated["labels"], _recording()["labels"])
  assert method.data_sources({"test": source})["test"] is not source
  view0 = trainer.build_mode(_config("exo_multiview", view=0), multiview_info)
  assert view0.data_sources({"test": source})["test"] is source
  for bad in (
    _config("exo_multiview", view=4),
    _config("exo_multiview", view=1, num_views=2),
  ):
    with pytest.raises(ValueError) as error:
      trainer.build_mode(bad, multiview_info)
    assert str(error.value).startswith(
      f"config.multiview.view={bad.multiview.view} but dataset "
      "synthetic_sync/tiny_multiview has 4 exo views (exo0, exo1, exo2, "
      "exo3): use 0 to 3, and leave config.multiview.num_views unset"
    )
