"""Your own synchronized exo/ego features as a TFDS dataset (manual download)."""

# Relative import: `tfds build tfds_builders/feature_folder` imports this folder as the
# top-level package `feature_folder`, tests import it as `tfds_builders.feature_folder`.
from .feature_folder_dataset_builder import (
  Builder,
  FeatureFolderConfig,
  config_for,
)

__all__ = ["Builder", "FeatureFolderConfig", "config_for"]
