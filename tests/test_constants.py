"""Values several parts must agree on are defined once (data/constants.py)."""

import os
import re

from exo2ego_jax.data import constants
from exo2ego_jax.data import input_pipeline
from exo2ego_jax.data import synthetic
from exo2ego_jax.evaluation import metrics
from exo2ego_jax.training import losses

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_shared_values():
  assert constants.IGNORE_LABEL == -100  # the published code's value
  # The synthetic generator seeds each split by its index: never reorder.
  assert constants.SPLITS == ("train", "sync_pairs", "validation", "test")
  assert constants.VIEWS == ("exo", "ego")
  assert (
    losses.IGNORE_LABEL
    is metrics.IGNORE_LABEL
    is input_pipeline.IGNORE_LABEL
    is constants.IGNORE_LABEL
  )
  assert synthetic.SPLITS is constants.SPLITS
  assert input_pipeline.VIEWS is constants.VIEWS


def test_no_second_definition_in_the_code():
  """Only constants.py assigns them (imports do not count)."""
  pattern = re.compile(
    r"^\s*(IGNORE_LABEL|SPLITS|VIEWS)\s*(:[^=]*)?=", re.MULTILINE
  )
  found = []
  for top in ("exo2ego_jax", "tfds_builders"):
    for folder, _, files in os.walk(os.path.join(ROOT, top)):
      for name in files:
        if name.endswith(".py"):
          path = os.path.join(folder, name)
          with open(path, encoding="utf-8") as f:
            found += [
              (os.path.relpath(path, ROOT), m.group(1))
              for m in pattern.finditer(f.read())
            ]
  assert sorted(found) == [
    (os.path.join("exo2ego_jax", "data", "constants.py"), name)
    for name in ("IGNORE_LABEL", "SPLITS", "VIEWS")
  ]
