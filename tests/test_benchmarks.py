"""benchmarks/step_throughput.py: the quick mode runs and prints its table;
the PyTorch C2F-TCN it compares against has the JAX model's layers."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from exo2ego_jax.models import c2f_tcn

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAS_TORCH = importlib.util.find_spec("torch") is not None


def test_quick_run_prints_the_table():
  frameworks = ["jax", "torch"] if HAS_TORCH else ["jax"]
  proc = subprocess.run(
    [
      sys.executable,
      "benchmarks/step_throughput.py",
      "--quick",
      "--steps",
      "distill",  # the larger step; "train" runs the same code path
      "--jax-conv",  # winograd: the same worker, other conv_impl; its
      "xla",  # FLOP saving is tested in test_winograd.py
      "--frameworks",
      *frameworks,
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
  )  # no timeout: a loaded machine is slow, not broken
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = proc.stdout.splitlines()
  assert lines[0].startswith("Device: ") and "GFLOP/s" in lines[0]
  rows = [
    line.split(" | ") for line in lines if line.startswith("| 16 x 64 x 2 ")
  ]
  assert [row[1:3] for row in rows] == [["distill", "xla"]]
  number = lambda text: float(text.replace(",", ""))
  for row in rows:
    assert number(row[3].split()[0]) > 0  # JAX ms: median (best)
    assert number(row[8]) > 0 and number(row[9]) > 0  # XLA counted FLOPs
    if HAS_TORCH:
      assert number(row[4].split()[0]) > 0 and row[7].split()[0].endswith("x")
  # The model's FLOPs are what XLA executes for the direct convolution.
  assert rows[0][8] == rows[0][9]
  assert any(line.startswith("- 16 x 64 x 2: jax:xla ") for line in lines)


@pytest.mark.skipif(not HAS_TORCH, reason="PyTorch not installed")
def test_torch_model_has_the_jax_models_parameters():
  sys.path.insert(0, os.path.join(REPO, "benchmarks"))
  import torch_c2f_tcn  # pylint: disable=g-import-not-at-top

  feature_dim, num_classes = 12, 7
  torch_model = torch_c2f_tcn.C2FTCN(feature_dim, num_classes)
  variables = jax.eval_shape(
    lambda: c2f_tcn.C2FTCN(num_classes).init(
      jax.random.key(0), jnp.zeros((1, 8, feature_dim))
    )
  )
  jax_shapes = sorted(
    tuple(int(d) for d in leaf.shape)[::-1]  # channels-last
    for leaf in jax.tree.leaves(variables["params"])
  )
  torch_shapes = sorted(tuple(p.shape) for p in torch_model.parameters())
  # Flax kernels are (k, in, out), PyTorch's (out, in, k): same reversed.
  assert jax_shapes == torch_shapes
  assert sum(np.prod(s) for s in torch_shapes) == sum(
    np.prod(s) for s in jax_shapes
  )


@pytest.mark.skipif(not HAS_TORCH, reason="PyTorch not installed")
def test_torch_model_computes_what_the_jax_model_computes():
  """Same weights, eval mode: the same ensemble probabilities."""
  import torch  # pylint: disable=g-import-not-at-top

  sys.path.insert(0, os.path.join(REPO, "benchmarks"))
  import torch_c2f_tcn  # pylint: disable=g-import-not-at-top

  feature_dim, num_classes, length = 6, 4, 100
  model = c2f_tcn.C2FTCN(num_classes)
  x = np.random.default_rng(0).normal(size=(2, length, feature_dim))
  mask = np.ones((2, length), np.float32)
  mask[1, 70:] = 0
  variables = model.init(jax.random.key(0), jnp.zeros((1, 8, feature_dim)))
  params = variables["params"]
  torch_model = torch_c2f_tcn.C2FTCN(feature_dim, num_classes).eval()

  def copy_conv(conv, p):
    conv.weight.data = torch.tensor(np.asarray(p["kernel"]).transpose(2, 1, 0))
    conv.bias.data = torch.tensor(np.asarray(p["bias"]))

  def copy_block(block, p):
    for i in range(2):
      copy_conv(getattr(block, f"conv{i}"), p[f"conv{i}"])
      getattr(block, f"bn{i}").weight.data = torch.tensor(
        np.asarray(p[f"bn{i}"]["scale"])
      )
      getattr(block, f"bn{i}").bias.data = torch.tensor(
        np.asarray(p[f"bn{i}"]["bias"])
      )

  for i, block in enumerate(torch_model.encoder):
    copy_block(block, params[f"x{i + 1}"])
  for i, block in enumerate(torch_model.decoder):
    copy_block(block, params[f"up{i + 1}"])
  copy_conv(torch_model.tpp_project, params["tpp"]["project"])
  for head, name in zip(torch_model.heads, c2f_tcn.HEAD_NAMES + ("y",)):
    copy_conv(head, params[name])

  jax_probs = c2f_tcn.ensemble_probs(
    model.apply(variables, jnp.asarray(x, jnp.float32), jnp.asarray(mask))
  )
  with torch.no_grad():
    features = torch.tensor(x, dtype=torch.float32).transpose(1, 2)
    logits, _ = torch_model(features, torch.tensor(mask))
    torch_probs = torch_c2f_tcn.ensemble_probs(logits, length)
  np.testing.assert_allclose(
    torch_probs.numpy().transpose(0, 2, 1)[0],
    np.asarray(jax_probs)[0],
    atol=1e-5,
  )
  np.testing.assert_allclose(
    torch_probs.numpy().transpose(0, 2, 1)[1, :70],
    np.asarray(jax_probs)[1, :70],
    atol=1e-5,
  )


def test_the_table_compares_jax_with_torch_compile():
  """The torch.compile columns: its step time (median, best), JAX's
  throughput against it and its first (compiling) step; n/a without it."""
  import importlib.util as util  # pylint: disable=g-import-not-at-top

  spec = util.spec_from_file_location(
    "step_throughput", os.path.join(REPO, "benchmarks", "step_throughput.py")
  )
  bench = util.module_from_spec(spec)
  spec.loader.exec_module(bench)
  size = (16, 64, 2)
  results = {
    ("jax:xla", "train", size): {
      "times": [0.010, 0.012, 0.011],
      "flops": 2e9,
      "peak_mib": 100.0,
      "compile_s": 1.5,
    },
    ("torch", "train", size): {"times": [0.030], "peak_mib": 50.0},
    ("torch_compile", "train", size): {
      "times": [0.022, 0.020],
      "peak_mib": 60.0,
      "first_step_s": 9.25,
    },
  }
  text = bench.table(results, [size], ["xla"], 1e12, steps=("train",))
  head, _, row = text.splitlines()[:3]
  cells = dict(
    zip(
      [c.strip() for c in head.strip("|").split("|")],
      [c.strip() for c in row.strip("|").split("|")],
    )
  )
  assert cells["torch.compile ms"] == "21.0 (20.0)"
  assert cells["JAX / torch.compile throughput"] == "1.91x"
  assert cells["torch.compile first step s"] == "9.2"
  assert cells["JAX / PyTorch throughput"] == "2.73x (3.00x)"
  assert "torch_compile n/a" in text  # no distillation step was timed
  del results[("torch_compile", "train", size)]
  text = bench.table(results, [size], ["xla"], 1e12, steps=("train",))
  assert text.splitlines()[2].endswith("| n/a (n/a) | n/a | n/a |")


def _study_results(path, seeds, rows):
  """A study's results.json with only what compare_rows reads."""
  per_seed = {
    row: [{"f1@25": f, "edit": f - 5.0} for f in scores]
    for row, scores in rows.items()
  }
  path.write_text(json.dumps({"seeds": list(seeds), "per_seed": per_seed}))
  return str(path)


def test_compare_rows_pools_seeds_and_pairs_them(tmp_path, capsys):
  from scipy import stats  # pylint: disable=g-import-not-at-top

  spec = importlib.util.spec_from_file_location(
    "compare_rows", os.path.join(REPO, "benchmarks", "compare_rows.py")
  )
  compare_rows = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(compare_rows)
  a1 = _study_results(tmp_path / "a1.json", [0, 1, 2], {"m": [50, 52, 48]})
  a2 = _study_results(tmp_path / "a2.json", [3], {"m": [49]})
  ref = _study_results(
    tmp_path / "r.json", [0, 1, 2, 3], {"dtw": [48, 49, 47, 48]}
  )
  out = tmp_path / "cmp.md"
  argv = ["--results", a1, a2, "--against", ref, "--against_row", "dtw"]
  assert compare_rows.main(argv + ["--out", str(out)]) == 0
  row = [r for r in out.read_text().splitlines() if r.startswith("| m |")][0]
  cells = [c.strip() for c in row.strip("|").split("|")]
  assert cells.pop(1) == "dtw"  # the reference row
  # Seeds 0-3 pooled; differences 2, 3, 1, 1: mean 1.75, sd 0.957, t(3).
  assert cells[:6] == [
    "m",
    "4",
    "f1@25",
    "49.75 ± 1.48",
    "48.00 ± 0.71",
    "+1.75",
  ]
  assert cells[6] == "[+0.23, +3.27]" and cells[8] == "paired"
  paired = stats.ttest_rel([50, 52, 48, 49], [48, 49, 47, 48]).pvalue
  assert float(cells[7]) == pytest.approx(paired, abs=0.005)
  # Other seeds: Welch's interval and test.
  other = _study_results(tmp_path / "o.json", [7, 8, 9], {"dtw": [47, 50, 48]})
  c = compare_rows.compare(
    compare_rows.pooled([a1, a2])["m"],
    compare_rows.pooled([other])["dtw"],
    "f1@25",
  )
  welch = stats.ttest_ind([50, 52, 48, 49], [47, 50, 48], equal_var=False)
  assert c["test"] == "welch" and c["p"] == pytest.approx(welch.pvalue)
  # Sweep rows against the same point of another method's sweep.
  sweep = _study_results(
    tmp_path / "s.json",
    [0, 1],
    {"exo_only": [5, 6], "m J=8": [50, 51], "m J=16": [49, 47]},
  )
  dtw = _study_results(
    tmp_path / "d.json", [0, 1], {"dtw J=8": [46, 48], "dtw J=16": [47, 46]}
  )
  text_out = tmp_path / "sweep.md"
  compare_rows.main(
    ["--results", sweep, "--against", dtw, "--against_method", "dtw"]
    + ["--metrics", "edit", "--out", str(text_out)]
  )
  rows = [r.split(" | ")[:3] for r in text_out.read_text().splitlines()[4:]]
  assert rows == [["| m J=8", "dtw J=8", "2"], ["| m J=16", "dtw J=16", "2"]]
  with pytest.raises(SystemExit, match="no row of .* is a sweep point of 'x'"):
    compare_rows.main(
      ["--results", sweep, "--against", dtw, "--against_method", "x"]
    )
  # The same seed reported twice with other scores; a row that is not there.
  clash = _study_results(tmp_path / "c.json", [2], {"m": [40]})
  with pytest.raises(SystemExit, match=r"c.json: row 'm' seed 2 differs"):
    compare_rows.main(["--results", a1, clash] + argv[3:])
  with pytest.raises(SystemExit, match=r"error: no row 'x' in .*rows there: m"):
    compare_rows.main(argv + ["--rows", "x"])
  capsys.readouterr()
