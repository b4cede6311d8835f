"""A run's predictions drawn as segmentation bars, and its worst classes
(the library of the `plot` command).

Reads the predictions that `evaluate` (and the benchmark) write under
<workdir>/eval/<split>_<view>/predictions, or scores the run's best
checkpoint first when there are none, and the ground truth from the run's
dataset.
"""

from __future__ import annotations

import json
import logging
import os

import ml_collections

# JAX, TFDS and matplotlib (datasets, plots, report, trainer) are imported
# where they are used, so that `plot --help` answers at once.
# pylint: disable=g-import-not-at-top

log = logging.getLogger(__name__)


def load_split(
  config: ml_collections.ConfigDict, split: str, view: str, predictions_dir: str
) -> tuple[list, list[str]]:
  """[(video_id, ground truth, prediction)] of every recording of `split`,
  and the class names."""
  from exo2ego_jax.data import datasets
  from exo2ego_jax.evaluation import evaluator
  from exo2ego_jax.evaluation import plots

  info, sources = datasets.open_dataset(
    config.dataset.name, config.dataset.data_dir
  )
  if split not in sources:
    raise ValueError(
      f"dataset {info.name} has no split {split!r}: choose "
      f"one of {', '.join(sources)}"
    )
  videos = []
  source = sources[split]
  for i in range(len(source)):
    example = source[i]
    video_id = evaluator.decode_id(example["video_id"])
    path = os.path.join(predictions_dir, f"{video_id}.txt")
    if not os.path.exists(path):
      raise FileNotFoundError(
        f"{path} not found: the predictions in {predictions_dir} do not "
        f"cover split {split}; rerun python -m exo2ego_jax.evaluate "
        f"--workdir <run> --split {split} --view {view}"
      )
    prediction = plots.read_predictions(path, info.class_names)
    truth = evaluator.labels_for_view(example, view)
    if len(prediction) != len(truth):
      raise ValueError(
        f"{path} has {len(prediction)} frames, recording {video_id} has "
        f"{len(truth)}: the predictions are from another build of the "
        "dataset; rerun python -m exo2ego_jax.evaluate"
      )
    videos.append((video_id, truth, prediction))
  return videos, list(info.class_names)


def plot_run(
  workdir: str,
  split: str = "test",
  view: str | None = None,
  videos: int = 6,
  video_ids=None,
  worst: int = 5,
  out: str | None = None,
) -> dict:
  """Writes segmentation.png, confusion.md and confusion.json; returns
  {"worst": [...], "paths": {...}, "report": the Markdown table}."""
  from exo2ego_jax.evaluation import plots
  from exo2ego_jax.evaluation import report
  from exo2ego_jax.training import trainer

  config = ml_collections.ConfigDict(trainer.read_run_config(workdir))
  view = view or config.data.eval_view
  eval_dir = os.path.join(workdir, "eval", f"{split}_{view}")
  predictions_dir = os.path.join(eval_dir, "predictions")
  if not os.path.isdir(predictions_dir):
    log.info(
      "no predictions of %s/%s in %s: scoring its best checkpoint first",
      split,
      view,
      workdir,
    )
    trainer.evaluate_run(config, workdir, split, view=view)
  recordings, class_names = load_split(config, split, view, predictions_dir)
  out = out or eval_dir
  os.makedirs(out, exist_ok=True)

  if video_ids:
    by_id = {video_id: (truth, pred) for video_id, truth, pred in recordings}
    missing = [v for v in video_ids if v not in by_id]
    if missing:
      raise ValueError(
        f"split {split} has no recording {missing[0]!r}; it "
        f"has e.g. {', '.join(list(by_id)[:3])}"
      )
    chosen = [(v, *by_id[v]) for v in video_ids]
  else:
    chosen = recordings[: max(1, videos)]
  rows, gaps = [], []
  for video_id, truth, prediction in chosen:
    rows += [(f"{video_id} truth", truth), ("prediction", prediction)]
    gaps.append(len(rows) - 1)
  paths = {
    "segmentation": os.path.join(out, "segmentation.png"),
    "report": os.path.join(out, "confusion.md"),
    "json": os.path.join(out, "confusion.json"),
  }
  plots.label_bars(
    paths["segmentation"],
    rows,
    class_names,
    f"{config.mode} on {split}/{view}: ground truth and prediction",
    gap_after=gaps[:-1],
  )

  matrix = report.confusion_matrix(
    ((pred, truth) for _, truth, pred in recordings), len(class_names)
  )
  worst_rows = report.worst_classes(matrix, class_names, count=worst)
  text = report.markdown(
    worst_rows,
    f"{config.mode} on {split}/{view} ({len(recordings)} "
    f"recordings): the {len(worst_rows)} classes with the lowest frame F1",
  )
  with open(paths["report"], "w") as f:
    f.write(text + "\n")
  with open(paths["json"], "w") as f:
    json.dump(
      {
        "split": split,
        "view": view,
        "class_names": class_names,
        "per_class": report.per_class(matrix, class_names),
        "worst": worst_rows,
        "confusion": matrix.tolist(),
      },
      f,
      indent=2,
    )
  return {"worst": worst_rows, "paths": paths, "report": text}


def plot_clocks(workdir: str, videos: int, video_ids, out: str | None):
  """Draws the clocks a run estimated (`plot --clocks`) into
  <out or workdir/sync>/clocks.png and prints each recording's map."""
  from exo2ego_jax.evaluation import plots  # pylint: disable=g-import-not-at-top
  from exo2ego_jax.sync import resync  # pylint: disable=g-import-not-at-top

  path = os.path.join(workdir, resync.FILENAME)
  if not os.path.exists(path):
    raise ValueError(
      f"{path} is missing: --clocks draws the clocks of a run trained with "
      "--config.sync.estimate=True"
    )
  with open(path) as f:
    entries = json.load(f)["recordings"]
  if video_ids:
    known = {e["video_id"]: e for e in entries}
    missing = [v for v in video_ids if v not in known]
    if missing:
      raise ValueError(
        f"{path} has no recording {', '.join(missing)}: use ids it lists"
      )
    entries = [known[v] for v in video_ids]
  else:
    entries = entries[:videos]
  target = os.path.join(out or os.path.join(workdir, "sync"), "clocks.png")
  plots.clock_maps(target, entries)
  for e in entries:
    print(
      f"{e['video_id']}: t_exo = {e['rate']:.5f} t_ego + {e['offset']:.1f}"
      f" (confidence {e['confidence']:.2f}"
      + (f", {e['fallback']}: timestamps kept" if e["fallback"] else "")
      + ")"
    )
  print(f"wrote {target}")
