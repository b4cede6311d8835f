"""C2F-TCN: equal to the published model at every length it accepts, a
defined rule below 384 frames, batching that changes nothing, the brief's
channels, BatchNorm as PyTorch's, and unchanged numbers where the old
padded implementation was already right."""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from exo2ego_jax.interop import c2f
from exo2ego_jax.models import c2f_tcn

torch = pytest.importorskip("torch")
import c2f_reference  # pylint: disable=wrong-import-position

FEATURES, CLASSES = 8, 5
# The shortest accepted, the paper's window (600), odd lengths at several
# levels, multiples of 64 and a long recording. (Random lengths are in the
# batching tests, which compare with the published model too.)
LENGTHS = [384, 437, 600, 601, 640, 1000, 2731]
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


@pytest.fixture(scope="module")
def reference():
  return c2f_reference.build(FEATURES, CLASSES, seed=3)


@pytest.fixture(scope="module")
def variables(reference):
  return c2f.convert_c2f_tcn(c2f_reference.state_dict(reference))


@jax.jit
def _jitted_forward(variables, x, mask):
  out = c2f_tcn.C2FTCN(CLASSES).apply(variables, x, mask)
  return dict(out, ensemble=c2f_tcn.ensemble_probs(out))


def _forward(variables, x, mask) -> dict:
  """Eval-mode outputs as numpy arrays (slicing those compiles nothing)."""
  return jax.tree.map(np.asarray, _jitted_forward(variables, x, mask))


def _assert_close(got, want, what, tolerance=1e-5):
  """Equal to `tolerance` of the output's scale (float32 rounding)."""
  scale = float(np.abs(want).max())
  assert scale > 1e-2, what  # far above the tolerance
  np.testing.assert_allclose(
    got, want, rtol=0, atol=tolerance * scale, err_msg=what
  )


def _inputs(lengths, size, seed):
  """(B, size, D) features with garbage past each length, and the mask."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(len(lengths), size, FEATURES)).astype(np.float32)
  mask = np.arange(size)[None] < np.array(lengths)[:, None]
  x[~mask] = 1e3  # must not matter
  return x, mask.astype(np.float32)


def _reference_outputs(reference, window):
  """The published model on one window; below 384 frames, on the window
  zero-padded to 384 frames with the padding masked (the documented rule)."""
  length = len(window)
  if length >= c2f_tcn.MIN_LENGTH:
    return c2f_reference.outputs(reference, window[None])
  padded = np.zeros((c2f_tcn.MIN_LENGTH, FEATURES), np.float32)
  padded[:length] = window
  return c2f_reference.outputs(reference, padded[None], valid=length)


@pytest.mark.parametrize("length", LENGTHS)
def test_matches_the_published_model_at_every_length(
  reference, variables, length
):
  x, mask = _inputs([length], length, seed=length)
  ours = _forward(variables, x, mask)
  want = c2f_reference.outputs(reference, x)
  for key in ("logits", "features", "ensemble"):
    _assert_close(ours[key], want[key], key)
  # Heads at the floor lengths: 600 -> 18, 37, 75, 150, 300.
  assert [h.shape[1] for h in ours["head_logits"]] == [
    length >> k for k in range(5, 0, -1)
  ]
  for name, got, head in zip(
    c2f_tcn.HEAD_NAMES, ours["head_logits"], want["head_logits"]
  ):
    _assert_close(got, head, name)
  for got in ours["head_masks"]:
    np.testing.assert_array_equal(got, 1.0)


def test_short_windows_run_as_if_zero_padded_to_384_and_masked(
  reference, variables
):
  lengths = [1, 5, 63, 64, 100, 383]
  x, mask = _inputs(lengths, 383, seed=1)
  ours = _forward(variables, x, mask)
  assert ours["logits"].shape == (6, 383, CLASSES)
  assert [h.shape[1] for h in ours["head_logits"]] == [12, 24, 48, 96, 192]
  for b, length in enumerate(lengths):
    want = _reference_outputs(reference, x[b, :length])
    for key in ("logits", "features", "ensemble"):
      _assert_close(
        ours[key][b, :length], want[key][0, :length], f"{key} at L={length}"
      )
    for k, (got, head) in enumerate(
      zip(ours["head_logits"], want["head_logits"])
    ):
      _assert_close(got[b], head[0], f"y{k + 1} at L={length}")
      # Valid head steps: those that see a real frame, ceil(L / 2^level).
      level = 5 - k
      np.testing.assert_array_equal(
        ours["head_masks"][k][b],
        np.arange(384 >> level) < -(-length // 2**level),
      )


def test_batching_changes_nothing_in_eval_mode(reference, variables):
  """Windows of many lengths padded into one batch (garbage in the padding)
  give on their valid frames what each gives alone, unpadded."""
  drawn = np.random.default_rng(14).integers(1, 700, 4)
  lengths = [700, 601, 600, 437, 384, 383, 200, 37] + list(drawn) + [0]
  x, mask = _inputs(lengths, 700, seed=2)
  ours = _forward(variables, x, mask)
  for b, length in enumerate(lengths[:-1]):
    want = _reference_outputs(reference, x[b, :length])
    for key in ("logits", "features", "ensemble"):
      _assert_close(
        ours[key][b, :length], want[key][0, :length], f"{key} at L={length}"
      )
    for k, (got, head) in enumerate(
      zip(ours["head_logits"], want["head_logits"])
    ):
      valid = int(ours["head_masks"][k][b].sum())
      assert valid == min(-(-length // 2 ** (5 - k)), head.shape[1])
      _assert_close(got[b, :valid], head[0, :valid], f"y{k + 1} at L={length}")
  # An all-padding row (L = 0) stays finite and masked out.
  assert np.isfinite(np.asarray(ours["ensemble"])).all()
  assert all(float(m[-1].sum()) == 0 for m in ours["head_masks"])


def test_batching_changes_nothing_in_training_mode(variables):
  """In training mode, BatchNorm's statistics come from valid steps only: the
  same windows padded to another batch length, with other garbage and in
  another order, give the same valid outputs and running statistics (to
  1e-4: batch statistics over the few coarse steps amplify the rounding of
  sums taken in another order)."""
  lengths = [600, 437, 383, 37]
  x, mask = _inputs(lengths, 600, seed=4)
  order = [2, 0, 3, 1]
  wide = np.full((4, 777, FEATURES), -5e2, np.float32)
  wide[:, :600] = np.where(mask[..., None] > 0, x, 7.0)
  wide, wide_mask = wide[order], np.pad(mask, ((0, 0), (0, 177)))[order]

  @jax.jit
  def train(x, mask):
    return c2f_tcn.C2FTCN(CLASSES).apply(
      variables, x, mask, train=True, mutable=["batch_stats"]
    )

  (out, stats), (wide_out, wide_stats) = jax.tree.map(
    np.asarray, (train(x, mask), train(wide, wide_mask))
  )
  for b, length in enumerate(lengths):
    w = order.index(b)
    _assert_close(
      wide_out["logits"][w, :length],
      out["logits"][b, :length],
      f"logits at L={length}",
      1e-4,
    )
    for k, (got, want) in enumerate(
      zip(wide_out["head_logits"], out["head_logits"])
    ):
      valid = int(out["head_masks"][k][b].sum())
      _assert_close(
        got[w, :valid], want[b, :valid], f"y{k + 1} at L={length}", 1e-4
      )
  jax.tree.map(
    lambda a, b: _assert_close(a, b, "running statistics", 1e-4),
    wide_stats,
    stats,
  )
  # And the statistics did move away from the (trained-like) old ones.
  moved = jax.tree.map(
    lambda a, b: float(np.abs(a - b).max()),
    stats["batch_stats"],
    variables["batch_stats"],
  )
  assert min(jax.tree.leaves(moved)) > 1e-4


def test_a_short_training_window_has_finite_compiled_gradients(variables):
  """Regression: an 8-frame window (the last consecutive window of a
  recording) once got gradients of 1e26 under jit: steps past the window
  that BatchNorm normalised by the statistics of its single real step."""
  x, mask = _inputs([8], 64, seed=8)
  labels = np.zeros((1, 64), np.int32)

  def loss(params):
    out = c2f_tcn.C2FTCN(CLASSES).apply(
      dict(variables, params=params),
      x,
      mask,
      train=True,
      mutable=["batch_stats"],
    )[0]
    probs = c2f_tcn.ensemble_probs(out)
    picked = jnp.take_along_axis(
      jnp.log(probs + 1e-10), labels[..., None], axis=-1
    )[..., 0]
    return -jnp.sum(picked * mask) / jnp.sum(mask)

  eager = jax.grad(loss)(variables["params"])
  compiled = jax.jit(jax.grad(loss))(variables["params"])
  norms = [float(jnp.linalg.norm(g)) for g in jax.tree.leaves(compiled)]
  assert np.isfinite(norms).all()
  # Compiled and eager differ by float32 reassociation and the max-pool
  # near-ties it flips (measured 1.3%), not by orders of magnitude.
  difference = optax.tree.norm(jax.tree.map(jnp.subtract, compiled, eager))
  assert float(difference) <= 0.1 * float(optax.tree.norm(eager))


@pytest.mark.parametrize("unbiased", [True, False])
def test_batch_norm_running_statistics_follow_pytorch(unbiased):
  """One training step of BatchNorm on n valid steps of a padded batch:
  outputs as torch.nn.BatchNorm1d's on the n steps; running variance updated
  with the unbiased estimate (n / (n - 1)) as PyTorch's, or the biased one."""
  rng = np.random.default_rng(5)
  lengths, size, channels = [40, 7, 1], 50, 6
  x = rng.normal(2.0, 3.0, size=(3, size, channels)).astype(np.float32)
  mask = np.arange(size)[None] < np.array(lengths)[:, None]
  x[~mask] = 1e3
  valid = np.concatenate([x[b, :n] for b, n in enumerate(lengths)])  # (n, C)
  n = len(valid)
  variables = {
    "params": {
      "scale": rng.uniform(0.5, 1.5, channels).astype(np.float32),
      "bias": rng.normal(size=channels).astype(np.float32),
    },
    "batch_stats": {
      "mean": rng.normal(size=channels).astype(np.float32),
      "var": rng.uniform(0.5, 1.5, channels).astype(np.float32),
    },
  }
  out, updated = c2f_tcn.BatchNorm(unbiased_var=unbiased).apply(
    variables,
    jnp.asarray(x),
    jnp.asarray(mask, jnp.float32),
    True,
    mutable=["batch_stats"],
  )

  norm = torch.nn.BatchNorm1d(channels)
  with torch.no_grad():
    norm.weight.copy_(torch.from_numpy(variables["params"]["scale"]))
    norm.bias.copy_(torch.from_numpy(variables["params"]["bias"]))
    norm.running_mean.copy_(torch.from_numpy(variables["batch_stats"]["mean"]))
    norm.running_var.copy_(torch.from_numpy(variables["batch_stats"]["var"]))
    want = norm.train()(torch.from_numpy(valid.T[None])).numpy()[0].T
  got = np.concatenate([np.asarray(out)[b, :n] for b, n in enumerate(lengths)])
  _assert_close(got, want, "normalised steps")
  stats = updated["batch_stats"]
  np.testing.assert_allclose(
    stats["mean"], norm.running_mean.numpy(), rtol=1e-5, atol=1e-6
  )
  if unbiased:
    np.testing.assert_allclose(
      stats["var"], norm.running_var.numpy(), rtol=1e-5
    )
  else:
    biased = 0.9 * variables["batch_stats"]["var"] + 0.1 * valid.var(0)
    np.testing.assert_allclose(stats["var"], biased, rtol=1e-5)
    # PyTorch's own differs by exactly the n / (n - 1) factor.
    torch_update = (
      norm.running_var.numpy() - 0.9 * variables["batch_stats"]["var"]
    )
    np.testing.assert_allclose(
      torch_update, 0.1 * valid.var(0) * n / (n - 1), rtol=1e-4
    )


def test_unbiased_variance_option_trains_like_pytorch(reference, variables):
  """A training step of the whole model with bn_unbiased_var: every running
  statistic as the published model's after the same step."""
  x, mask = _inputs([437, 437], 437, seed=6)
  _, updated = jax.jit(
    functools.partial(
      c2f_tcn.C2FTCN(CLASSES, bn_unbiased_var=True).apply,
      train=True,
      mutable=["batch_stats"],
    )
  )(variables, x, mask)
  trained = c2f_reference.build(FEATURES, CLASSES, seed=3).train()
  with torch.no_grad():
    trained(torch.from_numpy(x.transpose(0, 2, 1)))
  want = c2f.convert_c2f_tcn(c2f_reference.state_dict(trained))["batch_stats"]
  jax.tree.map(
    lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
    updated["batch_stats"],
    want,
  )


def _regression_case(length):
  """Variables and a (1, length, 6) input drawn with numpy only (stable
  across JAX versions), for `c2f_tcn_before_floor_lengths.npz`."""
  rng = np.random.default_rng(length)
  model = c2f_tcn.C2FTCN(4)
  shapes = jax.eval_shape(
    lambda: model.init(jax.random.key(0), jnp.zeros((1, 8, 6)))
  )

  def draw(path, leaf):
    name = jax.tree_util.keystr(path)
    if "kernel" in name:
      return rng.normal(size=leaf.shape) / np.sqrt(
        leaf.shape[0] * leaf.shape[1]
      )
    if "scale" in name or "'var'" in name:
      return rng.uniform(0.5, 1.5, leaf.shape)
    return rng.normal(size=leaf.shape) * 0.1

  variables = jax.tree_util.tree_map_with_path(
    lambda p, leaf: draw(p, leaf).astype(np.float32), shapes
  )
  return model, variables, rng.normal(size=(1, length, 6)).astype(np.float32)


@pytest.mark.parametrize("length", [384, 448])
def test_multiples_of_64_predict_what_they_did_before(length):
  """The outputs the padded implementation (commit a129ecb) saved for these
  inputs: where it was already the published model, nothing moved."""
  saved = np.load(os.path.join(DATA, "c2f_tcn_before_floor_lengths.npz"))
  model, variables, x = _regression_case(length)

  @jax.jit
  def outputs(variables, x):
    out = model.apply(variables, x)
    got = {
      "logits": out["logits"],
      "features": out["features"][..., :8],
      "ensemble": c2f_tcn.ensemble_probs(out),
    }
    got.update({f"y{k + 1}": h for k, h in enumerate(out["head_logits"])})
    return got

  got = outputs(variables, x)
  for key, value in got.items():
    _assert_close(value, saved[f"{key}_{length}"], key)


def test_interpolate_is_pytorchs_aligned_corners_resampling():
  """Per example: the first n steps resampled to m = n * factor + r steps as
  F.interpolate(mode="linear", align_corners=True), zeros after."""
  rng = np.random.default_rng(7)
  for factor in (2, 3, 5, 6, 32):
    out_lengths = np.array(
      [factor, 2 * factor - 1, 2 * factor, 37 * factor + factor - 1, 2731, 0]
    )
    in_lengths = out_lengths // factor
    in_size = int(in_lengths.max()) + 3
    out_size = (in_size + 1) * factor
    x = rng.normal(size=(len(out_lengths), in_size, 4)).astype(np.float32)
    got = np.asarray(
      jax.jit(c2f_tcn.interpolate, static_argnums=(3, 4))(
        x, in_lengths, out_lengths, factor, out_size
      )
    )
    for b, (n, m) in enumerate(zip(in_lengths, out_lengths)):
      want = np.zeros((out_size, 4), np.float32)
      if n:
        with torch.no_grad():
          want[:m] = (
            torch.nn.functional.interpolate(
              torch.from_numpy(x[b, :n].T[None]),
              size=int(m),
              mode="linear",
              align_corners=True,
            )
            .numpy()[0]
            .T
          )
      np.testing.assert_allclose(
        got[b], want, rtol=0, atol=1e-5, err_msg=f"factor {factor}, {n} -> {m}"
      )


def test_layer_channels_match_the_design_table():
  variables = jax.eval_shape(
    lambda: c2f_tcn.C2FTCN(CLASSES).init(
      jax.random.key(0), jnp.zeros((1, 8, 12))
    )
  )
  params = variables["params"]
  out_channels = {
    k: params[k]["conv1"]["kernel"].shape[-1]
    for k in [f"x{i}" for i in range(1, 8)]
  }
  assert out_channels == {
    "x1": 256,
    "x2": 256,
    "x3": 256,
    "x4": 128,
    "x5": 128,
    "x6": 128,
    "x7": 128,
  }
  in_channels = {
    k: params[k]["conv0"]["kernel"].shape[1]
    for k in [f"up{i}" for i in range(1, 7)]
  }
  # up with x6 (128 + TPP 132 = 260), x5 (256), x4 (256), x3, x2, x1 (384).
  assert in_channels == {
    "up1": 260,
    "up2": 256,
    "up3": 256,
    "up4": 384,
    "up5": 384,
    "up6": 384,
  }
  assert params["x1"]["conv0"]["kernel"].shape == (5, 12, 256)
  assert params["tpp"]["project"]["kernel"].shape == (1, 128, 1)
  for head in ("y1", "y2", "y3", "y4", "y5", "y"):
    assert params[head]["kernel"].shape == (1, 128, CLASSES)
  # BatchNorm keeps flax's variable names (old checkpoints load).
  assert set(params["x1"]["bn0"]) == {"scale", "bias"}
  assert set(variables["batch_stats"]["up6"]["bn1"]) == {"mean", "var"}


def test_ensemble_weights_select_heads(variables):
  x, mask = _inputs([50], 50, seed=8)

  @jax.jit
  def probs(x, mask):
    out = c2f_tcn.C2FTCN(CLASSES).apply(variables, x, mask)
    return (
      jax.nn.softmax(out["logits"]),
      c2f_tcn.ensemble_probs(out),
      c2f_tcn.ensemble_probs(out, (0, 0, 0, 0, 0, 1)),
    )

  final, uniform, only_final = probs(x, mask)
  np.testing.assert_allclose(only_final, final, atol=1e-6)
  np.testing.assert_allclose(uniform.sum(-1), 1.0, rtol=1e-5)
  assert np.abs(uniform - final).max() > 1e-2  # the other heads count
  with pytest.raises(ValueError, match="6 values"):
    c2f_tcn.ensemble_probs({}, (1.0, 1.0))
