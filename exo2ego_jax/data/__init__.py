"""Datasets as the trainer reads them: TFDS opening, windows, the synthetic world."""
