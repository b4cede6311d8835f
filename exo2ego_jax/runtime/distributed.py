"""Multi-host start-up: joins the JAX distributed system when a launcher asks.

A run is multi-process only when its launcher says so, explicitly, through
the environment (so the same command works on a laptop and on a pod):

  EXO2EGO_DISTRIBUTED=1   join; JAX finds the coordinator, the process count
                          and this process's id itself on Cloud TPU pods,
                          SLURM and Open MPI (launch/tpu_pod.sh sets this).
  JAX_COORDINATOR_ADDRESS=host:port   join with an explicit cluster, also
                          read: JAX_NUM_PROCESSES, JAX_PROCESS_ID and
                          JAX_LOCAL_DEVICE_IDS (launch/slurm_job.sh sets all
                          four: one process per node driving all its GPUs).
  EXO2EGO_DISTRIBUTED=0   never join, even if the variables above are set.

Nothing set: a single process (one CPU, or all GPUs of one machine).
`jax.distributed.initialize` must run before anything touches a device, so
entry points call `initialize()` first; it is idempotent.
"""

from __future__ import annotations

import os
from typing import Mapping

import jax
from jax.experimental import multihost_utils
import numpy as np

ENABLE_VAR = "EXO2EGO_DISTRIBUTED"


def requested(environ: Mapping[str, str] = os.environ) -> bool:
  """Whether the environment asks this process to join a multi-host run."""
  flag = environ.get(ENABLE_VAR, "").strip().lower()
  if flag in ("0", "false", "no"):
    return False
  return flag in ("1", "true", "yes") or bool(
    environ.get("JAX_COORDINATOR_ADDRESS")
  )


def cluster_args(environ: Mapping[str, str] = os.environ) -> dict:
  """Explicit `jax.distributed.initialize` arguments found in the environment
  (JAX itself reads only the coordinator address and the local devices)."""
  args = {}
  for name, key in (
    ("num_processes", "JAX_NUM_PROCESSES"),
    ("process_id", "JAX_PROCESS_ID"),
  ):
    if environ.get(key):
      args[name] = int(environ[key])
  return args


def initialize(environ: Mapping[str, str] = os.environ) -> bool:
  """Joins the distributed system if requested; True if this process is (now)
  part of one."""
  if jax.distributed.is_initialized():
    return True
  if not requested(environ):
    return False
  jax.distributed.initialize(**cluster_args(environ))
  return True


def any_process(flag: bool) -> bool:
  """Whether `flag` is set on any process. Multi-host runs must take the same
  branch together (a checkpoint save, an early return), or they deadlock in
  the next collective; a SIGTERM may reach some hosts before others."""
  if jax.process_count() == 1:
    return bool(flag)
  flags = multihost_utils.process_allgather(np.asarray(flag))
  return bool(np.any(flags))
