"""Assembly101 synchronized exo/ego coarse action segmentation (manual download)."""

# Relative import: `tfds build tfds_builders/assembly101_sync` imports this folder as the
# top-level package `assembly101_sync`, tests import it as `tfds_builders.assembly101_sync`.
from .assembly101_sync_dataset_builder import (
  EXO_CAMERAS,
  Assembly101Config,
  Assembly101MultiviewConfig,
  Assembly101ReleaseConfig,
  Builder,
  make_config,
  make_multiview_config,
  make_release_config,
)

__all__ = [
  "EXO_CAMERAS",
  "Assembly101Config",
  "Assembly101MultiviewConfig",
  "Assembly101ReleaseConfig",
  "Builder",
  "make_config",
  "make_multiview_config",
  "make_release_config",
]
