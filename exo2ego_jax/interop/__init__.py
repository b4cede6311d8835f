"""Weights from PyTorch as Flax parameter trees (the library of the
`import_weights` command): DINOv2 backbones and the published C2F-TCN."""
