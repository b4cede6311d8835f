"""What every method declares, and the defaults most methods share.

A method is a frozen dataclass: its fields are the static pieces a compiled
step closes over (the C2F-TCN module, loss weights, ...), built from the
config by `from_config`; its class attributes declare what the run needs
(teacher, adapter, labels, synchronized pairs). The trainer asks these
questions and calls the hooks; it never tests a method's name.

A run's state is a plain dict of pytrees:
  step, params (what the optimiser updates), batch_stats (BatchNorm statistics
  of the model being trained, empty when none), opt_state,
  frozen (parameters the run uses but never updates: the teacher, a trained
  adapter; empty for supervised runs).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from exo2ego_jax.methods import registry
from exo2ego_jax.models import c2f_tcn

# The kind of run --config.teacher_workdir must point to.
TEACHER_RUN = "an exo_supervised run"


def params_fit(module: nn.Module, params: dict, feature_dim: int) -> bool:
  """Whether `params` (e.g. restored from another run) have the shapes of
  `module`'s parameters for `feature_dim`-d features."""
  x = jnp.zeros((1, 8, feature_dim))
  expected = jax.eval_shape(lambda: module.init(jax.random.key(0), x))
  want = jax.tree.map(lambda a: a.shape, expected["params"])
  return want == jax.tree.map(lambda a: tuple(a.shape), params)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Method:
  """A training method: declarations (class attributes) and hooks."""

  name: ClassVar[str] = ""  # set by registry.register
  # Whether the run starts from (and keeps frozen) a trained teacher
  # (config.teacher_workdir).
  loads_teacher: ClassVar[bool] = False
  # Whether it uses the adapter of a finished adapter-training run
  # (config.adapter_workdir), frozen.
  loads_adapter: ClassVar[bool] = False
  # Whether what it trains is a feature adapter (params are the adapter's).
  trains_adapter: ClassVar[bool] = False
  # Whether it trains on synchronized pairs as such, so that
  # config.data.sync_offset (a deliberate synchronization error) means
  # something.
  trains_on_sync_pairs: ClassVar[bool] = False
  # Whether it trusts no timestamp but reads both streams whole, so that
  # config.data.sync_offset means the recordings a rig with that clock
  # error gives: the ego streams are shifted before the method reads them
  # (not the windows after), as `sync/resync.py` puts the error in.
  sync_offset_at_source: ClassVar[bool] = False
  # Whether its runs can serve as a teacher (supervised on labels).
  is_teacher: ClassVar[bool] = False
  # Whether training reads the dataset's labels (config.data.label_key);
  # False: label-blind (a test poisons every label and expects identical
  # training).
  reads_labels: ClassVar[bool] = True

  model: nn.Module
  ensemble_weights: tuple[float, ...] = (1.0,) * 6
  smooth_weight: float = 0.17
  # How the supervised loss averages its smoothing term
  # (losses.SMOOTH_AVERAGES).
  smooth_average: str = "valid_pairs"
  train_view: str = "exo"  # the view the trained network is fed
  label_key: str | None = None  # field the training pipeline reads as labels
  adapter: nn.Module | None = None
  # The frozen teacher's network when it differs from `model` (a causal
  # student of the offline C2F-TCN teacher); None: the same module.
  teacher_model: nn.Module | None = None

  @property
  def teacher_net(self) -> nn.Module:
    """The module the frozen teacher's variables belong to."""
    return self.model if self.teacher_model is None else self.teacher_model

  # ----- Declarations that depend on the run's settings. -----

  @property
  def input_views(self) -> tuple[str, ...]:
    """Views a training batch must carry."""
    return (self.train_view,)

  @property
  def labels_read(self) -> str | None:
    """The dataset label field training reads (None: label-blind)."""
    return self.label_key if self.reads_labels else None

  # ----- Building from the config. -----

  @classmethod
  def check_config(cls, config: ml_collections.ConfigDict, info) -> None:
    """Raises ValueError for settings this method cannot run with."""
    if cls.loads_teacher and not config.teacher_workdir:
      raise ValueError(
        f"mode {cls.name} needs a teacher: set "
        f"--config.teacher_workdir to {TEACHER_RUN}"
      )
    if cls.loads_adapter and not config.adapter_workdir:
      trainers = " or ".join(registry.names(where=lambda m: m.trains_adapter))
      raise ValueError(
        f"mode {cls.name} needs a trained adapter: set "
        f"--config.adapter_workdir to a {trainers} run"
      )

  @classmethod
  def settings(cls, config: ml_collections.ConfigDict, info) -> dict:
    """The method's own fields, read from its config section."""
    del info
    return {"label_key": config.data.label_key}

  @classmethod
  def from_config(
    cls, config: ml_collections.ConfigDict, info, **shared
  ) -> "Method":
    """Checks the config and builds the method; `shared`: the fields every
    method has (model, ensemble_weights, smooth_*, train_view)."""
    cls.check_config(config, info)
    return cls(**shared, **cls.settings(config, info))

  # ----- Hooks of a run (defaults: a supervised C2F-TCN). -----

  def data_sources(self, sources: dict) -> dict:
    """The dataset's splits as the run reads them for training, validation
    and testing (e.g. another exo view as `exo`)."""
    return sources

  def frozen_parts(
    self, config: ml_collections.ConfigDict, info, loaded: dict
  ) -> dict:
    """Frozen parts beyond the teacher and adapter (e.g. more teachers),
    each restored with `runtime.frozen.restore(workdir, loaded, role)`
    under its role as key."""
    del config, info, loaded
    return {}

  def train_source(
    self, frozen: dict, source, config: ml_collections.ConfigDict, workdir: str
  ):
    """The data source training reads (e.g. with pseudo-labels added)."""
    del frozen, config, workdir
    return source

  def training_windows(
    self,
    train_ds,
    sources: dict,
    config: ml_collections.ConfigDict,
    batch_size: int,
  ):
    """The training dataset, with any extra windows the loss needs."""
    del sources, config, batch_size
    return train_ds

  def for_run_length(self, total_steps: int) -> "Method":
    """The method for a run of `total_steps` steps (schedules)."""
    del total_steps
    return self

  def init_params(
    self, rng: jax.Array, frozen: dict, feature_dim: int
  ) -> tuple[dict, dict]:
    """Initial (params, batch_stats) of what the run trains."""
    del frozen
    x = jnp.zeros((1, 8, feature_dim))
    mask = jnp.ones((1, 8))
    variables = self.model.init(rng, x, mask)
    return variables["params"], variables["batch_stats"]

  def model_variables(self, state: dict) -> dict:
    """The C2F-TCN variables the run predicts with."""
    return {"params": state["params"], "batch_stats": state["batch_stats"]}

  def adapt(
    self, state: dict, features: jax.Array, mask: jax.Array
  ) -> jax.Array:
    """Features of the run's view as the C2F-TCN gets them (identity)."""
    del state, mask
    return features

  def train_forward(
    self, params: dict, state: dict, batch: dict
  ) -> tuple[dict, dict, jax.Array]:
    """The trained C2F-TCN on the batch's view in training mode: its
    outputs, the BatchNorm updates and the ensemble probabilities."""
    mask = batch["mask"]
    variables = {"params": params, "batch_stats": state["batch_stats"]}
    x = self.adapt(state, batch[self.train_view], mask)
    outputs, updates = self.model.apply(
      variables, x, mask, train=True, mutable=["batch_stats"]
    )
    probs = c2f_tcn.ensemble_probs(outputs, self.ensemble_weights)
    return outputs, updates, probs

  def predict_probs(
    self, state: dict, features: jax.Array, mask: jax.Array
  ) -> jax.Array:
    """Ensemble class probabilities (B, T, C) for features of the view."""
    x = self.adapt(state, features, mask)
    outputs = self.model.apply(
      self.model_variables(state), x, mask, train=False
    )
    return c2f_tcn.ensemble_probs(outputs, self.ensemble_weights)

  def loss(
    self, params: dict, state: dict, batch: dict
  ) -> tuple[jax.Array, tuple[dict, dict]]:
    """The training objective. Returns loss, (new batch_stats, logs)."""
    raise NotImplementedError(self.name)
