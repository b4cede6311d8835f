"""One training run: the trainer, its losses and the methods' shared pieces."""
