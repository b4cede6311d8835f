"""Every registered method, generically: it builds from its config, trains
two finite steps, predicts probabilities; distillations are zero when the
student is the teacher. A new method is covered by registering it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from exo2ego_jax.data import datasets
from exo2ego_jax.methods import distillation
from exo2ego_jax.methods import pseudo_labels
from exo2ego_jax.methods import registry
from exo2ego_jax.training import trainer

BATCH, WINDOW = 2, 32
# Methods whose loss compares student and teacher outputs (not adapters).
DISTILLERS = registry.names(
  where=lambda m: (
    issubclass(m, distillation.Distillation) and not m.trains_adapter
  )
)


@pytest.fixture(scope="module")
def info(tiny_data_dir):
  return datasets.open_dataset("synthetic_sync/tiny", tiny_data_dir)[0]


def method_config(make_config, name: str):
  """A tiny config of method `name` that passes its checks."""
  config = make_config(
    name,
    teacher_workdir="teacher",
    adapter_workdir="adapter",
    **{"adapter.hidden_dim": 16, "adapter.window": 8},
  )
  if issubclass(registry.get(name), pseudo_labels.PseudoLabel):
    config.data.label_key = pseudo_labels.PSEUDO_LABEL_KEY
  return config


def frozen_for(method, feature_dim: int) -> dict:
  """A random teacher and adapter."""
  x, mask = jnp.zeros((1, 8, feature_dim)), jnp.ones((1, 8))
  frozen = {}
  if method.loads_teacher:
    frozen["teacher"] = method.model.init(jax.random.key(1), x, mask)
  if method.loads_adapter:
    frozen["adapter"] = method.adapter.init(jax.random.key(2), x, mask)[
      "params"
    ]
  return frozen


def random_batch(info, seed: int = 0) -> dict:
  rng = np.random.default_rng(seed)
  shape = (BATCH, WINDOW, info.feature_dim)
  mask = np.arange(WINDOW)[None] < np.array([[WINDOW], [WINDOW - 5]])
  return {
    "exo": rng.normal(size=shape).astype(np.float32),
    "ego": rng.normal(size=shape).astype(np.float32),
    "target": rng.normal(size=shape).astype(np.float32),
    "labels": rng.integers(
      0, info.num_classes, (BATCH, WINDOW), dtype=np.int32
    ),
    "mask": mask.astype(np.float32),
    "target_mask": np.ones((BATCH, WINDOW), np.float32),
  }


def test_registry_lists_filters_and_refuses_unknown_or_twice_used_names():
  assert "exo_supervised" in registry.names()
  assert set(registry.names(where=lambda m: m.loads_teacher)) < set(
    registry.names()
  )
  assert registry.get("distill_model").name == "distill_model"
  with pytest.raises(
    ValueError,
    match="config.mode='nope' is unknown: use "
    "one of exo_supervised, ego_oracle, ",
  ):
    registry.get("nope")
  with pytest.raises(ValueError, match="'distill_model' is registered twice"):
    registry.register("distill_model")(type("Copy", (), {}))
  assert registry.get("distill_model").__name__ == "DistillModel"


def test_every_teacher_method_is_a_supervised_one_that_reads_labels():
  for name in registry.names(where=lambda m: m.is_teacher):
    method = registry.get(name)
    assert method.reads_labels and not method.loads_teacher, name


@pytest.mark.parametrize("name", registry.names())
def test_every_method_trains_two_finite_steps_and_predicts(
  name, info, make_config
):
  config = method_config(make_config, name)
  method = trainer.build_mode(config, info)
  assert method.name == name and method.train_view in method.input_views
  frozen = frozen_for(method, info.feature_dim)
  optimizer = trainer.make_optimizer(config)
  state = trainer.init_state(
    method, frozen, optimizer, info.feature_dim, config.seed
  )
  initial = jax.tree.leaves(state["params"])
  train_step = jax.jit(
    trainer.make_train_step(method.for_run_length(2), optimizer)
  )
  batch = random_batch(info)
  for _ in range(2):
    state, logs = train_step(state, batch)
    assert np.isfinite(float(logs["loss"])), (name, logs)
  assert int(state["step"]) == 2
  assert any(
    not np.array_equal(a, b)
    for a, b in zip(initial, jax.tree.leaves(state["params"]))
  )
  # Not compiled: op by op, the ops are shared by every method's model.
  probs = np.asarray(
    method.predict_probs(state, batch[method.train_view], batch["mask"])
  )
  assert probs.shape == (BATCH, WINDOW, info.num_classes)
  np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
  if method.loads_teacher:  # the frozen parts are never updated
    for a, b in zip(jax.tree.leaves(state["frozen"]), jax.tree.leaves(frozen)):
      np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", DISTILLERS)
def test_distillation_vanishes_when_the_student_is_the_teacher(
  name, info, make_config
):
  method = trainer.build_mode(method_config(make_config, name), info)
  teacher = frozen_for(method, info.feature_dim)["teacher"]
  batch = random_batch(info)
  mask = batch["mask"]
  apply = jax.jit(lambda x: method.model.apply(teacher, x, mask, train=False))
  outputs = apply(batch["exo"])
  same, _ = method.head_loss(outputs, outputs, mask)
  assert abs(float(same)) < 1e-6
  other, _ = method.head_loss(apply(batch["ego"]), outputs, mask)
  assert float(other) > 1e-3
