"""TFDS dataset builders, one folder per dataset (`tfds build tfds_builders/<name>`)."""
