"""Live inference of a causal_tcn run: one step (or a small chunk) in, that
step's class probabilities out.

`OnlineSegmenter` keeps, for every causal layer, a ring buffer of the
(kernel - 1) * dilation most recent inputs of that layer, so a new step costs
one pass through the network at one time step: no recomputation of the past.
The buffers start at zeros, the zero history the whole-recording forward pads
with, so feeding a recording step by step gives the whole-recording outputs
(float32 rounding: the per-step sums run in another order; tests/
test_causal.py bounds the difference). BatchNorm uses its running statistics
(eval mode), a per-step affine map. The step is jit-compiled once per chunk
length; the state stays on the device.

A model step is data.chunk_size frames max-pooled, as training and
evaluation pool them; `push_frames` does that pooling for a frame stream and
labels every frame with the newest finished step (what a live system knows
when the frame arrives).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from exo2ego_jax.models import c2f_tcn
from exo2ego_jax.models import causal_tcn


def init_buffers(model: causal_tcn.CausalTCN) -> dict:
  """Zero ring buffers (one per layer: (k - 1) * dilation steps of width
  `features`) and the count of steps fed so far."""
  return {
    "t": jnp.zeros((), jnp.int32),
    "layers": tuple(
      jnp.zeros(((model.kernel_size - 1) * d, model.features), jnp.float32)
      for _ in range(model.stages)
      for d in model.layer_dilations
    ),
  }


def _dense(params: dict, x: jax.Array) -> jax.Array:
  return x @ params["kernel"] + params["bias"]


def step(
  model: causal_tcn.CausalTCN,
  variables: dict,
  ensemble_weights: tuple[float, ...],
  buffers: dict,
  x: jax.Array,
) -> tuple[dict, jax.Array]:
  """One step (D,) through the network: (new buffers, (C,) ensemble
  probabilities), the same function as CausalTCN at that step."""
  params, stats = variables["params"], variables["batch_stats"]
  t = buffers["t"]
  rings = iter(buffers["layers"])
  new_layers, logits = [], {}
  owners = causal_tcn.head_stages(model.stages)
  for stage in range(model.stages):
    prefix = f"s{stage}_" if stage else ""
    if stage:
      previous = list(logits.values())[-1]  # the last stage's last head
      h = _dense(params[f"{prefix}project"], jax.nn.softmax(previous))
    else:
      h = _dense(params["project"], x)
      bn, running = params["bn"], stats["bn"]
      multiplier = bn["scale"] * jax.lax.rsqrt(running["var"] + 1e-5)
      h = jax.nn.relu((h - running["mean"]) * multiplier + bn["bias"])
    for i, d in enumerate(model.layer_dilations):
      ring = next(rings)
      size = ring.shape[0]
      conv = params[f"{prefix}c{i}"]["conv"]
      k = model.kernel_size
      # Tap j of the kernel reads the input (k - 1 - j) * d steps back;
      # the ring holds input s at s % size.
      taps = [ring[(t - (k - 1 - j) * d) % size] for j in range(k - 1)]
      out = conv["bias"] + sum(
        tap @ conv["kernel"][j] for j, tap in enumerate(taps + [h])
      )
      new_layers.append(ring.at[t % size].set(h))
      h = h + _dense(params[f"{prefix}mix{i}"], jax.nn.relu(out))
    features = jax.nn.relu(h)
    for name, owner in zip(causal_tcn.HEADS, owners):
      if owner == stage:
        logits[name] = _dense(params[name], features)
  total = float(sum(ensemble_weights))
  probs = sum(
    w / total * jax.nn.softmax(logits[name])
    for w, name in zip(ensemble_weights, causal_tcn.HEADS)
  )
  return {"t": t + 1, "layers": tuple(new_layers)}, probs


class OnlineSegmenter:
  """A causal_tcn run's network as a live, stateful predictor."""

  def __init__(
    self,
    model: causal_tcn.CausalTCN,
    variables: dict,
    ensemble_weights=(1.0,) * 6,
    chunk_size: int = 1,
  ):
    self.model = model
    self.variables = jax.device_put(variables)
    self.ensemble_weights = tuple(float(w) for w in ensemble_weights)
    self.chunk_size = int(chunk_size)
    self.num_classes = model.num_classes

    def run(variables, buffers, xs):
      return jax.lax.scan(
        functools.partial(step, model, variables, self.ensemble_weights),
        buffers,
        xs,
      )

    self._run = jax.jit(run, donate_argnums=1)
    self.reset()

  @classmethod
  def from_workdir(cls, workdir: str, which: str = "best"):
    """The network of a finished causal_tcn training run (its best
    checkpoint by default)."""
    from exo2ego_jax.runtime import checkpoints
    from exo2ego_jax.training import trainer

    config = ml_collections.ConfigDict(trainer.read_run_config(workdir))
    if config.model.get("name", "c2f_tcn") != causal_tcn.NAME:
      raise ValueError(
        f"{workdir} trained config.model.name="
        f"{config.model.get('name', 'c2f_tcn')!r}, which sees the future: "
        f"live inference needs a {causal_tcn.NAME!r} run "
        f"(configs/synthetic_causal_*.py)"
      )
    _, state = checkpoints.restore_state(workdir, which)
    num_classes = state["params"]["y"]["kernel"].shape[-1]
    model = trainer.build_model(config, num_classes)
    variables = {
      "params": state["params"],
      "batch_stats": state["batch_stats"],
    }
    segmenter = cls(
      model,
      variables,
      config.model.ensemble_weights,
      config.data.chunk_size,
    )
    segmenter.config = config
    return segmenter

  @property
  def feature_dim(self) -> int:
    return self.variables["params"]["project"]["kernel"].shape[0]

  def reset(self) -> None:
    """Forget the past: a new recording starts."""
    self.buffers = init_buffers(self.model)
    self._pending = []  # frames of the unfinished step (push_frames)
    self._last = np.full(self.num_classes, 1.0 / self.num_classes, np.float32)

  def steps(self, x) -> np.ndarray:
    """Feeds (D,) one step or (n, D) n consecutive steps; returns their
    (n, C) ensemble probabilities (blocks until computed)."""
    x = jnp.asarray(x, jnp.float32)
    single = x.ndim == 1
    xs = x[None] if single else x
    if xs.shape[-1] != self.feature_dim:
      raise ValueError(
        f"features of dimension {xs.shape[-1]}; this run's model takes "
        f"{self.feature_dim}"
      )
    self.buffers, probs = self._run(self.variables, self.buffers, xs)
    probs = np.asarray(probs)
    self._last = probs[-1]
    return probs

  def push_frames(self, frames) -> np.ndarray:
    """Feeds (n, D) frames; returns the (n, C) probabilities a live system
    shows at each frame: those of the newest step finished by then (a step
    is data.chunk_size frames, max-pooled, as training pools them)."""
    frames = np.asarray(frames, np.float32)
    out = np.empty((len(frames), self.num_classes), np.float32)
    for i, frame in enumerate(frames):
      self._pending.append(frame)
      if len(self._pending) == self.chunk_size:
        self.steps(np.max(np.stack(self._pending), axis=0))
        self._pending = []
      out[i] = self._last
    return out


class Debounce:
  """Causal smoothing of a label stream: a new label is shown once it has
  been the argmax for `steps` consecutive steps (steps <= 1: off). Removes
  flicker shorter than `steps` at the cost of that many steps' delay at a
  true change."""

  def __init__(self, steps: int):
    self.steps = max(1, int(steps))
    self.shown = None
    self.candidate, self.run = None, 0

  def push(self, label: int) -> int:
    if self.shown is None:
      self.shown = label
    if label == self.candidate:
      self.run += 1
    else:
      self.candidate, self.run = label, 1
    if label != self.shown and self.run >= self.steps:
      self.shown = label
    return self.shown


def debounced(labels: np.ndarray, steps: int) -> np.ndarray:
  """`Debounce` applied to a whole step-label sequence."""
  smoother = Debounce(steps)
  return np.asarray([smoother.push(int(k)) for k in labels], np.int64)


class Hysteresis:
  """Causal smoothing of a probability stream: the shown label changes to
  the argmax class only when its probability beats the shown class's by
  more than `margin` (0: the plain argmax). A confident change is shown at
  once; a near tie, which flickers, keeps the label shown."""

  def __init__(self, margin: float):
    if not 0 <= margin < 1:
      raise ValueError(f"smoothing margin {margin} must be in [0, 1)")
    self.margin = float(margin)
    self.shown = None

  def push(self, probs: np.ndarray) -> int:
    best = int(np.argmax(probs))
    if self.shown is None or (
      best != self.shown and probs[best] - probs[self.shown] > self.margin
    ):
      self.shown = best
    return self.shown


class Smoother:
  """The live label of a probability stream: `Hysteresis(margin)`, then
  `Debounce(steps)` (margin 0 and steps 1: the argmax). Causal: the label
  of a step reads only that step's and earlier probabilities."""

  def __init__(self, margin: float = 0.0, steps: int = 1):
    self._hysteresis, self._debounce = Hysteresis(margin), Debounce(steps)

  def push(self, probs: np.ndarray) -> int:
    return self._debounce.push(self._hysteresis.push(probs))


def smoothed(probs: np.ndarray, margin: float, steps: int) -> np.ndarray:
  """`Smoother` applied to a whole (steps, C) probability sequence."""
  smoother = Smoother(margin, steps)
  return np.asarray([smoother.push(p) for p in probs], np.int64)


def live_frames(step_labels: np.ndarray, chunk: int, length: int) -> np.ndarray:
  """The label shown at each of `length` frames when step s is known once
  its last frame (s * chunk + chunk - 1) has arrived: frame f shows step
  (f + 1) // chunk - 1. The chunk - 1 frames before the first step show the
  first step's label (the scores count that short wait as its label). A
  last partial chunk is pooled over its frames when the recording ends."""
  frame = np.arange(length)
  index = np.maximum((frame + 1) // chunk - 1, 0)
  index[-1] = len(step_labels) - 1  # the recording's end closes its chunk
  return np.asarray(step_labels)[np.minimum(index, len(step_labels) - 1)]


class RecordingForward:
  """The whole-recording causal forward of a segmenter's network (frames
  max-pooled into steps, as evaluation pools them): by causality it is what
  the segmenter gives step by step. Lengths are padded to multiples of
  `bucket` steps (later steps never reach earlier ones), so few shapes
  compile."""

  def __init__(self, segmenter: OnlineSegmenter, bucket: int = 256):
    self.segmenter = segmenter
    self.bucket = bucket
    model, weights = segmenter.model, segmenter.ensemble_weights

    def forward(variables, x):
      outputs = model.apply(variables, x, train=False)
      return c2f_tcn.ensemble_probs(outputs, weights)

    self._forward = jax.jit(forward)

  def step_probs(self, frames: np.ndarray) -> np.ndarray:
    from exo2ego_jax.data import input_pipeline

    steps = input_pipeline.pool_chunks(frames, self.segmenter.chunk_size)
    size = -(-len(steps) // self.bucket) * self.bucket
    padded = np.zeros((1, size, steps.shape[1]), np.float32)
    padded[0, : len(steps)] = steps
    probs = self._forward(self.segmenter.variables, padded)
    return np.asarray(probs[0, : len(steps)])
