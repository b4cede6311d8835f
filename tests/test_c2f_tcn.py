"""C2F-TCN: shapes for any length, padding invariance, the brief's channels."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from exo2ego_jax.models import c2f_tcn

NUM_CLASSES = 5


@pytest.fixture(scope="module")
def variables():
  model = c2f_tcn.C2FTCN(NUM_CLASSES)
  return model.init(jax.random.key(0), jnp.zeros((1, 8, 12)))


@pytest.mark.parametrize("length", [1, 2, 7, 63, 65, 383, 385, 600])
def test_any_length_gives_full_length_outputs(variables, length):
  model = c2f_tcn.C2FTCN(NUM_CLASSES)
  x = jax.random.normal(jax.random.key(1), (2, length, 12))
  out = model.apply(variables, x)
  full = c2f_tcn.padded_length(length)
  assert full % 64 == 0 and full >= max(length, 384)
  assert out["logits"].shape == (2, length, NUM_CLASSES)
  assert out["features"].shape == (2, length, 128)
  # y1..y5 live at 1/32 .. 1/2 of the padded length.
  assert [h.shape[1] for h in out["head_logits"]] == [
      full // 32, full // 16, full // 8, full // 4, full // 2]
  probs = c2f_tcn.ensemble_probs(out)
  assert probs.shape == (2, length, NUM_CLASSES)
  np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
  assert np.isfinite(np.asarray(probs)).all()


def test_layer_channels_match_the_design_table(variables):
  params = variables["params"]
  out_channels = {k: params[k]["conv1"]["kernel"].shape[-1]
                  for k in [f"x{i}" for i in range(1, 8)]}
  assert out_channels == {"x1": 256, "x2": 256, "x3": 256, "x4": 128,
                          "x5": 128, "x6": 128, "x7": 128}
  in_channels = {k: params[k]["conv0"]["kernel"].shape[1]
                 for k in [f"up{i}" for i in range(1, 7)]}
  # up with x6 (128 + TPP 132 = 260), x5 (256), x4 (256), x3, x2, x1 (384).
  assert in_channels == {"up1": 260, "up2": 256, "up3": 256, "up4": 384,
                         "up5": 384, "up6": 384}
  assert params["x1"]["conv0"]["kernel"].shape == (5, 12, 256)
  assert params["tpp"]["project"]["kernel"].shape == (1, 128, 1)
  for head in ("y1", "y2", "y3", "y4", "y5", "y"):
    assert params[head]["kernel"].shape == (1, 128, NUM_CLASSES)


def test_masked_frames_do_not_change_valid_outputs(variables):
  """A window padded with garbage under a zero mask predicts the same valid
  frames as the same window padded with zeros (same padded length)."""
  model = c2f_tcn.C2FTCN(NUM_CLASSES)
  x = jax.random.normal(jax.random.key(2), (1, 100, 12))
  mask = jnp.concatenate([jnp.ones((1, 70)), jnp.zeros((1, 30))], axis=1)
  garbage = x.at[:, 70:].set(1e3)
  clean = x.at[:, 70:].set(0.0)
  a = model.apply(variables, garbage, mask)["logits"][:, :70]
  b = model.apply(variables, clean, mask)["logits"][:, :70]
  np.testing.assert_allclose(a, b, atol=1e-5)


def test_batch_norm_statistics_ignore_padding():
  """In training mode the masked frames leave the BatchNorm statistics as if
  the padded frames were not there."""
  model = c2f_tcn.C2FTCN(NUM_CLASSES)
  x = jax.random.normal(jax.random.key(3), (1, 64, 12))
  variables = model.init(jax.random.key(0), x)
  padded = jnp.concatenate([x, 50.0 * jnp.ones((1, 64, 12))], axis=1)
  mask = jnp.concatenate([jnp.ones((1, 64)), jnp.zeros((1, 64))], axis=1)
  _, upd_a = model.apply(variables, x, train=True, mutable=["batch_stats"])
  _, upd_b = model.apply(variables, padded, mask, train=True,
                         mutable=["batch_stats"])
  a = upd_a["batch_stats"]["x1"]["bn0"]["mean"]
  b = upd_b["batch_stats"]["x1"]["bn0"]["mean"]
  np.testing.assert_allclose(a, b, atol=1e-5)


def test_upsample_linear_aligns_corners():
  x = jnp.array([0.0, 1.0, 4.0])[None, :, None]
  out = c2f_tcn.upsample_linear(x, 5)[0, :, 0]
  # positions 0, .5, 1, 1.5, 2 of the input
  np.testing.assert_allclose(out, [0.0, 0.5, 1.0, 2.5, 4.0])
  one = c2f_tcn.upsample_linear(jnp.ones((1, 1, 2)), 4)
  assert one.shape == (1, 4, 2)


def test_ensemble_weights_select_heads(variables):
  model = c2f_tcn.C2FTCN(NUM_CLASSES)
  out = model.apply(variables, jax.random.normal(jax.random.key(4),
                                                 (1, 50, 12)))
  only_final = c2f_tcn.ensemble_probs(out, (0, 0, 0, 0, 0, 1))
  np.testing.assert_allclose(only_final, jax.nn.softmax(out["logits"]),
                             atol=1e-6)
  with pytest.raises(ValueError, match="6 values"):
    c2f_tcn.ensemble_probs(out, (1.0, 1.0))
