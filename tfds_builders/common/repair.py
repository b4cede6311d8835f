"""What a build may repair instead of failing, and the record of each repair.

Where users build, the policy is set by a `repair.json` in the manual dir
(`{"nan": "zero", "max_trim_frames": 60}`: the fields of `RepairPolicy`),
which `tfds build --manual_dir` and a build on first use both read, or by
the builder config (`policy`, a dict in `tfds build --config='{...}'`).
Every repair and skip goes into the dataset metadata
(`info.metadata["repairs"]`), so nothing is silently misaligned.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os

from exo2ego_jax.data.constants import SPLITS
from tfds_builders.common.errors import DataError

REPAIR_FILE = "repair.json"  # in the manual dir: the fields of RepairPolicy

# In the project's logger tree, which the commands print (runtime.cli).
log = logging.getLogger("exo2ego_jax.builders")


@dataclasses.dataclass(frozen=True)
class RepairPolicy:
  """What a build may repair (and count) instead of failing.

  Frame counts are in stored frames (after `frame_stride`, or feature steps).

  Attributes:
    max_trim_frames: each stream (exo, ego, labels) may lose up to this many
      frames at its ends when the streams are cut to their common range (a
      view that starts late or ends early, labels a few frames longer than the
      features). More is an error naming the recording.
    max_fill_frames: frames missing inside a view (e.g. LMDB keys absent) that
      may be filled with the previous frame's features, per recording. 0: any
      interior gap is an error.
    nan: "error", or "zero" to replace the non-finite feature rows with zeros.
    unknown_label: "error", or "ignore" to label those frames -100 (unscored).
    empty: "skip" or "error" for a recording with no frame left.
    missing_view: "skip" or "error" for a recording without the features of
      the configured exo or ego view.
  """

  max_trim_frames: int = 30
  max_fill_frames: int = 0
  nan: str = "error"
  unknown_label: str = "error"
  empty: str = "skip"
  missing_view: str = "skip"

  def __post_init__(self):
    choices = {
      "nan": ("error", "zero"),
      "unknown_label": ("error", "ignore"),
      "empty": ("skip", "error"),
      "missing_view": ("skip", "error"),
    }
    for field, allowed in choices.items():
      if getattr(self, field) not in allowed:
        raise ValueError(
          f"RepairPolicy.{field} must be one of {allowed}, "
          f"not {getattr(self, field)!r}"
        )
    if self.max_trim_frames < 0 or self.max_fill_frames < 0:
      raise ValueError("RepairPolicy frame tolerances must be >= 0")


def repair_fix(**fields) -> str:
  """How a user allows a repair: `'{"nan": "zero"}' in repair.json`."""
  return (
    f"put {json.dumps(fields)} in {REPAIR_FILE} in the manual dir "
    "(--manual_dir) and build again"
  )


def read_repair_file(manual_dir: str, policy: RepairPolicy) -> RepairPolicy:
  """`policy` with the fields that `<manual_dir>/repair.json` sets, if any."""
  path = os.path.join(manual_dir, REPAIR_FILE)
  if not os.path.exists(path):
    return policy
  try:
    with open(path, encoding="utf-8") as f:
      fields = json.load(f)
  except json.JSONDecodeError as e:
    raise DataError(
      f"{path}: not valid JSON ({e}); write e.g. {{\"nan\": \"zero\"}}"
    ) from None
  known = [f.name for f in dataclasses.fields(RepairPolicy)]
  if not isinstance(fields, dict) or set(fields) - set(known):
    unknown = (
      sorted(set(fields) - set(known)) if isinstance(fields, dict) else fields
    )
    raise DataError(
      f"{path}: {unknown!r} is not a RepairPolicy field; use an "
      f"object with some of {', '.join(known)}"
    )
  try:
    return dataclasses.replace(policy, **fields)
  except (TypeError, ValueError) as e:  # a value of the wrong kind
    raise DataError(f"{path}: {e}") from None


class RepairLog:
  """Every repair and skip of a build, for `info.metadata["repairs"]` and the log."""

  def __init__(self):
    self.entries: list[dict] = []

  def add(self, split: str, video_id: str, kind: str, frames: int, detail: str):
    log.warning(
      "%s/%s: %s (%d frames): %s", split, video_id, kind, frames, detail
    )
    self.entries.append(
      {
        "split": split,
        "video_id": video_id,
        "kind": kind,
        "frames": int(frames),
        "detail": detail,
      }
    )

  def to_metadata(self) -> dict:
    order = {s: i for i, s in enumerate(SPLITS)}
    entries = sorted(
      self.entries,
      key=lambda e: (
        order.get(e["split"], len(order)),
        e["split"],
        e["video_id"],
        e["kind"],
        e["detail"],
      ),
    )
    counts: dict = {}
    for e in entries:
      c = counts.setdefault(e["kind"], {"videos": set(), "frames": 0})
      c["videos"].add((e["split"], e["video_id"]))
      c["frames"] += e["frames"]
    counts = {
      k: {"videos": len(c["videos"]), "frames": c["frames"]}
      for k, c in sorted(counts.items())
    }
    return {"counts": counts, "entries": entries}
