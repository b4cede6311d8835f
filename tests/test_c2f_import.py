"""Importing PyTorch C2F-TCN checkpoints: our C2FTCN with converted weights
computes what the published PyTorch C2F-TCN computes (eval mode), at the
paper's 600-frame windows and at lengths that are not multiples of 64; the
command refuses to write over an existing output unless told to."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from exo2ego_jax.runtime import checkpoints
from exo2ego_jax.interop import c2f
from exo2ego_jax.interop import importer
from exo2ego_jax.training import trainer
from exo2ego_jax.models import c2f_tcn

torch = pytest.importorskip("torch")
import c2f_reference  # pylint: disable=wrong-import-position

FEATURES, CLASSES = 12, 5
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def public_model():
  return c2f_reference.build(FEATURES, CLASSES)


def test_public_keys_are_all_converted(public_model):
  state = c2f_reference.state_dict(public_model)
  assert {
    "inc.conv.conv.0.weight",
    "down6.max_pool_conv.1.conv.4.running_var",
    "tpp.conv.weight",
    "up.conv.conv.3.weight",
    "up4.conv.conv.0.bias",
    "outcc0.conv.weight",
    "outcc.conv.bias",
    "weights",
  } <= set(state)
  variables = c2f.convert_c2f_tcn(state)
  assert variables["params"]["up1"]["conv0"]["kernel"].shape == (5, 260, 128)
  with pytest.raises(ValueError, match="unconverted"):
    c2f.convert_c2f_tcn(dict(state, extra=np.zeros(1)))


# 600: the paper's windows (floor lengths 300, 150, 75, 37, 18, 9); 437 and
# 601 odd at several levels; 640 a multiple of 64.
@pytest.mark.parametrize("length", [437, 600, 601, 640])
def test_outputs_match_pytorch(public_model, length):
  variables = c2f.convert_c2f_tcn(c2f_reference.state_dict(public_model))
  x = (
    np.random.default_rng(length)
    .normal(size=(2, length, FEATURES))
    .astype(np.float32)
  )
  want = c2f_reference.outputs(public_model, x)
  ours = jax.jit(c2f_tcn.C2FTCN(CLASSES).apply)(variables, x)
  ours["ensemble"] = c2f_tcn.ensemble_probs(ours)
  for key in ("logits", "features", "ensemble"):
    scale = np.abs(want[key]).max()
    assert scale > 1e-2  # outputs far above the tolerance
    np.testing.assert_allclose(
      ours[key], want[key], rtol=0, atol=1e-5 * scale, err_msg=key
    )
  assert [h.shape[1] for h in want["head_logits"]] == [
    length // 32,
    length // 16,
    length // 8,
    length // 4,
    length // 2,
  ]
  for got, head in zip(ours["head_logits"], want["head_logits"]):
    np.testing.assert_allclose(
      got, head, rtol=0, atol=1e-5 * np.abs(head).max()
    )
  # Same predicted classes everywhere (the issue saw 1.5% of frames move).
  np.testing.assert_array_equal(
    np.argmax(ours["ensemble"], -1), np.argmax(want["ensemble"], -1)
  )


def test_imported_teacher_is_a_run_directory(public_model, tmp_path):
  variables = c2f.convert_c2f_tcn(c2f_reference.state_dict(public_model))
  out = str(tmp_path / "teacher")
  c2f.save_c2f_teacher(out, variables, "c2f.model")
  assert trainer.read_run_config(out)["mode"] == "exo_supervised"
  _, restored = checkpoints.restore_state(out)
  jax.tree.map(
    np.testing.assert_array_equal,
    {k: restored[k] for k in ("params", "batch_stats")},
    variables,
  )


def _save_checkpoint(path, seed: int) -> dict:
  """A public-layout checkpoint file; returns its converted variables."""
  state = c2f_reference.state_dict(c2f_reference.build(FEATURES, CLASSES, seed))
  torch.save({k: torch.from_numpy(v) for k, v in state.items()}, str(path))
  return c2f.convert_c2f_tcn(state)


def _restored(out: str) -> dict:
  _, state = checkpoints.restore_state(out)
  return {k: state[k] for k in ("params", "batch_stats")}


def test_existing_output_is_refused_in_one_line(tmp_path):
  checkpoint = tmp_path / "c2f.model"
  first = _save_checkpoint(checkpoint, seed=1)
  out = tmp_path / "teacher"
  importer.import_checkpoint(str(checkpoint), "c2f_tcn", str(out))
  before = sorted(os.listdir(out))
  result = subprocess.run(
    [
      sys.executable,
      "-m",
      "exo2ego_jax.import_weights",
      "--checkpoint",
      str(checkpoint),
      "--format",
      "c2f_tcn",
      "--out",
      str(out),
    ],
    capture_output=True,
    text=True,
    cwd=REPO,
    check=False,
  )
  assert result.returncode == 1
  assert result.stderr.strip().splitlines() == [
    f"error: {out} already holds best, checkpoints, config.json: pass "
    "--overwrite to replace it, or choose another output"
  ]
  assert sorted(os.listdir(out)) == before
  jax.tree.map(np.testing.assert_array_equal, _restored(str(out)), first)


def test_overwrite_replaces_only_after_a_complete_import(tmp_path, monkeypatch):
  checkpoint = tmp_path / "c2f.model"
  first = _save_checkpoint(checkpoint, seed=1)
  out = str(tmp_path / "teacher")
  importer.import_checkpoint(str(checkpoint), "c2f_tcn", out)
  second = _save_checkpoint(checkpoint, seed=2)

  # An import that fails while writing leaves the old run as it was.
  def fail_midway(out_dir, variables, source):
    os.makedirs(os.path.join(out_dir, "best"))
    raise OSError("disk full")

  monkeypatch.setattr(importer, "save_c2f_teacher", fail_midway)
  with pytest.raises(OSError, match="disk full"):
    importer.import_checkpoint(str(checkpoint), "c2f_tcn", out, overwrite=True)
  monkeypatch.undo()
  jax.tree.map(np.testing.assert_array_equal, _restored(out), first)
  assert sorted(os.listdir(tmp_path)) == ["c2f.model", "teacher"]  # no debris

  # A bad checkpoint is refused before anything is written.
  torch.save({"not_c2f": torch.zeros(1)}, str(tmp_path / "bad.model"))
  with pytest.raises(ValueError, match="not a state dict of the public"):
    importer.import_checkpoint(
      str(tmp_path / "bad.model"), "c2f_tcn", out, overwrite=True
    )
  jax.tree.map(np.testing.assert_array_equal, _restored(out), first)

  importer.import_checkpoint(str(checkpoint), "c2f_tcn", out, overwrite=True)
  jax.tree.map(np.testing.assert_array_equal, _restored(out), second)
  assert sorted(os.listdir(tmp_path)) == ["bad.model", "c2f.model", "teacher"]
