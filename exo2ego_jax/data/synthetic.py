"""Procedural synthetic benchmark of synchronized exo/ego feature sequences.

The generator stands in for real pre-extracted video features (Assembly101, EgoExo4D) so that the
whole toolkit can be built, tested and calibrated without a download. It is pure numpy (no TFDS, no
JAX) so that tests and the TFDS builder can share it.

Model of the data, from the inside out:

* A **task grammar** (global, from the config seed): each task is an ordered list of step groups
  drawn from a shared pool of ``verb_object`` action classes. Adjacent groups may be marked
  swappable and groups may repeat, so recordings of one task differ in order and length.
* A **timeline** per recording: the task instance's steps, heavy-tailed (lognormal) segment
  durations and background gaps (label 0), scaled to a sampled video length.
* A **latent trajectory** per recording: each frame's latent vector is the sum of the verb's and
  the object's prototype (shared with other classes, so one frame is ambiguous), a small
  class-specific part, within-segment progression (drift and a reach/return arc), a per-instance
  perturbation, a smooth actor-noise process, and blurred boundaries. Background frames carry a
  trace of the next step's object, so context is informative.
* Two **renderings** of the same latent trajectory: the exo and the ego view are different random
  two-layer tanh MLPs (``view_overlap`` mixes in shared weights, so exo-only transfer is poor but
  not chance). The ego view also gets camera-motion bursts (strong low-frequency latent noise),
  hand occlusions (part of the latent attenuated), more per-video style shift and more sensor noise.
  Optional synchronization jitter makes the ego frames of the ``sync_pairs`` split show a shifted
  instant of the timeline.

Global parameters depend on ``SyntheticConfig.seed`` only; every recording draws from its own
stream keyed by ``(seed, split, index)``, so output is byte-for-byte deterministic and a recording
does not change when the split sizes change.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator
from typing import Any

import numpy as np

# The four data roles; their order keys the random streams (never reorder).
from exo2ego_jax.data.constants import SPLITS

#: Label 0 is the only background class.
BACKGROUND_CLASSES: tuple[str, ...] = ("background",)

JITTER_MODES: tuple[str, ...] = ("none", "fixed", "random", "clock")

_VERBS: tuple[str, ...] = (
  "position",
  "attach",
  "screw",
  "unscrew",
  "detach",
  "inspect",
)
_OBJECTS: tuple[str, ...] = (
  "wheel",
  "chassis",
  "cabin",
  "arm",
  "boom",
  "bucket",
  "roof",
  "seat",
  "light",
  "bumper",
)

# Fixed keys that separate the random streams; changing them changes every dataset.
_GLOBAL_STREAM = 7_000
_STREAM_TIMELINE, _STREAM_LATENT, _STREAM_EXO, _STREAM_EGO, _STREAM_JITTER = (
  range(5)
)


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
  """All generation parameters. Hashable, so derived global parameters can be cached."""

  seed: int = 0
  # Videos per split (see SPLITS).
  num_train: int = 60
  num_sync_pairs: int = 60
  num_validation: int = 20
  num_test: int = 40
  # Sizes.
  feature_dim: int = 64
  latent_dim: int = 32
  hidden_dim: int = 128  # Width of the per-view rendering MLPs.
  num_actions: int = (
    30  # Foreground classes (verb x object combos); labels are 0..num_actions.
  )
  num_tasks: int = 6
  segments_range: tuple[int, int] = (
    10,
    40,
  )  # Action segments per video, inclusive.
  frames_range: tuple[int, int] = (1000, 2000)  # Video length, inclusive.
  fps: float = 15.0  # Nominal; only recorded in the metadata.
  # Timeline statistics. Durations are relative, then scaled to the sampled video length.
  duration_sigma: float = (
    0.8  # Lognormal sigma of segment durations (heavy tail).
  )
  class_duration_sigma: float = 0.4  # Spread of per-class median durations.
  gap_prob: float = (
    0.5  # Probability of a background gap before each segment (and at the end).
  )
  gap_scale: float = (
    0.6  # Median gap duration relative to the median segment duration.
  )
  gap_sigma: float = 1.0  # Lognormal sigma of gap durations.
  min_duration: int = 2  # Frames; every segment and gap is at least this long.
  swap_prob: float = 0.3  # Fraction of adjacent step-group pairs that may swap.
  repeat_prob: float = 0.35  # Fraction of step groups that may repeat.
  # Latent trajectory.
  instance_noise: float = 0.7  # Norm of the per-segment-instance perturbation.
  latent_noise: float = (
    0.7  # Norm of the smooth actor noise (shared by both views).
  )
  boundary_blur: float = (
    1.5  # Gaussian sigma (frames) of the blur across segment boundaries.
  )
  # Rendering.
  view_overlap: float = (
    0.5  # Weight of the shared component in the ego MLP (0: independent).
  )
  exo_noise: float = (
    1.5  # Per-frame white noise std (features are ~unit variance).
  )
  ego_noise: float = 2.5
  exo_style: float = 0.2  # Std of the per-video offset and log-scale shift.
  ego_style: float = 0.4
  camera_bursts: float = (
    0.3  # Expected ego camera-motion bursts per action segment.
  )
  camera_strength: float = 1.5  # Norm of the latent noise during a burst.
  occlusions: float = 0.3  # Expected ego hand occlusions per action segment.
  occlusion_fraction: float = (
    0.5  # Fraction of latent dimensions hidden by an occlusion.
  )
  occlusion_gain: float = 0.15  # What remains of the hidden dimensions.
  # Synchronization jitter of the sync_pairs split: ego frame t shows timeline frame t + offset.
  jitter_mode: str = "none"
  jitter_frames: int = 0
  # jitter_mode="clock": a rig's clocks. Ego frame t shows timeline instant
  # rate * (t + frames dropped before t) + offset, with offset uniform in
  # [-clock_offset, clock_offset] frames, rate uniform in
  # [1 - clock_rate, 1 + clock_rate], and clock_drop_runs runs of 1 to
  # clock_drop_frames missing ego frames at random places; each recording
  # stores that instant per ego frame as `ego_time`.
  clock_offset: int = 0
  clock_rate: float = 0.0
  clock_drop_runs: int = 0
  clock_drop_frames: int = 0
  # Multi-view rigs (docs/multiview.md): exo_views synchronized exo cameras
  # render the same timeline, each with its own MLP, style and noise (at the
  # exo_* levels above); each view is also absent during stretches of its
  # own (exo_occlusions expected per action segment, of about an action's
  # median length: an occlusion or the hands out of frame), where its
  # features are zero and its presence mask 0. View 0 is the `exo` field:
  # the single-view world's exo camera, byte for byte, unless
  # exo_view0_absent lets it lose stretches too (the tests' tiny world, so
  # that some frames miss every view).
  exo_views: int = 1
  exo_occlusions: float = 0.0
  exo_view0_absent: bool = False

  def __post_init__(self):
    # Accept lists (e.g. from the JSON metadata) but store tuples, so the config stays hashable.
    for name in ("segments_range", "frames_range"):
      object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
    if self.jitter_mode not in JITTER_MODES:
      raise ValueError(
        f"jitter_mode must be one of {JITTER_MODES}, got {self.jitter_mode!r}"
      )
    if self.jitter_frames < 0:
      raise ValueError(f"jitter_frames must be >= 0, got {self.jitter_frames}")
    if self.jitter_mode == "none" and self.jitter_frames:
      raise ValueError("jitter_frames is set but jitter_mode is 'none'")
    clock = (
      self.clock_offset,
      self.clock_rate,
      self.clock_drop_runs,
      self.clock_drop_frames,
    )
    if self.jitter_mode != "clock" and any(clock):
      raise ValueError("clock_* parameters need jitter_mode 'clock'")
    if self.jitter_mode == "clock" and self.jitter_frames:
      raise ValueError("jitter_mode 'clock' uses clock_*, not jitter_frames")
    if min(clock) < 0 or self.clock_rate >= 0.5:
      raise ValueError("clock_* must be >= 0 and clock_rate < 0.5")
    if self.clock_drop_runs and not self.clock_drop_frames:
      raise ValueError("clock_drop_runs needs clock_drop_frames >= 1")
    if not 1 <= self.num_actions <= len(_VERBS) * len(_OBJECTS):
      raise ValueError(
        f"num_actions must be in [1, {len(_VERBS) * len(_OBJECTS)}]"
      )
    lo, hi = self.segments_range
    if not 1 <= lo <= hi:
      raise ValueError(f"bad segments_range {self.segments_range}")
    if not 1 <= self.frames_range[0] <= self.frames_range[1]:
      raise ValueError(f"bad frames_range {self.frames_range}")
    if self.min_duration < 1:
      raise ValueError("min_duration must be >= 1")
    if not 0.0 <= self.view_overlap <= 1.0:
      raise ValueError("view_overlap must be in [0, 1]")
    if self.exo_views < 1 or self.exo_occlusions < 0:
      raise ValueError("exo_views must be >= 1 and exo_occlusions >= 0")

  @property
  def num_classes(self) -> int:
    """Number of labels including background."""
    return self.num_actions + 1

  def num_videos(self, split: str) -> int:
    """Number of recordings in ``split``."""
    return {
      "train": self.num_train,
      "sync_pairs": self.num_sync_pairs,
      "validation": self.num_validation,
      "test": self.num_test,
    }[_check_split(split)]


#: For tests: a few seconds to build, 100-400 frames and 10+ segments per video.
TINY = SyntheticConfig(
  num_train=8,
  num_sync_pairs=8,
  num_validation=6,
  num_test=6,
  feature_dim=16,
  latent_dim=16,
  hidden_dim=64,
  num_tasks=4,
  segments_range=(10, 16),
  frames_range=(150, 350),
  # Half the noise std: with a quarter of the feature dims, keeps a similar per-frame SNR.
  exo_noise=0.75,
  ego_noise=1.25,
)

#: The main benchmark (about 140 MB of float32 features, about 125 MB on disk).
DEFAULT = SyntheticConfig()

#: The clock sweep (self-synchronization study): the default world whose
#: sync_pairs ego clocks start up to 300 frames (10 s at 30 fps) apart ...
CLOCK_OFFSET = SyntheticConfig(jitter_mode="clock", clock_offset=300)
#: ... also run up to 0.3% fast or slow ...
CLOCK_RATE = dataclasses.replace(CLOCK_OFFSET, clock_rate=0.003)
#: ... and also drop 3 runs of 1 to 8 frames per recording.
CLOCK_DROPS = dataclasses.replace(
  CLOCK_RATE, clock_drop_runs=3, clock_drop_frames=8
)
#: The multi-view study: the default world (same timelines, labels, ego view
#: and exo view 0, byte for byte, so its single-view rows are the main
#: study's) seen by three more exo cameras, each absent about 5-7% of the
#: time.
MULTIVIEW = dataclasses.replace(DEFAULT, exo_views=4, exo_occlusions=0.1)
#: For tests: the tiny world with four exo views, view 0 absent at times too
#: (so that some frames miss every view).
TINY_MULTIVIEW = dataclasses.replace(
  TINY, exo_views=4, exo_occlusions=0.3, exo_view0_absent=True
)

# Fields whose defaults leave a dataset as it was before multi-view rigs
# (its metadata records them only when set).
_MULTIVIEW_DEFAULTS = {
  "exo_views": 1,
  "exo_occlusions": 0.0,
  "exo_view0_absent": False,
}
# Random streams of the extra views (world) and of each view's rendering
# and absences (recordings); new keys, so the single-view streams are intact.
_STREAM_VIEW_WORLD = 7_001
_STREAM_VIEW, _STREAM_ABSENT = 5, 6


def _check_split(split: str) -> str:
  if split not in SPLITS:
    raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
  return split


def _action_pairs(num_actions: int) -> list[tuple[int, int]]:
  """(verb, object) index of each foreground class, in label order (label = position + 1).

  Walks the verb x object grid along diagonals so every verb and every object is shared by
  several classes (the source of single-frame ambiguity) and names do not depend on the seed.
  """
  nv, no = len(_VERBS), len(_OBJECTS)
  grid = [(v, (v + j) % no) for j in range(no) for v in range(nv)]
  return grid[:num_actions]


def class_names(cfg: SyntheticConfig) -> list[str]:
  """Label names, index = label id; 0 is ``background``."""
  pairs = _action_pairs(cfg.num_actions)
  return list(BACKGROUND_CLASSES) + [
    f"{_VERBS[v]}_{_OBJECTS[o]}" for v, o in pairs
  ]


@dataclasses.dataclass(frozen=True, eq=False)
class _Task:
  groups: tuple[
    tuple[int, ...], ...
  ]  # Step groups (labels), in canonical order.
  swappable: tuple[
    bool, ...
  ]  # swappable[i]: groups i and i + 1 may be swapped.
  repeat: tuple[float, ...]  # Per-group probability of one more repetition.


@dataclasses.dataclass(frozen=True, eq=False)
class _World:
  """Global parameters derived from the config (and its seed) only."""

  tasks: tuple[_Task, ...]
  class_duration: np.ndarray  # (C,) median relative duration per class.
  verb_proto: np.ndarray  # (V, L)
  object_proto: np.ndarray  # (O, L)
  class_proto: (
    np.ndarray
  )  # (C, L) small class-specific part; row 0 is the background prototype.
  drift: np.ndarray  # (C, L) within-segment progression direction.
  reach: np.ndarray  # (L,) shared reach-and-return arc.
  exo_mlp: tuple[np.ndarray, ...]
  ego_mlp: tuple[np.ndarray, ...]
  # Exo views 1..K-1 (view 0 is exo_mlp); empty for single-view worlds.
  view_mlps: tuple[tuple[np.ndarray, ...], ...] = ()


def _random_vectors(
  rng: np.random.Generator, n: int, dim: int, norm: float
) -> np.ndarray:
  """Rows with expected Euclidean norm ``norm``."""
  return rng.normal(0.0, norm / np.sqrt(dim), size=(n, dim))


def _make_tasks(
  cfg: SyntheticConfig, rng: np.random.Generator
) -> tuple[_Task, ...]:
  """Each task works on a few objects; its steps are actions on those objects."""
  pairs = _action_pairs(cfg.num_actions)
  objects = sorted({o for _, o in pairs})
  lo, hi = cfg.segments_range
  # Repetitions lengthen instances, so canonical lengths stay in the lower part of the range.
  base_hi = max(lo, int(round(lo + 0.6 * (hi - lo))))
  tasks = []
  for _ in range(cfg.num_tasks):
    k = min(len(objects), int(rng.integers(3, 6)))
    task_objects = set(rng.choice(objects, size=k, replace=False).tolist())
    pool = [a + 1 for a, (_, o) in enumerate(pairs) if o in task_objects]
    n_steps = int(rng.integers(lo, base_hi + 1))
    steps: list[int] = []
    for _ in range(n_steps):
      choices = [a for a in pool if not steps or a != steps[-1]] or pool
      steps.append(int(rng.choice(choices)))
    groups: list[tuple[int, ...]] = []
    i = 0
    while i < len(steps):
      size = int(rng.integers(1, 4))
      groups.append(tuple(steps[i : i + size]))
      i += size
    swappable = tuple(
      bool(rng.random() < cfg.swap_prob) for _ in range(len(groups) - 1)
    )
    repeat = tuple(
      float(rng.uniform(0.3, 0.6)) if rng.random() < cfg.repeat_prob else 0.0
      for _ in groups
    )
    tasks.append(_Task(tuple(groups), swappable, repeat))
  return tuple(tasks)


def _make_mlp(
  rng: np.random.Generator, cfg: SyntheticConfig
) -> tuple[np.ndarray, ...]:
  """Random 2-layer tanh MLP latent -> feature.

  The large input gain makes the tanh units saturate, so the mapping is far from linear.
  """
  w1 = rng.normal(0.0, 2.0, size=(cfg.latent_dim, cfg.hidden_dim))
  b1 = rng.normal(0.0, 0.5, size=(cfg.hidden_dim,))
  w2 = rng.normal(
    0.0, 1.0 / np.sqrt(cfg.hidden_dim), size=(cfg.hidden_dim, cfg.feature_dim)
  )
  return w1, b1, w2


def _apply_mlp(mlp: tuple[np.ndarray, ...], z: np.ndarray) -> np.ndarray:
  w1, b1, w2 = mlp[:3]
  return np.tanh(z @ w1 + b1) @ w2


def _standardized(
  mlp: tuple[np.ndarray, ...], calib: np.ndarray
) -> tuple[np.ndarray, ...]:
  """Appends output mean/std on typical latents, so noise levels are relative to unit signal."""
  out = _apply_mlp(mlp, calib)
  return (*mlp, out.mean(0), out.std(0) + 1e-6)


def _render(mlp: tuple[np.ndarray, ...], z: np.ndarray) -> np.ndarray:
  _, _, _, mean, std = mlp
  return (_apply_mlp(mlp, z) - mean) / std


@functools.lru_cache(maxsize=8)
def _world(cfg: SyntheticConfig) -> _World:
  rng = np.random.default_rng([cfg.seed, _GLOBAL_STREAM])
  c, l = cfg.num_classes, cfg.latent_dim
  tasks = _make_tasks(cfg, rng)
  class_duration = np.exp(rng.normal(0.0, cfg.class_duration_sigma, size=c))
  verb_proto = _random_vectors(rng, len(_VERBS), l, 1.0)
  object_proto = _random_vectors(rng, len(_OBJECTS), l, 1.0)
  class_proto = _random_vectors(rng, c, l, 0.3)
  class_proto[0] = _random_vectors(rng, 1, l, 1.0)[0]
  drift = _random_vectors(rng, c, l, 0.5)
  reach = _random_vectors(rng, 1, l, 0.5)[0]
  exo = _make_mlp(rng, cfg)
  independent = _make_mlp(rng, cfg)
  a = cfg.view_overlap
  ego = tuple(
    a * e + np.sqrt(1.0 - a * a) * i for e, i in zip(exo, independent)
  )
  # Calibration latents: random verb + object sums with noise, like typical frames.
  v = rng.integers(len(_VERBS), size=4096)
  o = rng.integers(len(_OBJECTS), size=4096)
  calib = verb_proto[v] + object_proto[o] + _random_vectors(rng, 4096, l, 0.6)
  # Extra exo cameras from their own stream: the draws above stay as they
  # were, so a multi-view world is the single-view world plus cameras.
  view_rng = np.random.default_rng([cfg.seed, _STREAM_VIEW_WORLD])
  view_mlps = tuple(
    _standardized(_make_mlp(view_rng, cfg), calib)
    for _ in range(cfg.exo_views - 1)
  )
  return _World(
    tasks=tasks,
    class_duration=class_duration,
    verb_proto=verb_proto,
    object_proto=object_proto,
    class_proto=class_proto,
    drift=drift,
    reach=reach,
    exo_mlp=_standardized(exo, calib),
    ego_mlp=_standardized(ego, calib),
    view_mlps=view_mlps,
  )


def task_steps(cfg: SyntheticConfig) -> list[list[str]]:
  """Canonical step names of each task (for documentation and metadata)."""
  names = class_names(cfg)
  return [[names[a] for g in t.groups for a in g] for t in _world(cfg).tasks]


# ----------------------------------------------------------------------------------------------
# Per-recording generation.


def _task_instance(
  cfg: SyntheticConfig, task: _Task, rng: np.random.Generator
) -> list[int]:
  """Action labels of one recording: swaps, repetitions, truncation to the segment range."""
  groups = list(task.groups)
  repeat = list(task.repeat)
  i = 0
  while i < len(groups) - 1:
    if task.swappable[i] and rng.random() < 0.5:
      groups[i], groups[i + 1] = groups[i + 1], groups[i]
      repeat[i], repeat[i + 1] = repeat[i + 1], repeat[i]
      i += 2  # A group moves at most one place.
    else:
      i += 1
  actions: list[int] = []
  for group, p in zip(groups, repeat):
    n = 1
    while n < 3 and rng.random() < p:
      n += 1
    actions.extend(list(group) * n)
  return actions[: cfg.segments_range[1]]


def _integer_durations(rel: np.ndarray, total: int, minimum: int) -> np.ndarray:
  """Rounds relative durations to integers >= minimum summing to ``total`` (when feasible)."""
  scaled = rel * total / rel.sum()
  ints = np.maximum(minimum, np.floor(scaled)).astype(np.int64)
  diff = total - int(ints.sum())
  if diff > 0:
    order = np.argsort(-(scaled - np.floor(scaled)), kind="stable")
    ints[order[:diff]] += (
      1  # diff < len(ints), since floor loses less than 1 per entry.
    )
  while diff < 0 and ints.max() > minimum:
    ints[int(np.argmax(ints))] -= 1
    diff += 1
  return ints


def _timeline(cfg: SyntheticConfig, task: _Task, rng: np.random.Generator):
  """Segments of one recording as (label, start, end, next_action) with end exclusive."""
  w = _world(cfg)
  actions = _task_instance(cfg, task, rng)
  labels: list[int] = []
  rel: list[float] = []
  for k, a in enumerate(actions):
    # A gap separates repeated identical actions, otherwise they would merge into one segment.
    if rng.random() < cfg.gap_prob or (k > 0 and actions[k - 1] == a):
      labels.append(0)
      rel.append(cfg.gap_scale * np.exp(cfg.gap_sigma * rng.normal()))
    labels.append(a)
    rel.append(w.class_duration[a] * np.exp(cfg.duration_sigma * rng.normal()))
  if rng.random() < cfg.gap_prob:
    labels.append(0)
    rel.append(cfg.gap_scale * np.exp(cfg.gap_sigma * rng.normal()))
  total = int(rng.integers(cfg.frames_range[0], cfg.frames_range[1] + 1))
  durations = _integer_durations(np.asarray(rel), total, cfg.min_duration)
  ends = np.cumsum(durations)
  segments = []
  for k, (lab, end, dur) in enumerate(zip(labels, ends, durations)):
    upcoming = [x for x in labels[k + 1 :] if x != 0]
    segments.append(
      (lab, int(end - dur), int(end), upcoming[0] if upcoming else 0)
    )
  return segments


def _smooth(x: np.ndarray, sigma: float) -> np.ndarray:
  """Gaussian filter along time (axis 0) with edge padding."""
  if sigma <= 0:
    return x
  r = int(np.ceil(3 * sigma))
  k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
  k /= k.sum()
  padded = np.pad(x, ((r, r), (0, 0)), mode="edge")
  return np.stack(
    [np.convolve(padded[:, j], k, mode="valid") for j in range(x.shape[1])], 1
  )


def _smooth_noise(
  rng: np.random.Generator, t: int, dim: int, norm: float, rho: float
):
  """AR(1) process with stationary expected row norm ``norm`` (low-frequency when rho ~ 1)."""
  eps = rng.normal(0.0, norm / np.sqrt(dim), size=(t, dim)) * np.sqrt(
    1.0 - rho * rho
  )
  out = np.empty_like(eps)
  out[0] = rng.normal(0.0, norm / np.sqrt(dim), size=dim)
  for i in range(1, t):
    out[i] = rho * out[i - 1] + eps[i]
  return out


def _latent(
  cfg: SyntheticConfig, segments, rng: np.random.Generator
) -> np.ndarray:
  """Per-frame latent trajectory (T, L) of one recording."""
  w = _world(cfg)
  pairs = _action_pairs(cfg.num_actions)
  t_total, l = segments[-1][2], cfg.latent_dim
  z = np.empty((t_total, l))
  for lab, start, end, nxt in segments:
    n = end - start
    tau = (np.arange(n) + 0.5) / n
    inst = _random_vectors(rng, 1, l, cfg.instance_noise)[0]
    if lab == 0:
      # Idle / reaching for the next part: a trace of the next object, no verb.
      nxt_obj = w.object_proto[pairs[nxt - 1][1]] if nxt else 0.0
      base = w.class_proto[0] + 0.5 * nxt_obj
      z[start:end] = base + inst + np.sin(np.pi * tau)[:, None] * 0.5 * w.reach
    else:
      v, o = pairs[lab - 1]
      base = w.verb_proto[v] + w.object_proto[o] + w.class_proto[lab]
      z[start:end] = (
        base
        + inst
        + (2 * tau - 1)[:, None] * w.drift[lab]
        + np.sin(np.pi * tau)[:, None] * w.reach
      )
  z = _smooth(z, cfg.boundary_blur)
  return z + _smooth_noise(rng, t_total, l, cfg.latent_noise, rho=0.9)


def _bursts(
  rng: np.random.Generator, t: int, rate: float, median: float
) -> list[np.ndarray]:
  """Envelopes (T,) in [0, 1] of Poisson(rate) bursts with smooth ramps and lognormal lengths."""
  envs = []
  for _ in range(rng.poisson(rate)):
    length = max(2, int(round(median * np.exp(0.7 * rng.normal()))))
    start = int(rng.integers(-length // 2, t))
    env = np.zeros(t)
    idx = np.arange(max(0, start), min(t, start + length))
    env[idx] = np.sin(np.pi * (idx - start + 0.5) / length) ** 0.5
    envs.append(env)
  return envs


def _style(
  rng: np.random.Generator, x: np.ndarray, strength: float
) -> np.ndarray:
  """Per-video per-dimension affine style shift (lighting, camera placement, ...)."""
  d = x.shape[1]
  return x * np.exp(strength * rng.normal(size=d)) + strength * rng.normal(
    size=d
  )


def _ego_latent(
  cfg: SyntheticConfig,
  z: np.ndarray,
  n_segments: int,
  median: float,
  rng: np.random.Generator,
) -> np.ndarray:
  """Ego-only nuisances on the latent: camera-motion bursts and hand occlusions."""
  t, l = z.shape
  z = z.copy()
  for env in _bursts(rng, t, cfg.camera_bursts * n_segments, median):
    z += env[:, None] * _smooth_noise(rng, t, l, cfg.camera_strength, rho=0.95)
  hidden = max(1, int(round(cfg.occlusion_fraction * l)))
  for env in _bursts(rng, t, cfg.occlusions * n_segments, median):
    mask = np.zeros(l)
    mask[rng.choice(l, size=hidden, replace=False)] = 1.0
    z *= 1.0 - (1.0 - cfg.occlusion_gain) * env[:, None] * mask
  return z


def _jitter(cfg: SyntheticConfig, split: str, rng: np.random.Generator) -> int:
  if split != "sync_pairs" or cfg.jitter_mode == "none":
    return 0
  if cfg.jitter_mode == "fixed":
    return cfg.jitter_frames
  return int(rng.integers(-cfg.jitter_frames, cfg.jitter_frames + 1))


def _clock(
  cfg: SyntheticConfig, split: str, length: int, rng: np.random.Generator
) -> np.ndarray:
  """The timeline instant (float frames) each ego frame shows."""
  frames = np.arange(length, dtype=np.float64)
  if split != "sync_pairs" or cfg.jitter_mode != "clock":
    return frames
  offset = rng.uniform(-cfg.clock_offset, cfg.clock_offset)
  rate = 1.0 + rng.uniform(-cfg.clock_rate, cfg.clock_rate)
  dropped = np.zeros(length)
  for _ in range(cfg.clock_drop_runs):
    at = int(rng.integers(0, length))
    dropped[at:] += int(rng.integers(1, cfg.clock_drop_frames + 1))
  return rate * (frames + dropped) + offset


def video_id(split: str, index: int) -> str:
  """Unique recording id, e.g. ``sync_pairs_0007``."""
  return f"{_check_split(split)}_{index:04d}"


def generate_video(
  cfg: SyntheticConfig, split: str, index: int
) -> dict[str, Any]:
  """One recording of ``split``; see ``generate_split`` for the fields.

  Separate random streams for timeline, latent, each view and jitter keep e.g. the labels fixed
  when only a rendering parameter changes.
  """
  split_code = SPLITS.index(_check_split(split))
  streams = [
    np.random.default_rng([cfg.seed, split_code, index, s]) for s in range(5)
  ]
  w = _world(cfg)
  task_id = index % cfg.num_tasks
  segments = _timeline(cfg, w.tasks[task_id], streams[_STREAM_TIMELINE])
  labels = np.zeros(segments[-1][2], dtype=np.int32)
  for lab, start, end, _ in segments:
    labels[start:end] = lab
  t = labels.shape[0]
  z = _latent(cfg, segments, streams[_STREAM_LATENT])

  exo_rng = streams[_STREAM_EXO]
  exo = _style(exo_rng, _render(w.exo_mlp, z), cfg.exo_style)
  exo += exo_rng.normal(0.0, cfg.exo_noise, size=exo.shape)

  if cfg.jitter_mode == "clock":
    ego_time = _clock(cfg, split, t, streams[_STREAM_JITTER])
    offset = int(np.rint(ego_time[0]))
    shown = np.clip(np.rint(ego_time), 0, t - 1).astype(np.int64)
  else:
    offset = _jitter(cfg, split, streams[_STREAM_JITTER])
    shown = np.clip(np.arange(t) + offset, 0, t - 1)
  ego_rng = streams[_STREAM_EGO]
  action_durations = [e - s for lab, s, e, _ in segments if lab]
  z_ego = _ego_latent(
    cfg,
    z[shown],
    len(action_durations),
    float(np.median(action_durations)),
    ego_rng,
  )
  ego = _style(ego_rng, _render(w.ego_mlp, z_ego), cfg.ego_style)
  ego += ego_rng.normal(0.0, cfg.ego_noise, size=ego.shape)

  example = {
    "exo": exo.astype(np.float32),
    "ego": ego.astype(np.float32),
    "labels": labels,
    "ego_labels": labels[shown],
    "video_id": video_id(split, index),
    "task_id": np.int32(task_id),
    "jitter": np.int32(offset),
  }
  if cfg.jitter_mode == "clock":
    example["ego_time"] = ego_time.astype(np.float32)
  if cfg.exo_views > 1 or cfg.exo_occlusions:
    views, present = _exo_views(
      cfg, w, z, exo, (split_code, index), action_durations
    )
    example["exo"] = views[0]
    example["exo_views"] = views
    example["exo_present"] = present
  return example


def _exo_views(cfg, w, z, exo, key, action_durations):
  """All exo views (K, T, D) float32 and their presence (K, T) int32: view
  0 is `exo`, view k its own camera; each view (view 0 only with
  exo_view0_absent) then loses its own stretches (features zero, presence
  0)."""
  views = [exo]
  for k, mlp in enumerate(w.view_mlps, 1):
    rng = np.random.default_rng([cfg.seed, *key, _STREAM_VIEW, k])
    view = _style(rng, _render(mlp, z), cfg.exo_style)
    views.append(view + rng.normal(0.0, cfg.exo_noise, size=view.shape))
  t = z.shape[0]
  present = np.ones((len(views), t), np.int32)
  rate = cfg.exo_occlusions * len(action_durations)
  median = float(np.median(action_durations))
  for k in range(0 if cfg.exo_view0_absent else 1, len(views)):
    rng = np.random.default_rng([cfg.seed, *key, _STREAM_ABSENT, k])
    for env in _bursts(rng, t, rate, median):
      present[k, env > 0] = 0
  views = (np.stack(views) * present[..., None]).astype(np.float32)
  return views, present


def exo_view_names(cfg: SyntheticConfig) -> list[str]:
  """Names of the exo cameras, in view order (exo0 is the `exo` field)."""
  return [f"exo{k}" for k in range(cfg.exo_views)]


def generate_split(
  cfg: SyntheticConfig, split: str
) -> Iterator[tuple[str, dict[str, Any]]]:
  """Yields ``(video_id, example)`` for every recording of ``split``.

  Example fields: ``exo`` and ``ego`` (T, D) float32 features of the two cameras; ``labels`` (T,)
  int32 labels of the exo timeline; ``ego_labels`` (T,) int32 labels of what each ego frame shows
  (equal to ``labels`` without jitter); ``video_id`` str; ``task_id`` and ``jitter`` int32 scalars.
  Multi-view worlds add ``exo_views`` (K, T, D) float32 and ``exo_present`` (K, T) int32 (1 where
  the view sees the frame); ``exo`` is then view 0, zero where it is absent.
  """
  for index in range(cfg.num_videos(split)):
    example = generate_video(cfg, split, index)
    yield example["video_id"], example


def metadata(cfg: SyntheticConfig) -> dict[str, Any]:
  """JSON-serializable dataset metadata: label names, background, dims and every parameter."""
  multiview = any(getattr(cfg, k) != v for k, v in _MULTIVIEW_DEFAULTS.items())
  meta = {
    "class_names": class_names(cfg),
    "background_classes": list(BACKGROUND_CLASSES),
    "feature_dim": cfg.feature_dim,
    "fps": cfg.fps,
    "task_steps": task_steps(cfg),
    "generation": {
      k: list(v) if isinstance(v, tuple) else v
      for k, v in dataclasses.asdict(cfg).items()
      # Other modes record no clock parameters (their metadata as before).
      if cfg.jitter_mode == "clock" or not k.startswith("clock_")
      # Nor single-view worlds their multi-view parameters.
      if k not in _MULTIVIEW_DEFAULTS or multiview
    },
  }
  if multiview:
    meta["exo_view_names"] = exo_view_names(cfg)
  return meta
