"""How every builder of the project (the synthetic one too) behaves under
tfds: byte-identical files, build messages as log lines, and a forced
rebuild that keeps the previous build until it succeeds."""

from __future__ import annotations

import contextlib
import logging
import os

from etils import epath
import tensorflow_datasets as tfds
from tensorflow_datasets.core import example_serializer

# In the project's logger tree, which the commands print (runtime.cli).
log = logging.getLogger("exo2ego_jax.builders")


class _NoVariantNoise(logging.Filter):
  """Drops TFDS's "Variant folder ... has no dataset_info.json" warning,
  which every first build of a dataset prints (its folder is not yet there)."""

  def filter(self, record):
    return not str(record.msg).startswith("Variant folder %s has no")


logging.getLogger("absl").addFilter(_NoVariantNoise())


@contextlib.contextmanager
def deterministic_serialization():
  """Makes tfds write the same bytes in every process.

  tfds serializes each `tf.train.Example` with plain `SerializeToString()`,
  whose feature-map order is the protobuf runtime's hash order, different in
  every process; `deterministic=True` sorts the map keys.
  """
  cls = example_serializer.ExampleSerializer
  original = cls.serialize_example

  def serialize_example(self, example):
    return self.get_tf_example(example).SerializeToString(deterministic=True)

  cls.serialize_example = serialize_example
  try:
    yield
  finally:
    cls.serialize_example = original


class NotOnBucket:
  """The project's datasets are never on TFDS's public bucket, yet TFDS
  looks there for precomputed info whenever a builder is made before its
  data exists, and each look leaves an empty /tmp/tmp*tfds folder behind
  (hundreds after a day of builds and tests). The info is made here: the
  look is skipped."""

  def dataset_info_from_configs(self, **kwargs):
    info = super().dataset_info_from_configs(**kwargs)
    info.initialize_from_bucket = lambda: None
    return info


class BuildMessages:
  """TFDS's build messages ("Downloading and preparing dataset Unknown
  size ...", printed to stdout) as a line each of the project's logger."""

  def _log_download_bytes(self):
    log.info("building %s in %s ...", self.info.full_name, self.data_dir)

  def _log_download_done(self):
    log.info("built %s in %s", self.info.full_name, self.data_dir)


PREVIOUS_SUFFIX = ".previous"
_KEEPING_PATHS = {}


class _SetAsideOnDelete:
  """Mixed into the path class of one dataset folder: its rmtree() renames
  the folder to `<folder>.previous` instead (other paths delete as usual)."""

  folder = ""

  def rmtree(self, missing_ok: bool = False) -> None:
    if os.fspath(self) != self.folder or not self.exists():
      return super().rmtree(missing_ok=missing_ok)
    backup = epath.Path(self.folder + PREVIOUS_SUFFIX)
    if backup.exists():  # left by a crash after a rebuild had succeeded
      backup.rmtree()
    logging.warning(
      "Setting %s aside as %s until the rebuild succeeds", self.folder, backup
    )
    epath.Path(self.folder).rename(backup)


class KeepPreviousBuild:
  """Mixin of the project's builders: a forced rebuild (`tfds build
  --overwrite`, or `download_mode=FORCE_REDOWNLOAD` / REUSE_CACHE_IF_EXISTS
  from Python) never leaves less than before.

  Both tfds paths delete the dataset folder with `data_path.rmtree()` before
  the new build starts (the `tfds build` command does it before any of the
  builder's code runs but its constructor). Here `data_path` is a path whose
  rmtree() sets the folder aside as `<folder>.previous`; the build then
  writes into tfds' temporary folder, and `<folder>.previous` is deleted
  after success or renamed back after a failure (or, if the process died,
  by the next build or opening of that dataset).
  """

  @property
  def data_path(self):
    path = super().data_path
    folder = os.fspath(path)
    key = (type(path), folder)
    if key not in _KEEPING_PATHS:
      _KEEPING_PATHS[key] = type(
        f"Keeping{type(path).__name__}",
        (_SetAsideOnDelete, type(path)),
        {"folder": folder},
      )
    return _KEEPING_PATHS[key](folder)

  def download_and_prepare(self, **kwargs):
    config = kwargs.get("download_config") or tfds.download.DownloadConfig()
    overwrite = config.download_mode.overwrite_dataset
    path = epath.Path(self.data_dir)
    backup = epath.Path(self.data_dir + PREVIOUS_SUFFIX)
    if path.exists() and backup.exists():  # a crash after a good rebuild
      backup.rmtree()
    if path.exists() and overwrite:
      self.data_path.rmtree()  # sets it aside
    if not backup.exists():
      return super().download_and_prepare(**kwargs)
    if not overwrite:  # a forced rebuild died: its previous build is back
      backup.rename(path)
      return super().download_and_prepare(**kwargs)
    try:
      result = super().download_and_prepare(**kwargs)
    except BaseException:
      if path.exists():
        path.rmtree()
      backup.rename(path)
      logging.warning(
        "The rebuild of %s failed: the previous build was kept", self.data_dir
      )
      raise
    backup.rmtree()
    return result
