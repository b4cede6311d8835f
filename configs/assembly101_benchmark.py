"""The exo->ego study on Assembly101 (built by tfds_builders/assembly101_sync).

  tfds build tfds_builders/assembly101_sync \
      --config=dinov2_c10119_hmc84358933_fp16 --manual_dir <downloads> \
      --data_dir <data_dir> --file_format=array_record
  python -m exo2ego_jax.benchmark --config configs/assembly101_benchmark.py \
      --config.data_dir=<data_dir>

The same methods as configs/synthetic_benchmark.py, with the reference
training settings of configs/default.py instead of the synthetic benchmark's
short schedule: 600-step windows of 4-frame chunks, Adam at 1e-5 with weight
decay 1e-4, 100 epochs, evaluation every 10 epochs. Another build of the
builder (TSM features, other views, float32): --config.dataset_name=
assembly101_sync/<config>. Compare with the paper's figures listed in
tfds_builders/assembly101_sync/README.md (DINOv2 ego test: exo-only Edit
12.60; best distillation F1@10/25/50 29.58/24.84/16.38, Edit 28.59, MoF
31.36). Days of GPU time, not a CPU job.
"""

import ml_collections

from configs import default
from configs import synthetic_benchmark


def get_config():
  config = synthetic_benchmark.get_config()
  config.workdir = "workdirs/assembly101"
  config.dataset_name = "assembly101_sync/dinov2_c10119_hmc84358933_fp16"
  reference = default.get_config()
  settings = {
    "data": {
      "max_frames": reference.data.max_frames,
      "chunk_size": reference.data.chunk_size,
    },
    "optim": {"learning_rate": reference.optim.learning_rate},
    "num_epochs": reference.num_epochs,
    "eval_every_epochs": reference.eval_every_epochs,
    "log_every_steps": reference.log_every_steps,
  }
  config.overrides = ml_collections.ConfigDict(
    {method: settings for method in config.methods}
  )
  config.progress = True
  return config
