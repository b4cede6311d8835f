"""exo2ego-jax: exocentric-to-egocentric transfer for temporal action segmentation in JAX/Flax."""
