"""Which recordings go to which split: split lists, hash partitions and the
check that held-out splits share no recording with the others."""

from __future__ import annotations

import hashlib
import os
from typing import Callable, Iterable, Mapping, Sequence

from exo2ego_jax.data.constants import SPLITS
from tfds_builders.common.annotations import read_lines
from tfds_builders.common.errors import DataError


def read_split_list(path: os.PathLike) -> list[str]:
  """Video ids of a split list: the first tab-separated field of each line.

  So both plain lists and Assembly101's `coarse_splits/*.txt` (first field
  `assembly_<recording>.txt`) work; a trailing ".txt" is dropped.
  """
  ids = []
  for line in read_lines(path):
    video = line.split("\t")[0].strip()
    ids.append(video[:-4] if video.endswith(".txt") else video)
  return ids


def user_splits(split_dir: os.PathLike) -> dict[str, list[str]] | None:
  """`<split_dir>/<split>.txt` for the four splits, or None if there is none."""
  paths = {s: os.path.join(split_dir, f"{s}.txt") for s in SPLITS}
  found = {s: p for s, p in paths.items() if os.path.exists(p)}
  if not found:
    return None
  missing = [p for s, p in paths.items() if s not in found]
  if missing:
    raise DataError(
      f"split lists: {missing} missing; give all four of "
      f"{list(SPLITS)} in {split_dir} or none (default splits)"
    )
  return {s: read_split_list(p) for s, p in paths.items()}


def hash_partition(
  ids: Iterable[str], fraction: float, group: Callable[[str], str] = lambda i: i
) -> tuple[list[str], list[str]]:
  """Splits ids into two disjoint lists, the first with about `fraction` of the groups.

  Ids of one group (e.g. the videos of one recording) stay together. Order is
  by a hash of the group: stable across machines and independent of the order
  in which ids are listed.
  """
  ids = sorted(set(ids))
  groups = sorted(
    {group(i) for i in ids},
    key=lambda g: (hashlib.sha1(g.encode()).hexdigest(), g),
  )
  first = set(groups[: int(round(fraction * len(groups)))])
  return [i for i in ids if group(i) in first], [
    i for i in ids if group(i) not in first
  ]


def check_disjoint(splits: Mapping[str, Sequence[str]], where: str):
  """Validation and test recordings must not appear in any other split.

  (`train` and `sync_pairs` may share recordings: the method never uses the
  labels of `sync_pairs`.)
  """
  for held_out in ("validation", "test"):
    for other, ids in splits.items():
      if other == held_out:
        continue
      shared = sorted(set(splits.get(held_out, ())) & set(ids))
      if shared:
        raise DataError(
          f"{where}: {len(shared)} recordings are in both `{held_out}` and "
          f"`{other}` (e.g. {shared[:3]}); held-out splits must be disjoint"
        )
