"""The causal (live) student: causality and receptive field of causal_tcn,
its C2F-TCN-shaped outputs, distillation from the offline teacher (which
keeps its own model config), and the online API: feeding a recording step
by step gives the whole-recording outputs."""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from conftest import tiny_config

from configs import synthetic_causal_exo
from exo2ego_jax.data import datasets
from exo2ego_jax.models import c2f_tcn
from exo2ego_jax.models import causal_tcn
from exo2ego_jax.models import online
from exo2ego_jax.training import trainer

# Frame-by-frame vs whole-recording: the same float32 sums in another order.
ONLINE_ATOL = 1e-5


def small_model(receptive_field=20, stages=1):
  return causal_tcn.CausalTCN(
    num_classes=5, receptive_field=receptive_field, features=16, stages=stages
  )


@pytest.fixture(scope="module", params=[1, 2], ids=["1stage", "2stages"])
def random_model(request):
  """A random causal TCN (one stage, or a refinement stage too) with
  non-trivial BatchNorm statistics."""
  model = small_model(stages=request.param)
  x = jax.random.normal(jax.random.key(0), (2, 90, 8))
  variables = model.init(jax.random.key(1), x)
  variables["batch_stats"]["bn"] = {
    "mean": jnp.linspace(-0.5, 0.5, 16),
    "var": jnp.linspace(0.5, 2.0, 16),
  }
  return model, variables, x


def test_receptive_field_is_a_config_of_doubling_dilations():
  assert causal_tcn.dilations(20, 3) == (1, 2, 4, 8)  # span 31 >= 20
  assert causal_tcn.span((1, 2, 4, 8), 3) == 31
  assert causal_tcn.dilations(15, 3) == (1, 2, 4)  # span exactly 15
  assert causal_tcn.dilations(1, 2) == (1,)
  with pytest.raises(ValueError, match="receptive_field >= 1"):
    causal_tcn.dilations(0, 3)


def test_heads_come_from_the_last_stages():
  assert causal_tcn.head_stages(1) == (0,) * 6
  assert causal_tcn.head_stages(2) == (0, 0, 0, 0, 0, 1)
  assert causal_tcn.head_stages(3) == (0, 0, 0, 0, 1, 2)


def test_outputs_at_t_read_only_the_receptive_field_before_t(random_model):
  model, variables, x = random_model
  span = model.span  # each stage adds its own span minus the shared step
  one = causal_tcn.span(model.layer_dilations, model.kernel_size)
  assert span == model.stages * (one - 1) + 1
  base = model.apply(variables, x)["logits"]
  t = 80
  future = model.apply(variables, x.at[:, t + 1 :].add(5.0))["logits"]
  np.testing.assert_array_equal(future[:, : t + 1], base[:, : t + 1])
  assert np.abs(future[:, t + 1 :] - base[:, t + 1 :]).min() > 0
  # The oldest input step t reads is t - span + 1; one before is unseen.
  far = model.apply(variables, x.at[:, t - span].add(5.0))["logits"]
  np.testing.assert_array_equal(far[:, t], base[:, t])
  near = model.apply(variables, x.at[:, t - span + 1].add(5.0))["logits"]
  assert np.abs(near[:, t] - base[:, t]).max() > 1e-4


def test_outputs_have_the_c2f_tcn_interface(random_model):
  model, variables, x = random_model
  mask = (jnp.arange(90)[None] < jnp.array([[90], [70]])).astype(jnp.float32)
  out = model.apply(variables, x, mask)
  assert out["logits"].shape == (2, 90, 5)
  assert out["features"].shape == (2, 90, 16)
  assert [h.shape for h in out["head_logits"]] == [(2, 90, 5)] * 5
  np.testing.assert_array_equal(out["head_masks"][0], mask)
  np.testing.assert_array_equal(out["lengths"], [90, 70])
  probs = c2f_tcn.ensemble_probs(out, (1.0, 0, 0, 0, 0, 1.0))
  want = (
    jax.nn.softmax(out["head_logits"][0]) + jax.nn.softmax(out["logits"])
  ) / 2
  np.testing.assert_allclose(probs, want, atol=1e-6)
  # Padding after an example's length changes none of its valid steps.
  np.testing.assert_array_equal(
    out["logits"][1, :70], model.apply(variables, x[1:, :70])["logits"][0]
  )


def test_step_by_step_equals_the_whole_recording(random_model):
  model, variables, x = random_model
  whole = np.asarray(c2f_tcn.ensemble_probs(model.apply(variables, x[:1])))[0]
  segmenter = online.OnlineSegmenter(model, variables)
  fed = [segmenter.steps(x[0, t]) for t in range(40)]  # one at a time
  fed.append(segmenter.steps(x[0, 40:47]))  # a small chunk
  fed += [segmenter.steps(x[0, t]) for t in range(47, 90)]
  np.testing.assert_allclose(np.concatenate(fed), whole, atol=ONLINE_ATOL)
  segmenter.reset()  # a new recording starts from the zero history
  np.testing.assert_allclose(
    segmenter.steps(x[0, :5]), whole[:5], atol=ONLINE_ATOL
  )


def test_hysteresis_switches_only_on_a_clear_win_and_is_causal():
  probs = np.array(
    [
      [0.6, 0.4, 0.0],
      [0.45, 0.55, 0.0],  # class 1 leads by 0.10: kept 0
      [0.2, 0.8, 0.0],  # by 0.60: switch
      [0.4, 0.35, 0.25],  # 0 leads 1 by 0.05: kept 1
      [0.1, 0.2, 0.7],  # 2 beats 1 by 0.5: switch
    ]
  )
  np.testing.assert_array_equal(online.smoothed(probs, 0.3, 1), [0, 0, 1, 1, 2])
  np.testing.assert_array_equal(
    online.smoothed(probs, 0.0, 1), probs.argmax(-1)
  )
  # Margin, then debounce: the switch to 1 waits a second step.
  np.testing.assert_array_equal(online.smoothed(probs, 0.3, 2), [0, 0, 0, 1, 1])
  # Causal: a step's label does not change when later steps change.
  later = probs.copy()
  later[3:] = [[0.0, 0.0, 1.0]] * 2
  np.testing.assert_array_equal(
    online.smoothed(later, 0.3, 1)[:3], online.smoothed(probs, 0.3, 1)[:3]
  )
  with pytest.raises(ValueError, match=r"margin 1.5 must be in \[0, 1\)"):
    online.Smoother(1.5)


def test_debounce_and_live_frames():
  labels = np.array([0, 0, 1, 0, 0, 2, 2, 2, 1, 2])
  np.testing.assert_array_equal(
    online.debounced(labels, 2), [0, 0, 0, 0, 0, 0, 2, 2, 2, 2]
  )
  np.testing.assert_array_equal(online.debounced(labels, 1), labels)
  # Chunk 3: frame f shows step (f + 1) // 3 - 1; the last frame closes
  # the last (partial) chunk.
  np.testing.assert_array_equal(
    online.live_frames(np.array([4, 5, 6]), 3, 8), [4, 4, 4, 4, 4, 5, 5, 6]
  )


def causal_config(make_config, mode, **overrides):
  config = synthetic_causal_exo.causal_model(make_config(mode, **overrides))
  config.model.receptive_field = 16
  config.model.features = 32
  return config


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory, tiny_data_dir, teacher_dir):
  """A causal student distilled for 4 steps from the tiny C2F-TCN
  teacher (whose config says conv_impl "xla": the student's says
  "winograd", which must not reach the teacher)."""
  config = tiny_config(
    tiny_data_dir, "distill_model", teacher_workdir=teacher_dir, num_epochs=1
  )
  config = synthetic_causal_exo.causal_model(config)
  config.model.receptive_field = 16
  config.model.features = 32
  config.model.conv_impl = "winograd"
  config.num_epochs = 1  # causal_model's 240 epochs are the benchmark's
  config.eval_every_epochs = 1
  workdir = str(tmp_path_factory.mktemp("causal_student"))
  result = trainer.train_and_evaluate(config, workdir)
  return workdir, config, result


def test_distilled_student_trains_from_the_teachers_own_network(
  student_dir, tiny_data_dir
):
  workdir, config, result = student_dir
  info = datasets.open_dataset("synthetic_sync/tiny", tiny_data_dir)[0]
  mode = trainer.build_mode(config, info)
  assert isinstance(mode.model, causal_tcn.CausalTCN)
  assert isinstance(mode.teacher_model, c2f_tcn.C2FTCN)
  assert mode.teacher_model.conv_impl == "xla"
  assert mode.model.layer_dilations == (1, 2, 4, 8)
  assert np.isfinite(result["validation"]["f1@25"])
  logs = [
    line
    for line in open(os.path.join(workdir, "metrics.jsonl"))
    if '"head_mse"' in line
  ]
  assert logs  # the distillation loss was logged


def test_live_segmenter_from_workdir_matches_offline(student_dir):
  workdir, config, _ = student_dir
  segmenter = online.OnlineSegmenter.from_workdir(workdir)
  assert segmenter.chunk_size == config.data.chunk_size
  rng = np.random.default_rng(0)
  frames = rng.normal(size=(203, segmenter.feature_dim)).astype(np.float32)
  whole = online.RecordingForward(segmenter, bucket=64).step_probs(frames)
  assert whole.shape == (51, segmenter.num_classes)  # ceil(203 / 4) steps
  shown = segmenter.push_frames(frames)
  # Frame 4s + 3 shows step s, computed live.
  np.testing.assert_allclose(shown[3::4], whole[:50], atol=ONLINE_ATOL)
  np.testing.assert_allclose(shown[4:7], whole[[0, 0, 0]], atol=ONLINE_ATOL)


def test_offline_runs_and_adapter_modes_are_refused(
  teacher_dir, make_config, tiny_data_dir
):
  with pytest.raises(ValueError, match="live inference needs a 'causal_tcn'"):
    online.OnlineSegmenter.from_workdir(teacher_dir)
  info = datasets.open_dataset("synthetic_sync/tiny", tiny_data_dir)[0]
  config = causal_config(
    make_config, "distill_feature", teacher_workdir=teacher_dir
  )
  with pytest.raises(ValueError, match="cannot train config.model.name"):
    trainer.build_mode(config, info)
  config = ml_collections.ConfigDict(make_config("exo_supervised"))
  config.model.name = "lstm"
  with pytest.raises(ValueError, match="config.model.name='lstm' is unknown"):
    trainer.build_mode(config, info)


def test_a_causal_student_can_start_from_a_causal_run(
  student_dir, teacher_dir, tiny_data_dir, make_config
):
  """config.student_init_workdir: the student starts from that run's
  network (e.g. the causal exo-only run), recorded as a frozen part; a run
  of another network, or a student that starts from its teacher anyway,
  is refused in one line."""
  from exo2ego_jax.runtime import checkpoints

  workdir, config, _ = student_dir
  info = datasets.open_dataset("synthetic_sync/tiny", tiny_data_dir)[0]
  config = ml_collections.ConfigDict(config.to_dict())
  config.student_init_workdir = workdir
  mode = trainer.build_mode(config, info)
  loaded = {}
  frozen = trainer.load_frozen(config, info, mode, loaded)
  assert sorted(loaded) == ["student_init", "teacher"]
  params, batch_stats = mode.init_params(
    jax.random.key(0), frozen, info.feature_dim
  )
  _, trained = checkpoints.restore_state(workdir)
  for got, want in zip(
    jax.tree.leaves((params, batch_stats)),
    jax.tree.leaves((trained["params"], trained["batch_stats"])),
  ):
    np.testing.assert_array_equal(got, want)
  config.student_init_workdir = teacher_dir  # a C2F-TCN run
  with pytest.raises(ValueError) as error:
    trainer.load_frozen(config, info, mode, {})
  assert str(error.value) == (
    f"config.student_init_workdir={teacher_dir} holds another network than "
    "this run's student (config.model): give a run trained with the "
    "student's model config, e.g. the causal exo-only run of the study"
  )
  offline = make_config(
    "distill_model", teacher_workdir=teacher_dir, student_init_workdir=workdir
  )
  offline_mode = trainer.build_mode(offline, info)
  with pytest.raises(ValueError, match="starts from the teacher: leave it"):
    trainer.load_frozen(offline, info, offline_mode, {})
