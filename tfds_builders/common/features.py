"""Feature inputs of a build: per-recording array files and per-frame LMDBs."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from tfds_builders.common.errors import DataError


def load_feature_file(path: os.PathLike) -> np.ndarray:
  """A (T, D) feature array from `.npy` (memory-mapped) or `.pt` (needs torch)."""
  path = os.fspath(path)
  if path.endswith(".npy"):
    try:
      array = np.load(path, mmap_mode="r")  # read frames on demand
    except ValueError:  # e.g. an empty array cannot be memory-mapped
      array = np.load(path)
  elif path.endswith(".pt"):
    try:
      import torch  # pylint: disable=import-outside-toplevel
    except ImportError:
      raise DataError(
        f"{path}: reading .pt features needs torch (pip install torch), or "
        "convert them once to .npy next to it: python -c \"import sys, numpy, "
        "torch; [numpy.save(p[:-3] + '.npy', torch.load(p).float().numpy()) "
        "for p in sys.argv[1:]]\" <files>"
      ) from None
    array = torch.load(path, map_location="cpu").float().numpy()
  else:
    raise DataError(f"{path}: features must be .npy or .pt files")
  if array.ndim != 2:
    raise DataError(
      f"{path}: features must have shape (frames, dim), got {array.shape}"
    )
  return array


class LmdbViews:
  """Per-frame features in LMDB environments (one per view), read one recording at a time.

  Values are raw float32 vectors (`np.frombuffer`), as in the Assembly101 TSM
  and DINOv2 releases.
  """

  def __init__(self):
    self._envs = {}

  def env(self, path: str):
    if path not in self._envs:
      if not os.path.exists(os.path.join(path, "data.mdb")):
        raise DataError(
          f"no LMDB environment at {path} (expected "
          f"{os.path.join(path, 'data.mdb')}): check the manual dir "
          "layout in the builder's README"
        )
      try:
        import lmdb  # pylint: disable=import-outside-toplevel
      except ImportError:
        raise DataError(
          "reading LMDB features needs the lmdb package: pip install lmdb"
        ) from None
      self._envs[path] = lmdb.open(
        path, readonly=True, lock=False, readahead=False
      )
    return self._envs[path]

  def close(self) -> None:
    """Closes the environments: LMDB refuses to open one twice in a process,
    e.g. when a build is retried after a failed one."""
    for env in self._envs.values():
      env.close()
    self._envs.clear()

  def read(
    self, path: str, keys: Sequence[str], dim: int, fix: str | None = None
  ) -> tuple[np.ndarray, np.ndarray]:
    """(len(keys), dim) float32 features and the (len(keys),) mask of keys found.

    A value of another size is a DataError naming the key; `fix` replaces its
    advice (use a config with the data's dimension)."""
    out = np.zeros((len(keys), dim), np.float32)
    present = np.zeros(len(keys), bool)
    with self.env(path).begin(buffers=True) as txn:
      for i, key in enumerate(keys):
        value = txn.get(key.encode("utf-8"))
        if value is None:
          continue
        if len(value) != 4 * dim:
          raise DataError(
            f"{path}: key {key!r} holds {len(value)} bytes, a "
            f"{len(value) / 4:g}-D float32 vector, but the config declares "
            f"feature_dim={dim}; "
            + (fix or "use a config with the data's dimension")
          )
        vector = np.frombuffer(value, np.float32)
        out[i] = vector
        present[i] = True
    return out, present
