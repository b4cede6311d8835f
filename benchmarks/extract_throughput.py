"""Frames per second of `extract_features` on a monochrome 10-bit video.

  python benchmarks/extract_throughput.py [--model vit_giant2] [--frames 16] \
    [--batch_size 8] [--height 480 --width 640] [--pix_fmt gray10le]

Writes a lossless FFV1 video of random content in `--pix_fmt` (default
gray10le, as Assembly101's head-mounted `HMC_*_mono10bit` videos), then runs
the extraction library (`exo2ego_jax.backbone.features.extract`: PyAV
decoding, resize 256 / centre crop 224, the jitted backbone, the npy writer)
with random weights of `--model` (a released DINOv2 size: the weights do not
change the time). One warm-up video of one batch compiles the backbone first.
Prints the backend and, for the timed video, frames/s end to end and of the
decoding and preprocessing alone. Needs the `video` extra (PyAV, Pillow).
On the project's busy 2-core "Intel(R) Xeon(R) Processor" (CPU backend):
vit_small 3.6 frames/s (32 frames), vit_large 0.54 (16), vit_giant2 0.19 (8,
--batch_size 4; 1.1B parameters, 4.5 GB of memory); on a GPU: not measured.
"""

import argparse
import os
import platform
import tempfile
import time

import av
import jax
import numpy as np

from exo2ego_jax.backbone import features as ef
from exo2ego_jax.models import vit


def write_video(path: str, frames: int, height: int, width: int, pix_fmt):
  """A lossless FFV1 video of random grey frames at 30 fps."""
  rng = np.random.default_rng(0)
  bits = 10 if pix_fmt == "gray10le" else 8
  with av.open(path, "w") as container:
    stream = container.add_stream("ffv1", rate=30)
    stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
    for _ in range(frames):
      plane = rng.integers(0, 1 << bits, (height, width))
      frame = av.VideoFrame.from_ndarray(
        plane.astype(np.uint16 if bits > 8 else np.uint8), format=pix_fmt
      )
      for packet in stream.encode(frame):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)


def cpu_name() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown CPU"


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", default="vit_small", choices=vit.VIT_SIZES)
  parser.add_argument("--frames", type=int, default=32)
  parser.add_argument("--batch_size", type=int, default=8)
  parser.add_argument("--height", type=int, default=480)
  parser.add_argument("--width", type=int, default=640)
  parser.add_argument(
    "--pix_fmt", default="gray10le", choices=("gray10le", "gray")
  )
  args = parser.parse_args()

  device = jax.devices()[0]
  print(
    f"backend {jax.default_backend()} ({device.device_kind}, "
    f"{jax.local_device_count()} device(s)); host CPU {cpu_name()}, "
    f"{os.cpu_count()} cores"
  )
  model = vit.vit_from_name(args.model)
  start = time.perf_counter()
  params = vit.random_params(model)
  count = sum(p.size for p in jax.tree_util.tree_leaves(params))
  print(
    f"{args.model}: {count / 1e6:.0f}M parameters, random init "
    f"{time.perf_counter() - start:.1f} s"
  )
  preprocessing = ef.Preprocessing(resize=256, crop=224)
  extractor = ef.FeatureExtractor(
    model, params, preprocessing, batch_size=args.batch_size
  )
  with tempfile.TemporaryDirectory(prefix="extract_throughput_") as tmp:
    warmup, timed = (os.path.join(tmp, f"{n}.mkv") for n in ("warmup", "timed"))
    write_video(warmup, 1, args.height, args.width, args.pix_fmt)
    write_video(timed, args.frames, args.height, args.width, args.pix_fmt)
    start = time.perf_counter()
    ef.extract([warmup], tmp, "out", extractor, progress=False)
    print(f"compile + first batch: {time.perf_counter() - start:.1f} s")

    start = time.perf_counter()
    for _, image in ef.decode_frames(timed):
      preprocessing.frame(image)
    decode = time.perf_counter() - start

    start = time.perf_counter()
    report = ef.extract([timed], tmp, "out", extractor, progress=False)
    total = time.perf_counter() - start
    assert report["frames"] == {"timed": args.frames}, report
  print(
    f"{args.frames} frames {args.width}x{args.height} {args.pix_fmt}, "
    f"batch {extractor.batch_size}: {args.frames / total:.2f} frames/s end "
    f"to end ({total:.1f} s); decoding + preprocessing alone "
    f"{args.frames / decode:.0f} frames/s"
  )


if __name__ == "__main__":
  main()
