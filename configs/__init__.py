"""Experiment configs: one `get_config()` file per experiment."""
