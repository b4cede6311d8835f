"""Ego-Exo4D keystep segmentation with synchronized exo and ego features (manual download)."""

# Relative import: `tfds build tfds_builders/egoexo4d_keystep` imports this folder as the
# top-level package `egoexo4d_keystep`, tests import it as `tfds_builders.egoexo4d_keystep`.
from .egoexo4d_keystep_dataset_builder import (
  Builder,
  EgoExo4DConfig,
  EgoExo4DMultiviewConfig,
)

__all__ = ["Builder", "EgoExo4DConfig", "EgoExo4DMultiviewConfig"]
