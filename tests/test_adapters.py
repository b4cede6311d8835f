"""Feature adapters: identity at init, attention really mixes frames in its
window (and only there), the MLP adapter is per frame."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from exo2ego_jax.models import adapters


def _perturbation_effect(adapter, params, length=40, frame=20):
  """|output change| per frame when one input frame changes."""
  x = jax.random.normal(jax.random.key(0), (1, length, 6))
  mask = jnp.ones((1, length))
  base = adapter.apply({"params": params}, x, mask)
  moved = adapter.apply({"params": params}, x.at[0, frame].add(3.0), mask)
  return np.abs(np.asarray(moved - base))[0].sum(-1)


def _randomize_output(params, key):
  """The zero-initialised output layer hides all dependencies: fill it."""
  out = dict(params)
  out["out"] = jax.tree.map(
    lambda p: jax.random.normal(key, p.shape), params["out"]
  )
  return out


def test_untrained_adapters_are_identity():
  x = jax.random.normal(jax.random.key(1), (2, 30, 6))
  mask = jnp.ones((2, 30)).at[1, 20:].set(0)
  for adapter in (
    adapters.make_adapter("attention", hidden_dim=16, window=8),
    adapters.make_adapter("mlp", hidden_dim=16),
  ):
    params = adapter.init(jax.random.key(0), x, mask)["params"]
    np.testing.assert_allclose(
      adapter.apply({"params": params}, x, mask), x * mask[..., None], atol=1e-6
    )


def test_attention_adapter_attends_across_time_within_its_window():
  adapter = adapters.make_adapter(
    "attention", hidden_dim=16, num_heads=2, window=8
  )
  x = jnp.zeros((1, 40, 6))
  params = adapter.init(jax.random.key(0), x, jnp.ones((1, 40)))["params"]
  params = _randomize_output(params, jax.random.key(2))
  effect = _perturbation_effect(adapter, params)
  # Two layers of |i-j| <= 4 attention: frames within 8 of frame 20 react.
  assert all(effect[f] > 1e-4 for f in (12, 16, 19, 21, 24, 28))
  assert np.all(effect[:12] < 1e-6) and np.all(effect[29:] < 1e-6)


def test_mlp_adapter_is_per_frame():
  adapter = adapters.make_adapter("mlp", hidden_dim=16)
  x = jnp.zeros((1, 40, 6))
  params = adapter.init(jax.random.key(0), x, jnp.ones((1, 40)))["params"]
  params = _randomize_output(params, jax.random.key(3))
  effect = _perturbation_effect(adapter, params)
  assert effect[20] > 1e-4
  assert np.all(np.delete(effect, 20) == 0)


def test_padded_frames_are_not_attended():
  adapter = adapters.make_adapter("attention", hidden_dim=16, window=64)
  x = jax.random.normal(jax.random.key(4), (1, 30, 6))
  mask = jnp.ones((1, 30)).at[0, 20:].set(0)
  params = adapter.init(jax.random.key(0), x, mask)["params"]
  params = _randomize_output(params, jax.random.key(5))
  a = adapter.apply({"params": params}, x, mask)
  b = adapter.apply({"params": params}, x.at[0, 20:].set(100.0), mask)
  np.testing.assert_allclose(a[0, :20], b[0, :20], atol=1e-5)


def test_unknown_adapter_kind():
  with pytest.raises(ValueError, match="'attention' or 'mlp'"):
    adapters.make_adapter("lstm")
