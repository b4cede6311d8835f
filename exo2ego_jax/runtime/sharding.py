"""The device mesh and the array shardings of every command: the one place
that builds a mesh (training, evaluation, feature extraction and backbone
distillation all ask it).

Every run is data parallel: one `data` axis over the devices, parameters
and optimiser state replicated, batches split along their leading axis.
Two choices remain, and they are made here:

* Which devices: every device of every host (training, evaluation,
  distill_backbone), or this host's own (extract_features: each host
  extracts its own share of the videos).
* Axis types. The temporal model runs on an Explicit axis (sharding in
  types: models/winograd.py reads the batch's sharding from its type).
  The ViT backbone runs on an Auto axis: it mixes replicated parameters
  (CLS token, positions) with batch-sharded activations, which Explicit
  axes refuse to combine.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import numpy as np

DATA_AXIS = "data"


@dataclasses.dataclass(frozen=True)
class DataParallel:
  """A one-axis mesh and the shardings a data-parallel program uses."""

  mesh: jax.sharding.Mesh

  @property
  def replicated(self) -> jax.sharding.NamedSharding:
    """Every device holds the whole array (parameters, optimiser state)."""
    return jax.sharding.NamedSharding(self.mesh, jax.sharding.PartitionSpec())

  @property
  def batch(self) -> jax.sharding.NamedSharding:
    """The leading axis split over the devices (batches, windows)."""
    return jax.sharding.NamedSharding(
      self.mesh, jax.sharding.PartitionSpec(DATA_AXIS)
    )

  @property
  def member_batch(self) -> jax.sharding.NamedSharding:
    """Batches of several members (training/members.py): the member axis
    whole on every device, the batch axis after it split."""
    return jax.sharding.NamedSharding(
      self.mesh, jax.sharding.PartitionSpec(None, DATA_AXIS)
    )

  @property
  def size(self) -> int:
    return self.mesh.devices.size

  def check_divides(self, key: str, value: int) -> None:
    """A global batch size (config `key`) must split evenly."""
    if value % self.size:
      raise ValueError(
        f"{key}={value} must be a multiple of the {self.size} devices"
      )

  def from_process_rows(self, rows: np.ndarray) -> jax.Array:
    """A global batch from this process's own rows (each host passes its
    share, in process order)."""
    return jax.make_array_from_process_local_data(self.batch, rows)

  def from_member_rows(self, rows: np.ndarray) -> jax.Array:
    """A global (members, batch, ...) array from this process's rows of
    every member's batch."""
    return jax.make_array_from_process_local_data(self.member_batch, rows)

  def from_shared_batch(self, batch: np.ndarray) -> jax.Array:
    """A global batch from one that every process holds in full: each
    process contributes its own rows (multi-host safe)."""
    rows = len(batch) // jax.process_count()
    mine = batch[jax.process_index() * rows : (jax.process_index() + 1) * rows]
    return self.from_process_rows(mine)

  def from_host_array(self, array: np.ndarray) -> jax.Array:
    """`array`, held whole by every process, sharded along its leading
    axis (each device reads its own slice)."""
    return jax.make_array_from_callback(
      array.shape, self.batch, lambda index: array[index]
    )


def data_parallel(
  local: bool = False,
  auto_axes: bool = False,
  devices: Sequence[jax.Device] | None = None,
) -> DataParallel:
  """The data-parallel mesh over every device of every host (`local`: over
  this process's devices; `devices`: over exactly those, for tests).
  `auto_axes`: an Auto axis, for the ViT backbone (see the module doc)."""
  if devices is None and local:
    devices = jax.local_devices()
  kwargs = {"devices": devices} if devices is not None else {}
  if auto_axes:
    kwargs["axis_types"] = (jax.sharding.AxisType.Auto,)
  count = len(devices) if devices is not None else jax.device_count()
  # Without `devices`, make_mesh orders all devices by the hardware topology.
  return DataParallel(jax.make_mesh((count,), (DATA_AXIS,), **kwargs))
