"""Losses: hand-computed values and masking."""

import jax
import jax.numpy as jnp
import numpy as np

from exo2ego_jax.training import losses


def test_cross_entropy_ignores_masked_and_ignore_label():
  probs = jnp.array([[[0.5, 0.5], [0.9, 0.1], [0.2, 0.8], [0.3, 0.7]]])
  labels = jnp.array([[0, 0, -100, 1]])
  mask = jnp.array([[1.0, 1.0, 1.0, 0.0]])
  # Only frames 0 and 1 count: -(log .5 + log .9) / 2.
  expected = -(np.log(0.5) + np.log(0.9)) / 2
  np.testing.assert_allclose(
    losses.cross_entropy(probs, labels, mask), expected, rtol=1e-6
  )


def test_smoothing_is_truncated_and_masked():
  # Two classes; log-prob jump of log(1e-10 + 1) - log(1e-10 + 1e-4) per pair.
  probs = jnp.array(
    [[[1.0, 0.0], [1e-4, 1 - 1e-4], [1e-4, 1 - 1e-4], [0.5, 0.5]]]
  )
  mask = jnp.array([[1.0, 1.0, 1.0, 0.0]])
  logp = np.log(np.asarray(probs) + 1e-10)
  sq = np.clip((logp[0, 1:] - logp[0, :-1]) ** 2, 0, 16).mean(-1)
  expected = sq[:2].mean()  # the pair (2, 3) touches a masked frame
  np.testing.assert_allclose(losses.smoothing(probs, mask), expected, rtol=1e-5)
  assert sq[0] == 16.0  # both classes jump by more than 4 nats: clamped


def test_smoothing_gradient_only_flows_to_the_later_frame():
  probs = jnp.array([[[0.6, 0.4], [0.3, 0.7]]])
  mask = jnp.ones((1, 2))
  grad = jax.grad(lambda p: losses.smoothing(p, mask))(probs)
  assert np.all(np.asarray(grad[0, 0]) == 0)
  assert np.any(np.asarray(grad[0, 1]) != 0)


def test_supervised_loss_combines_terms_with_weight():
  probs = jax.nn.softmax(jax.random.normal(jax.random.key(0), (2, 9, 4)))
  labels = jnp.array([[0, 1, 2, 3, 0, 1, 2, 3, 0]] * 2)
  mask = jnp.ones((2, 9)).at[1, 5:].set(0)
  total, parts = losses.supervised_loss(probs, labels, mask, 0.17)
  np.testing.assert_allclose(
    total, parts["ce"] + 0.17 * parts["smooth"], rtol=1e-6
  )


def test_padding_does_not_change_losses():
  key = jax.random.key(1)
  probs = jax.nn.softmax(jax.random.normal(key, (1, 6, 3)))
  labels = jnp.array([[0, 1, 2, 2, 1, 0]])
  padded_probs = jnp.concatenate([probs, jnp.full((1, 4, 3), 1 / 3)], axis=1)
  padded_labels = jnp.concatenate([labels, jnp.full((1, 4), 2)], axis=1)
  mask = jnp.concatenate([jnp.ones((1, 6)), jnp.zeros((1, 4))], axis=1)
  a, _ = losses.supervised_loss(probs, labels, jnp.ones((1, 6)))
  b, _ = losses.supervised_loss(padded_probs, padded_labels, mask)
  np.testing.assert_allclose(a, b, rtol=1e-6)


def test_head_distillation_weights_and_masks():
  s = [jnp.ones((1, 4, 2)), jnp.zeros((1, 2, 2))]
  t = [jnp.zeros((1, 4, 2)), jnp.full((1, 2, 2), 2.0)]
  m = [jnp.array([[1.0, 1.0, 0.0, 0.0]]), jnp.ones((1, 2))]
  # head 0: mse 1 on valid frames; head 1: mse 4.
  np.testing.assert_allclose(
    losses.head_distillation(s, t, m, (1.0, 0.5)), 1.0 + 0.5 * 4.0
  )
  grad = jax.grad(lambda tt: losses.head_distillation(s, tt, m, (1.0, 1.0)))(t)
  assert all(np.all(np.asarray(g) == 0) for g in grad)  # teacher gets none
