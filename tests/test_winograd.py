"""Winograd minimal-filtering convolution: exact transforms, parity with
XLA's convolution (values and gradients), and C2F-TCN with conv_impl
"winograd" being the same model as with "xla"."""

import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from exo2ego_jax.data import datasets
from exo2ego_jax.training import trainer
from exo2ego_jax.models import c2f_tcn
from exo2ego_jax.models import winograd


def _correlate_same(d, g):
  """Reference 'SAME' cross-correlation along axis 0, float64 numpy."""
  taps = len(g)
  before = (taps - 1) // 2
  padded = np.pad(d, (before, taps - 1 - before))
  return np.array([padded[i : i + taps] @ g for i in range(len(d))])


@pytest.mark.parametrize(
  "tile,taps", [(1, 1), (2, 3), (4, 3), (2, 5), (4, 5), (6, 5), (3, 2)]
)
def test_transforms_compute_the_tile_correlation_exactly(tile, taps):
  a_t, g_mat, b_t = winograd.transforms(tile, taps)
  n = tile + taps - 1
  assert a_t.shape == (tile, n) and g_mat.shape == (n, taps)
  assert b_t.shape == (n, n)
  rng = np.random.default_rng(tile * 10 + taps)
  for _ in range(5):  # small integers: every step is exact in float64
    d = rng.integers(-4, 5, n).astype(np.float64)
    g = rng.integers(-4, 5, taps).astype(np.float64)
    want = [d[i : i + taps] @ g for i in range(tile)]
    np.testing.assert_allclose(
      a_t @ ((g_mat @ g) * (b_t @ d)), want, rtol=0, atol=1e-9
    )


def test_transforms_refuse_impossible_tiles():
  with pytest.raises(ValueError, match="use a smaller tile"):
    winograd.transforms(12, 5)
  with pytest.raises(ValueError, match="must be >= 1"):
    winograd.transforms(0, 5)


@pytest.mark.parametrize("length", [1, 3, 4, 7, 64, 101])
@pytest.mark.parametrize("taps,tile", [(5, 4), (5, 2), (3, 4), (4, 3)])
def test_conv1d_matches_xla_convolution(length, taps, tile):
  rng = np.random.default_rng(length + 7 * taps + tile)
  x = jnp.asarray(rng.normal(size=(2, length, 6)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(taps, 6, 5)), jnp.float32)
  bias = jnp.asarray(rng.normal(size=(5,)), jnp.float32)
  want = nn.Conv(5, (taps,), padding="SAME").apply(
    {"params": {"kernel": kernel, "bias": bias}}, x
  )
  got = winograd.conv1d(x, kernel, bias, tile)
  assert got.shape == want.shape == (2, length, 5)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  # And against a float64 reference, one channel pair at a time.
  reference = _correlate_same(
    np.float64(x[1, :, 2]), np.float64(kernel[:, 2, 3])
  )
  only_pair = winograd.conv1d(x[1:, :, 2:3], kernel[:, 2:3, 3:4], None, tile)
  np.testing.assert_allclose(
    only_pair[0, :, 0], reference, rtol=1e-5, atol=1e-5
  )


def test_conv1d_gradients_match_xla_convolution():
  rng = np.random.default_rng(3)
  x = jnp.asarray(rng.normal(size=(3, 50, 16)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(5, 16, 8)) * 0.1, jnp.float32)
  target = jnp.asarray(rng.normal(size=(3, 50, 8)), jnp.float32)

  def loss(conv, x, kernel):
    return jnp.sum((conv(x, kernel) - target) ** 2)

  xla = lambda x, k: jax.lax.conv_general_dilated(
    x, k, (1,), "SAME", dimension_numbers=("NWC", "WIO", "NWC")
  )
  want = jax.grad(lambda x, k: loss(xla, x, k), argnums=(0, 1))(x, kernel)
  got = jax.grad(lambda x, k: loss(winograd.conv1d, x, k), argnums=(0, 1))(
    x, kernel
  )
  for g, w in zip(got, want):
    assert float(jnp.abs(w).max()) > 1.0  # a gradient worth comparing
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)


def test_conv1d_executes_fewer_flops_than_the_direct_convolution():
  """What minimal filtering is for, as XLA counts it (the number
  benchmarks/step_throughput.py reports as executed GFLOP/step)."""
  x = jnp.zeros((2, 256, 64), jnp.float32)
  kernel = jnp.zeros((5, 64, 64), jnp.float32)
  xla = lambda x, k: jax.lax.conv_general_dilated(
    x, k, (1,), "SAME", dimension_numbers=("NWC", "WIO", "NWC")
  )

  def flops(conv):
    cost = jax.jit(conv).lower(x, kernel).compile().cost_analysis()
    if isinstance(cost, (list, tuple)):  # older JAX: one dict per program
      cost = cost[0]
    return float(cost["flops"])

  direct, minimal = flops(xla), flops(winograd.conv1d)
  # 2 x the direct convolution's multiply-adds, less the zero-padded edges.
  macs = 2 * 256 * 64 * 64 * 5
  assert 0.95 * 2 * macs <= direct <= 2 * macs
  assert minimal < 0.75 * direct


def test_conv1d_says_what_shape_it_wants():
  with pytest.raises(ValueError, match=r"\(batch, time, 6\).*got \(2, 10, 4\)"):
    winograd.conv1d(jnp.zeros((2, 10, 4)), jnp.zeros((5, 6, 3)))


def test_winograd_c2f_tcn_is_the_same_model():
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 450, 24)), jnp.float32)
  mask = jnp.asarray(
    np.arange(450)[None] < np.array([[450], [301]]), jnp.float32
  )
  xla_model = c2f_tcn.C2FTCN(7)
  wino_model = c2f_tcn.C2FTCN(7, conv_impl="winograd")
  variables = xla_model.init(jax.random.key(0), x, mask)
  # Same parameter tree and the same initial values from the same key.
  jax.tree.map(
    np.testing.assert_array_equal,
    variables,
    wino_model.init(jax.random.key(0), x, mask),
  )

  want = xla_model.apply(variables, x, mask)
  got = wino_model.apply(variables, x, mask)
  for key in ("logits", "features"):
    np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=1e-5)
  for g, w in zip(got["head_logits"], want["head_logits"]):
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def test_winograd_c2f_tcn_has_the_same_gradients_in_float64():
  """In float64 the two implementations agree to rounding, BatchNorm in
  training mode included. (In float32 a few max-pool windows whose two
  largest values differ by less than float32 rounding can pick the other
  frame, which moves those frames' gradients; the training test below
  shows that does not change training.)"""
  rng = np.random.default_rng(1)
  with jax.enable_x64(True):
    x = jnp.asarray(rng.normal(size=(2, 450, 24)))
    mask = jnp.asarray(
      np.arange(450)[None] < np.array([[450], [301]]), jnp.float64
    )
    variables = jax.tree.map(
      lambda a: jnp.asarray(a, jnp.float64),
      jax.jit(c2f_tcn.C2FTCN(7).init)(jax.random.key(0), x, mask),
    )

    def grads(conv_impl):
      model = c2f_tcn.C2FTCN(7, conv_impl=conv_impl)

      def loss(params):
        out, _ = model.apply(
          {**variables, "params": params},
          x,
          mask,
          train=True,
          mutable=["batch_stats"],
        )
        return jnp.mean(out["logits"] ** 2)

      return jax.jit(jax.grad(loss))(variables["params"])

    want, got = grads("xla"), grads("winograd")
    scale = max(float(jnp.abs(w).max()) for w in jax.tree.leaves(want))
    assert scale > 1e-3
    jax.tree.map(
      lambda g, w: np.testing.assert_allclose(g, w, rtol=0, atol=1e-10 * scale),
      got,
      want,
    )


def test_unknown_conv_impl_is_refused(make_config, tiny_data_dir):
  with pytest.raises(ValueError, match="conv_impl='fft' is unknown"):
    c2f_tcn.C2FTCN(3, conv_impl="fft").init(
      jax.random.key(0), jnp.zeros((1, 8, 4))
    )
  info, _ = datasets.open_dataset("synthetic_sync/tiny", tiny_data_dir)
  with pytest.raises(
    ValueError,
    match=r"config.model.conv_impl='fft' is "
    r"unknown: use one of xla, winograd",
  ):
    trainer.build_mode(make_config(**{"model.conv_impl": "fft"}), info)


def test_training_with_winograd_follows_the_xla_run(
  tmp_path, make_config, teacher_dir
):
  """The tiny exo run (the session's teacher, 4 epochs: its XLA run) trained
  again with winograd: the same losses, up to float32 drift."""
  winograd = str(tmp_path / "winograd")
  trainer.train_and_evaluate(
    make_config(num_epochs=4, **{"model.conv_impl": "winograd"}), winograd
  )
  runs = {}
  for impl, workdir in (("xla", teacher_dir), ("winograd", winograd)):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
      records = [json.loads(line) for line in f]
    runs[impl] = [r["loss"] for r in records if r["split"] == "train"]
    assert trainer.read_run_config(workdir)["model"]["conv_impl"] == impl
  assert len(runs["xla"]) >= 8
  # Same initial parameters and data: the first loss agrees to rounding.
  np.testing.assert_allclose(runs["winograd"][0], runs["xla"][0], rtol=1e-5)
  # Later steps drift apart by float32 rounding amplified by Adam's first
  # steps (about +-lr per parameter whatever the gradient's size) and by
  # max-pool windows whose two largest values are within rounding: within
  # 2% over the first 4 steps; the drift keeps growing (2.0% at step 8).
  np.testing.assert_allclose(runs["winograd"][:4], runs["xla"][:4], rtol=2e-2)
