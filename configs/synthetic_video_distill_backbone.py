"""Frame-level feature distillation of a ViT backbone on synthetic videos.

  python -m exo2ego_jax.distill_backbone \
      --config configs/synthetic_video_distill_backbone.py --workdir /tmp/distill

renders 6 synchronized exo/ego pairs (64x64, 48 frames; 5 train, 1 held out)
in memory, fine-tunes the last 2 blocks of a small random-init ViT
(`backbone.overrides`) for 300 steps so that its CLS feature of an ego frame
matches the frozen copy's feature of the synchronized exo frame, and prints
results.json (under a minute on 2 CPU cores):
  initial_val_mse 1.045 (the view gap) -> best_val_mse 0.025 (step 150),
  val_target_variance 0.015.
A random backbone's feature hardly changes from frame to frame (the target
variance), so this demo shows the view gap closing, not per-frame tracking:
a student that output the mean exo feature would score 0.015. Distilling a
real DINOv2 is the point of the method. Extract ego features with the
distilled backbone:

  python -m exo2ego_jax.data.synthetic_video --out /tmp/sync_videos
  python -m exo2ego_jax.extract_features --params /tmp/distill \
      --videos /tmp/sync_videos/ego --view ego --out /tmp/features \
      --resize 56 --crop 56

For real data: convert DINOv2 (`python -m exo2ego_jax.import_weights`) and
pass `--config.backbone.params=weights/dinov2_vitl14
--config.data.video_dir=DIR --config.data.fps=1 --config.data.resize=224
--config.data.crop=224 --config.data.normalisation=half` (DIR holds
exo/<name>.mp4 and ego/<name>.mp4; decoded frames are held in memory, about
150 kB per 224x224 frame and view).
"""

import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0  # initialisation and data order

  config.data = ml_collections.ConfigDict()
  # Directory with exo/<name>.* and ego/<name>.* videos; None renders
  # `num_videos` pairs of exo2ego_jax.data.synthetic_video in memory.
  config.data.video_dir = config_dict.placeholder(str)
  config.data.num_videos = 6  # synthetic pairs rendered when video_dir is None
  # Frame size, frames and frame rate of the synthetic videos.
  config.data.synthetic = ml_collections.ConfigDict(
    dict(size=64, num_frames=48, fps=15)
  )
  config.data.num_validation_videos = 1  # held-out pairs, select the export
  config.data.fps = config_dict.placeholder(float)  # None: every frame
  config.data.resize = 56  # shorter side; DINOv2 features use 224
  config.data.crop = 56  # square centre crop fed to the ViT
  config.data.normalisation = "imagenet"  # or "half" (0.5/0.5)
  config.data.batch_size = 16  # synchronized frame pairs per step

  config.backbone = ml_collections.ConfigDict()
  # Converted weights (import_weights --out DIR); None: random init of
  # `model` with `overrides` (tests, the synthetic demo).
  config.backbone.params = config_dict.placeholder(str)
  config.backbone.model = "vit_small"  # architecture when params is None
  # Changes to that architecture (a tiny ViT for tests and the demo).
  config.backbone.overrides = ml_collections.ConfigDict(
    dict(
      embed_dim=64, depth=4, num_heads=4, pos_embed_grid=4, layerscale_init=1.0
    )
  )

  # 0 trains the whole student; N > 0 only its last N blocks + final norm.
  config.train_last_blocks = 2

  config.loss = ml_collections.ConfigDict()
  config.loss.feature = "cls"  # or "mean_patch"

  config.optim = ml_collections.ConfigDict()
  config.optim.learning_rate = 1e-4  # Adam
  config.optim.weight_decay = 1e-4  # L2 added to the gradient

  config.num_steps = 300  # training steps
  config.log_every_steps = 10  # metrics.jsonl interval
  config.eval_every_steps = 50  # validation and checkpoint interval
  config.progress = True  # progress bar on stderr
  return config
