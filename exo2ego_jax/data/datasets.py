"""Opening TFDS datasets as grain-ready data sources, without TensorFlow.

Builders that ship with the project (see `tfds_builders/`) are prepared on
first use, in the array_record format, from Python. Any other dataset must
already be built in `data_dir` (e.g. with `tfds build`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import os
import shutil
import sys

import tensorflow_datasets as tfds

# Dataset name -> module that defines (and so registers) its builder.
PROJECT_BUILDERS = {
  "synthetic_sync": "tfds_builders.synthetic_sync.synthetic_sync_dataset_builder",
  "assembly101_sync": "tfds_builders.assembly101_sync.assembly101_sync_dataset_builder",
  "egoexo4d_keystep": "tfds_builders.egoexo4d_keystep.egoexo4d_keystep_dataset_builder",
  "feature_folder": "tfds_builders.feature_folder.feature_folder_dataset_builder",
}


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What training needs to know about a dataset."""

  name: str
  splits: tuple[str, ...]
  feature_dim: int
  class_names: tuple[str, ...]
  background_classes: tuple[int, ...]
  # Names of the exo cameras of an example, in view order: one ("exo") for
  # single-view datasets; K for datasets with `exo_views` (K, T, D).
  exo_views: tuple[str, ...] = ("exo",)

  @property
  def num_classes(self) -> int:
    return len(self.class_names)


def build_command(builder, manual_dir: str | None) -> str:
  """The `tfds build` command that builds `builder`'s dataset."""
  base = builder.name
  config = builder.builder_config.name if builder.builder_config else None
  return (
    f"tfds build tfds_builders/{base}"
    + (f" --config={config}" if config else "")
    + f" --manual_dir={manual_dir or '<folder of your files>'}"
    f" --data_dir={builder.data_dir_root} --file_format=array_record"
  )


@contextlib.contextmanager
def _removed_on_failure(paths):
  """Removes those of `paths` that did not exist before and do after a
  failure (a failed first build leaves no `downloads/` or `.config/`)."""
  new = [p for p in paths if not os.path.exists(p)]
  try:
    yield
  except BaseException:
    for path in reversed(new):
      shutil.rmtree(path, ignore_errors=True)
    raise


def _prepare(builder, name: str, manual_dir: str | None) -> None:
  """Builds a project dataset on first use (the builders say so in a line
  each; TFDS's progress bars only on a terminal)."""
  needs_files = builder.MANUAL_DOWNLOAD_INSTRUCTIONS is not None
  if needs_files and not (
    manual_dir and os.path.isdir(manual_dir) and os.listdir(manual_dir)
  ):
    where = (
      f"no files in {manual_dir}"
      if manual_dir
      else "its files' folder (manual dir) was not given"
    )
    raise FileNotFoundError(
      f"dataset {name} is not built in {builder.data_dir_root} and {where}: "
      f"build it with `{build_command(builder, manual_dir)}` (see "
      f"tfds_builders/{builder.name}/README.md), or fix "
      "config.dataset.name / data_dir"
    )
  root = builder.data_dir_root
  if not sys.stderr.isatty():
    tfds.disable_progress_bar()
  with _removed_on_failure(
    [root, os.path.join(root, "downloads"), os.path.join(root, builder.name)]
  ):
    builder.download_and_prepare(
      file_format="array_record",
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir),
    )


def _builder(name: str, data_dir: str | None, manual_dir: str | None = None):
  base = name.split("/")[0].split(":")[0]
  if base in PROJECT_BUILDERS:
    importlib.import_module(PROJECT_BUILDERS[base])
    builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
    if not builder.is_prepared():
      _prepare(builder, name, manual_dir)
    return builder
  try:
    return tfds.builder(name, data_dir=data_dir)
  except Exception as e:  # tfds raises several types for "not found"
    where = data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets")
    raise FileNotFoundError(
      f"dataset {name!r} is not built in {where}: build it first with "
      f"`tfds build tfds_builders/<builder> --file_format=array_record "
      f"--data_dir {where}`, or fix config.dataset.name / data_dir ({e})"
    ) from None


def open_dataset(
  name: str, data_dir: str | None, manual_dir: str | None = None
) -> tuple[DatasetInfo, dict]:
  """Returns the dataset's info and its splits as random-access sources.

  `manual_dir` holds the downloaded files of builders with manual downloads
  (Assembly101, EgoExo4D, feature folders), used when building on first use.
  """
  builder = _builder(name, data_dir, manual_dir)
  info = builder.info
  if info.file_format != tfds.core.FileFormat.ARRAY_RECORD:
    raise ValueError(
      f"dataset {name} in {builder.data_dir} is stored as "
      f"{info.file_format}; random access needs array_record: rebuild with "
      "`--file_format=array_record`"
    )
  features = info.features
  feature_dim = int(features["exo"].shape[-1])
  metadata = info.metadata or {}
  if "class_names" not in metadata:
    raise ValueError(
      f"dataset {name} in {builder.data_dir} has no `class_names` in its "
      "metadata: its builder must store the class table there"
    )
  names = tuple(str(n) for n in metadata["class_names"])
  background = tuple(
    names.index(b) for b in metadata.get("background_classes", ()) if b in names
  )
  sources = builder.as_data_source()
  result = DatasetInfo(
    name=name,
    splits=tuple(sources),
    feature_dim=feature_dim,
    class_names=names,
    background_classes=background,
    exo_views=tuple(str(n) for n in metadata.get("exo_view_names", ("exo",))),
  )
  return result, dict(sources)
