"""Synthetic synchronized exo/ego *videos*: rendered frames of one procedural
activity, seen by a fixed camera and by a moving head camera.

  python -m exo2ego_jax.data.synthetic_video --out /tmp/sync_videos --num_videos 4

writes `<out>/exo/<name>.mp4`, `<out>/ego/<name>.mp4` (same frame count and
rate, frame i of both shows the same instant), `<out>/labels/<name>.npy`
(per-frame int32 action labels) and `<out>/classes.txt`. It lets the
frame-level path (feature extraction, backbone distillation) run and be
tested without a download; the feature-level benchmark is
`exo2ego_jax.data.synthetic`.

The scene: a textured table with a few coloured discs and one hand (a skin
coloured blob on an arm). The timeline alternates background (hand idle) with
steps `reach_<colour>` (the hand travels to a disc) and `move_<colour>` (it
carries the disc to a new place). The exo camera sees the whole table. The
ego camera looks at the hand from close up (zoomed), lags behind it, bobs and
rolls with the head, jitters, and has another white balance and more sensor
noise: the same instant with a real viewpoint gap.
"""

from __future__ import annotations

import dataclasses
import os

from absl import app
from absl import flags
import numpy as np

from exo2ego_jax.runtime import cli

COLOURS = {
  "red": (215, 45, 40),
  "green": (40, 170, 70),
  "blue": (45, 80, 215),
  "yellow": (225, 200, 40),
  "purple": (140, 60, 170),
}
SKIN = np.array((230, 180, 150), np.float32)
ARM = np.array((70, 90, 120), np.float32)


@dataclasses.dataclass(frozen=True)
class VideoConfig:
  size: int = 64  # frame height = width, pixels (even, for h264)
  num_frames: int = 90
  fps: int = 15
  num_objects: int = 3  # discs, coloured as the first COLOURS
  num_steps: int = 4  # reach/move pairs per video
  ego_zoom: float = 2.2  # ego field of view = table / zoom
  ego_jitter: float = 0.02  # head jitter, table units per frame
  seed: int = 0


def class_names(config: VideoConfig) -> list[str]:
  """Label 0 is background; then reach_<c>, move_<c> for every disc."""
  names = ["background"]
  for colour in list(COLOURS)[: config.num_objects]:
    names += [f"reach_{colour}", f"move_{colour}"]
  return names


def _ease(t: np.ndarray) -> np.ndarray:
  return t * t * (3 - 2 * t)


def simulate(index: int, config: VideoConfig) -> dict:
  """Per-frame latent state of recording `index`: hand (T, 2), discs
  (T, K, 2) in table units [0, 1]^2, labels (T,)."""
  if not 0 < config.num_objects <= len(COLOURS):
    raise ValueError(f"num_objects must be in 1..{len(COLOURS)}")
  rng = np.random.default_rng((config.seed, index))
  frames, k = config.num_frames, config.num_objects
  objects = rng.uniform(0.2, 0.8, (k, 2))
  rest = np.array([0.5, 0.9])
  hand = rest.copy()
  # Durations: background gaps and steps share the frames at random.
  parts = rng.dirichlet(np.full(3 * config.num_steps + 1, 2.0)) * frames
  bounds = np.round(np.cumsum(parts)).astype(int)
  bounds[-1] = frames
  hand_path = np.zeros((frames, 2))
  object_path = np.zeros((frames, k, 2))
  labels = np.zeros(frames, np.int32)
  start = 0
  for part, end in enumerate(bounds):
    phase, step = part % 3, part // 3
    span = max(end - start, 1)
    t = _ease((np.arange(start, end) - start + 1) / span)[:, None]
    if phase == 0:  # background: drift a little, hand idle
      path = hand + 0.02 * np.sin(
        np.arange(end - start)[:, None] * 0.7 + rng.uniform(0, 6, 2)
      )
      object_path[start:end] = objects
    elif phase == 1:  # reach_k: the hand travels to disc k
      obj = step % k
      labels[start:end] = 1 + 2 * obj
      path = hand + t * (objects[obj] - hand)
      object_path[start:end] = objects
    else:  # move_k: carry disc k to a new place
      obj = step % k
      labels[start:end] = 2 + 2 * obj
      goal = rng.uniform(0.15, 0.85, 2)
      path = objects[obj] + t * (goal - objects[obj])
      object_path[start:end] = objects
      object_path[start:end, obj] = path
      objects = objects.copy()
      objects[obj] = goal
    hand_path[start:end] = path
    if end > start:
      hand = path[-1]
    start = end
  return {"hand": hand_path, "objects": object_path, "labels": labels}


def _render(
  state_hand,
  state_objects,
  centre,
  angle,
  zoom,
  size,
  arm_from,
  rng,
  noise,
  gain,
) -> np.ndarray:
  """One RGB frame: pixel grid -> table coordinates -> analytic scene."""
  ss = 2  # supersampling
  grid = (np.arange(size * ss) + 0.5) / (size * ss) - 0.5
  v, u = np.meshgrid(grid, grid, indexing="ij")
  cos, sin = np.cos(angle), np.sin(angle)
  x = centre[0] + (cos * u - sin * v) / zoom
  y = centre[1] + (sin * u + cos * v) / zoom
  # Table: wood-like stripes and a checker, darker off the table.
  image = np.empty(x.shape + (3,), np.float32)
  stripes = 0.5 + 0.5 * np.sin(25 * x + 3 * np.sin(7 * y))
  checker = (np.floor(x * 6) + np.floor(y * 6)) % 2
  base = 120 + 40 * stripes + 20 * checker
  image[..., 0], image[..., 1], image[..., 2] = base, base * 0.8, base * 0.55
  off_table = (x < 0) | (x > 1) | (y < 0) | (y > 1)
  image[off_table] = (40, 40, 50)
  for colour, (ox, oy) in zip(COLOURS.values(), state_objects):
    disc = (x - ox) ** 2 + (y - oy) ** 2 < 0.07**2
    image[disc] = colour
    rim = np.abs(np.hypot(x - ox, y - oy) - 0.07) < 0.008
    image[rim] = 0.6 * np.array(colour, np.float32)
  # Arm from `arm_from` to the hand, then the hand.
  hx, hy = state_hand
  ax, ay = arm_from
  d = np.array([hx - ax, hy - ay])
  length2 = max(float(d @ d), 1e-9)
  t = np.clip(((x - ax) * d[0] + (y - ay) * d[1]) / length2, 0, 1)
  arm = np.hypot(x - ax - t * d[0], y - ay - t * d[1]) < 0.035
  image[arm] = ARM
  hand = ((x - hx) / 0.06) ** 2 + ((y - hy) / 0.05) ** 2 < 1
  image[hand] = SKIN
  image = image.reshape(size, ss, size, ss, 3).mean((1, 3))
  image = image * gain + rng.normal(0, noise, image.shape)
  return np.clip(image, 0, 255).astype(np.uint8)


def render_pair(index: int, config: VideoConfig = VideoConfig()) -> dict:
  """Recording `index`: {"exo": (T, S, S, 3) uint8, "ego": same, "labels":
  (T,) int32}. Deterministic in (config.seed, index)."""
  state = simulate(index, config)
  rng = np.random.default_rng((config.seed, index, 1))
  frames = config.num_frames
  exo, ego = [], []
  head = state["hand"][0].copy()
  roll = 0.0
  ego_gain = np.array([0.85, 1.0, 1.2]) * rng.uniform(0.9, 1.1)
  for t in range(frames):
    hand, objects = state["hand"][t], state["objects"][t]
    exo.append(
      _render(
        hand,
        objects,
        (0.5, 0.5),
        0.0,
        1.0,
        config.size,
        (0.5, 1.15),
        rng,
        2.0,
        np.ones(3),
      )
    )
    # Head camera: follows the hand with lag, bobs, rolls and jitters.
    head += 0.25 * (hand + np.array([0.0, 0.08]) - head)
    roll += rng.normal(0, 0.03) - 0.1 * roll
    bob = 0.02 * np.array([np.sin(t * 0.5), np.cos(t * 0.37)])
    centre = head + bob + rng.normal(0, config.ego_jitter, 2)
    zoom = config.ego_zoom * (1 + 0.1 * np.sin(t * 0.21))
    ego.append(
      _render(
        hand,
        objects,
        centre,
        roll + 0.2,
        zoom,
        config.size,
        centre + np.array([0.05, 0.6 / zoom]),
        rng,
        6.0,
        ego_gain,
      )
    )
  return {"exo": np.stack(exo), "ego": np.stack(ego), "labels": state["labels"]}


def write_video(path: str, frames: np.ndarray, fps: int) -> None:
  """Writes (T, H, W, 3) uint8 frames with PyAV: H.264 (libx264) where the
  wheel has it, else MPEG-4 part 2."""
  import av  # pylint: disable=g-import-not-at-top

  codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
  tmp = path + ".tmp.mp4"
  with av.open(tmp, "w") as container:
    stream = container.add_stream(codec, rate=fps)
    stream.height, stream.width = frames.shape[1:3]
    stream.pix_fmt = "yuv420p"
    if codec == "libx264":
      stream.options = {"crf": "18", "preset": "veryfast"}
    for frame in frames:
      for packet in stream.encode(
        av.VideoFrame.from_ndarray(frame, format="rgb24")
      ):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
  os.replace(tmp, path)


def write_dataset(
  out_dir: str, num_videos: int, config: VideoConfig = VideoConfig()
) -> list[str]:
  """Writes `num_videos` synchronized pairs; returns their names."""
  for sub in ("exo", "ego", "labels"):
    os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
  with open(os.path.join(out_dir, "classes.txt"), "w") as f:
    f.write("\n".join(class_names(config)) + "\n")
  names = []
  for index in range(num_videos):
    name = f"pair{index:03d}"
    pair = render_pair(index, config)
    for view in ("exo", "ego"):
      write_video(
        os.path.join(out_dir, view, f"{name}.mp4"), pair[view], config.fps
      )
    np.save(os.path.join(out_dir, "labels", f"{name}.npy"), pair["labels"])
    names.append(name)
  return names


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  config = VideoConfig(
    size=f.size,
    num_frames=f.num_frames,
    fps=f.fps,
    num_objects=f.num_objects,
    num_steps=f.num_steps,
    seed=f.seed,
  )
  names = write_dataset(f.out, f.num_videos, config)
  print(
    f"wrote {len(names)} exo/ego video pairs of {config.num_frames} "
    f"frames ({config.size}x{config.size}, {config.fps} fps) to {f.out}"
  )


def define_flags() -> None:
  defaults = VideoConfig()
  flags.DEFINE_string("out", None, "Output directory.", required=True)
  flags.DEFINE_integer("num_videos", 4, "Synchronized pairs to write.")
  flags.DEFINE_integer("size", defaults.size, "Frame size in pixels (even).")
  flags.DEFINE_integer("num_frames", defaults.num_frames, "Frames per video.")
  flags.DEFINE_integer("fps", defaults.fps, "Frame rate.")
  flags.DEFINE_integer("num_objects", defaults.num_objects, "Discs (1-5).")
  flags.DEFINE_integer(
    "num_steps", defaults.num_steps, "reach/move steps per video."
  )
  flags.DEFINE_integer("seed", defaults.seed, "Random seed.")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
