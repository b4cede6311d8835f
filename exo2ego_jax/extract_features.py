"""Per-frame backbone features from video files.

  python -m exo2ego_jax.extract_features --params weights/dinov2_vitl14 \
      --videos 'recordings/*/C10095_rgb.mp4' --view exo --out features

Each video is decoded with PyAV, sampled at `--fps` (every frame by
default), resized (shorter side, bilinear, as torchvision's `Resize` on PIL
images), center-cropped and normalised (ImageNet statistics, or 0.5/0.5 with
`--normalisation half`, as the synchronization paper's extractor), and fed in
batches to a jit-compiled backbone whose batch is sharded over the host's
devices (a `data` mesh axis; several hosts split the videos between them).
The per-frame feature is the CLS token after the final LayerNorm (or the
mean patch token).

Outputs (`--format`):
  npy   `<out>/<view>/<video>.npy`, (frames, D): the `feature_folder` layout.
  lmdb  an LMDB environment in `<out>/<view>/` with one raw float32 vector
        per frame under `{video}_{frame:010d}.jpg`, frames numbered from 1
        (`--lmdb_first_frame`) in the source video's frames, as the
        synchronization paper's extractor writes them (`--out
        <manual_dir>/DINOv2_features` is the assembly101_sync layout).
Re-running skips finished videos: an .npy is written to a temporary name and
renamed when complete, and a video's LMDB keys are committed in one
transaction. Unreadable videos are reported by name after the others are
done, and the command exits with status 1.

The library (preprocessing, the extractor, the writers) is
exo2ego_jax/backbone/features.py.
"""

from __future__ import annotations

import sys

from absl import app
from absl import flags
import jax

from exo2ego_jax.interop import dinov2
from exo2ego_jax.backbone import features
from exo2ego_jax.runtime import cli
from exo2ego_jax.runtime import distributed
from exo2ego_jax.models import vit


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  distributed.initialize()  # multi-host runs only
  if f.format == "lmdb" and jax.process_count() > 1:
    raise app.UsageError(
      "LMDB cannot take writes from several hosts: use "
      "--format npy, or extract on one host"
    )
  if bool(f.params) == bool(f.random_init):
    raise app.UsageError(
      "give --params DIR (converted weights or a "
      "distill_backbone workdir) or --random_init"
    )
  if f.params:
    model, params = dinov2.load_backbone(f.params)
  else:
    model = vit.vit_from_name(f.model)
    params = vit.random_params(model, f.seed)
  extractor = features.FeatureExtractor(
    model,
    params,
    features.Preprocessing(f.resize, f.crop, f.normalisation),
    feature=f.feature,
    batch_size=f.batch_size,
  )
  # Every process takes every process_count-th video.
  videos = features.find_videos(f.videos)[
    jax.process_index() :: jax.process_count()
  ]
  report = features.extract(
    videos,
    f.out,
    f.view,
    extractor,
    fps=f.fps,
    output_format=f.format,
    dtype=f.dtype,
    lmdb_first_frame=f.lmdb_first_frame,
    progress=not f.no_progress,
  )
  print(
    f"{len(report['done'])} videos extracted, {len(report['skipped'])} "
    f"already done, {len(report['failed'])} failed"
  )
  if report["failed"]:
    for path, reason in report["failed"].items():
      print(f"FAILED {path}: {reason}", file=sys.stderr)
    sys.exit(1)


def define_flags() -> None:
  flags.DEFINE_multi_string(
    "videos",
    None,
    "Video files, globs or directories (repeatable).",
    required=True,
  )
  flags.DEFINE_string("out", None, "Output directory.", required=True)
  flags.DEFINE_string("view", "exo", "View name: outputs go to <out>/<view>.")
  flags.DEFINE_string(
    "params",
    None,
    "Backbone directory (import_weights output or a distill_backbone workdir).",
  )
  flags.DEFINE_bool(
    "random_init",
    False,
    "Use a randomly initialised --model instead of --params (testing only).",
  )
  flags.DEFINE_enum(
    "model", "vit_large", list(vit.VIT_SIZES), "Size for --random_init."
  )
  flags.DEFINE_integer("seed", 0, "Seed for --random_init.")
  flags.DEFINE_float(
    "fps", None, "Frames per second to sample (default: every frame)."
  )
  flags.DEFINE_integer("resize", 224, "Shorter side after resizing.")
  flags.DEFINE_integer("crop", 224, "Center crop size.")
  flags.DEFINE_enum(
    "normalisation",
    "imagenet",
    list(features.NORMALISATIONS),
    "Input normalisation statistics.",
  )
  flags.DEFINE_enum(
    "feature", "cls", list(features.FEATURES), "Per-frame feature."
  )
  flags.DEFINE_integer(
    "batch_size", 64, "Frames per step (this host's devices)."
  )
  flags.DEFINE_enum("format", "npy", ["npy", "lmdb"], "Output layout.")
  flags.DEFINE_enum(
    "dtype",
    "float32",
    ["float32", "float16"],
    "Stored feature dtype (npy only).",
  )
  flags.DEFINE_integer(
    "lmdb_first_frame",
    1,
    "LMDB key number of a video's "
    "first frame (the public extractor counts from 1).",
  )
  flags.DEFINE_bool("no_progress", False, "Hide the progress bar.")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
