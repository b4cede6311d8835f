"""Flax linen models: the C2F-TCN temporal model and the feature adapters."""
