"""Frame-level backbone distillation on tiny synthetic frames: a few steps
lower the held-out exo/ego feature MSE, the teacher's weights stay as they
were, and only the last N blocks change when so configured."""

import json
import os

import jax
import numpy as np
import pytest

from configs import synthetic_video_distill_backbone
from exo2ego_jax.backbone import distill as distill_backbone
from exo2ego_jax.backbone import features as extract_features
from exo2ego_jax.interop import dinov2
from exo2ego_jax.models import vit


def _config(**changes):
  config = synthetic_video_distill_backbone.get_config()
  config.data.num_videos = 3
  config.data.synthetic.num_frames = 16
  config.data.synthetic.size = 32
  config.data.resize = config.data.crop = 28
  config.data.batch_size = 8
  config.backbone.overrides.update(embed_dim=32, depth=2, pos_embed_grid=2)
  config.optim.learning_rate = 3e-3
  config.num_steps = 12
  config.log_every_steps = 4
  config.eval_every_steps = 6
  config.progress = False
  config.update(changes)
  return config


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
  """A tiny random backbone saved as converted weights (the teacher)."""
  config = _config()
  model, params = distill_backbone.load_teacher(config)
  path = str(tmp_path_factory.mktemp("teacher"))
  dinov2.save_backbone(path, jax.device_get(params), vit.config_of(model))
  return path


def _changed(before, after):
  return {
    name
    for name in before
    if any(
      not np.array_equal(a, b)
      for a, b in zip(
        jax.tree.leaves(before[name]), jax.tree.leaves(after[name])
      )
    )
  }


def test_distillation_lowers_mse_and_trains_only_last_blocks(
  teacher_dir, tmp_path
):
  _, teacher_before = dinov2.load_backbone(teacher_dir)
  config = _config(train_last_blocks=1)
  config.backbone.params = teacher_dir
  workdir = str(tmp_path / "run")
  results = distill_backbone.train_and_evaluate(config, workdir)

  assert results["trained"] == ["block1", "norm"]
  assert results["best_val_mse"] < 0.8 * results["initial_val_mse"]
  assert results["train_frames"] == 32 and results["validation_frames"] == 16
  records = [
    json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))
  ]
  assert [r["step"] for r in records if r["split"] == "train"] == [4, 8, 12]
  assert [r["step"] for r in records if r["split"] == "validation"] == [
    0,
    6,
    12,
  ]

  # The frozen backbone's weights are untouched; the student's last block
  # and final norm moved, everything below stayed the teacher's.
  _, teacher_after = dinov2.load_backbone(teacher_dir)
  assert not _changed(teacher_before, teacher_after)
  model, student = dinov2.load_backbone(workdir)
  assert model.depth == 2
  assert _changed(teacher_before, student) == {"block1", "norm"}

  # The workdir is a backbone for extract_features.
  extractor = extract_features.FeatureExtractor(
    model, student, distill_backbone.preprocessing(config), batch_size=8
  )
  frames = np.zeros((5, 28, 28, 3), np.uint8)
  assert extractor(iter(frames)).shape == (5, 32)

  # Re-running a finished run resumes at its end and re-reports.
  again = distill_backbone.train_and_evaluate(config, workdir)
  assert again["best_val_mse"] == results["best_val_mse"]


def test_trainable_parts():
  params = {
    name: {}
    for name in (
      "patch_embed",
      "cls_token",
      "pos_embed",
      "block0",
      "block1",
      "block2",
      "norm",
    )
  }
  assert distill_backbone.trainable_names(params, 3, 0) == set(params)
  assert distill_backbone.trainable_names(params, 3, 2) == {
    "block1",
    "block2",
    "norm",
  }
  with pytest.raises(ValueError, match="train_last_blocks"):
    distill_backbone.trainable_names(params, 3, 4)
