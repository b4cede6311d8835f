"""Backbone work on video frames: feature extraction and frame-level
distillation of the ViT (the library of extract_features, distill_backbone)."""
