"""Synthetic synchronized exo/ego temporal action segmentation benchmark."""

# Relative import: `tfds build tfds_builders/synthetic_sync` imports this folder as the top-level
# package `synthetic_sync`, tests import it as `tfds_builders.synthetic_sync`.
from .synthetic_sync_dataset_builder import Builder, SyntheticSyncConfig

__all__ = ["Builder", "SyntheticSyncConfig"]
