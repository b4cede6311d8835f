"""Names and values that the data, the builders, the losses and the metrics
share; defined here once so that they cannot drift apart."""

# The label of frames that neither the loss nor the metrics count (padding,
# unlabeled gaps, ignored background); the published code's value.
IGNORE_LABEL = -100

# The four splits of every dataset, in this order (the synthetic generator
# seeds each split by its index here, so the order is part of the data).
SPLITS: tuple[str, ...] = ("train", "sync_pairs", "validation", "test")

# The two camera views of a synchronized example, as its field names.
VIEWS: tuple[str, ...] = ("exo", "ego")
