r"""Draws a run's predictions as segmentation bars and reports its worst
classes.

  python -m exo2ego_jax.plot --workdir workdirs/synthetic_distill_model \
      [--split test] [--view ego] [--videos 6] [--video_ids a,b] [--worst 5]

Reads the predictions that `python -m exo2ego_jax.evaluate` (and the
benchmark) write under <workdir>/eval/<split>_<view>/predictions, or scores
the run's best checkpoint first when there are none, and the ground truth
from the run's dataset. Writes into <workdir>/eval/<split>_<view>/ (or --out):
  segmentation.png  ground truth over prediction for each chosen video
  confusion.md      the --worst classes by frame F1, with what they are
                    mistaken for (also printed)
  confusion.json    per-class frames/recall/precision/F1 and the full
                    frame confusion matrix (rows: truth, columns: prediction)
"""

from __future__ import annotations

import json
import logging
import os

from absl import flags
import ml_collections

from exo2ego_jax.runtime import cli
# JAX, TFDS and matplotlib (datasets, plots, report, trainer) are imported
# where they are used, so that `--help` answers at once.
# pylint: disable=g-import-not-at-top

# Not __name__: run as a command this module is __main__.
log = logging.getLogger("exo2ego_jax.plot")

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory.",
                               required=True)
_SPLIT = flags.DEFINE_string("split", "test", "Split whose predictions to "
                             "draw.")
_VIEW = flags.DEFINE_string("view", None,
                            "exo or ego (default: the run's eval view).")
_VIDEOS = flags.DEFINE_integer("videos", 6, "Draw the first N recordings of "
                               "the split.")
_VIDEO_IDS = flags.DEFINE_list("video_ids", None, "Draw these recordings "
                               "instead of the first --videos.")
_WORST = flags.DEFINE_integer("worst", 5, "Classes in the confusion report.")
_OUT = flags.DEFINE_string("out", None, "Output folder (default: "
                           "<workdir>/eval/<split>_<view>).")


def load_split(config: ml_collections.ConfigDict, split: str, view: str,
               predictions_dir: str) -> tuple[list, list[str]]:
  """[(video_id, ground truth, prediction)] of every recording of `split`,
  and the class names."""
  from exo2ego_jax.data import datasets
  from exo2ego_jax.evaluation import evaluator
  from exo2ego_jax.evaluation import plots
  info, sources = datasets.open_dataset(config.dataset.name,
                                        config.dataset.data_dir)
  if split not in sources:
    raise ValueError(f"dataset {info.name} has no split {split!r}: choose "
                     f"one of {', '.join(sources)}")
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
          f"--workdir <run> --split {split} --view {view}")
    prediction = plots.read_predictions(path, info.class_names)
    truth = evaluator.labels_for_view(example, view)
    if len(prediction) != len(truth):
      raise ValueError(
          f"{path} has {len(prediction)} frames, recording {video_id} has "
          f"{len(truth)}: the predictions are from another build of the "
          "dataset; rerun python -m exo2ego_jax.evaluate")
    videos.append((video_id, truth, prediction))
  return videos, list(info.class_names)


def plot_run(workdir: str, split: str = "test", view: str | None = None,
             videos: int = 6, video_ids=None, worst: int = 5,
             out: str | None = None) -> dict:
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
    log.info("no predictions of %s/%s in %s: scoring its best checkpoint "
             "first", split, view, workdir)
    trainer.evaluate_run(config, workdir, split, view=view)
  recordings, class_names = load_split(config, split, view, predictions_dir)
  out = out or eval_dir
  os.makedirs(out, exist_ok=True)

  if video_ids:
    by_id = {video_id: (truth, pred) for video_id, truth, pred in recordings}
    missing = [v for v in video_ids if v not in by_id]
    if missing:
      raise ValueError(f"split {split} has no recording {missing[0]!r}; it "
                       f"has e.g. {', '.join(list(by_id)[:3])}")
    chosen = [(v, *by_id[v]) for v in video_ids]
  else:
    chosen = recordings[:max(1, videos)]
  rows, gaps = [], []
  for video_id, truth, prediction in chosen:
    rows += [(f"{video_id} truth", truth), ("prediction", prediction)]
    gaps.append(len(rows) - 1)
  paths = {"segmentation": os.path.join(out, "segmentation.png"),
           "report": os.path.join(out, "confusion.md"),
           "json": os.path.join(out, "confusion.json")}
  plots.label_bars(paths["segmentation"], rows, class_names,
                   f"{config.mode} on {split}/{view}: ground truth and "
                   "prediction", gap_after=gaps[:-1])

  matrix = report.confusion_matrix(
      ((pred, truth) for _, truth, pred in recordings), len(class_names))
  worst_rows = report.worst_classes(matrix, class_names, count=worst)
  text = report.markdown(
      worst_rows, f"{config.mode} on {split}/{view} ({len(recordings)} "
      f"recordings): the {len(worst_rows)} classes with the lowest frame F1")
  with open(paths["report"], "w") as f:
    f.write(text + "\n")
  with open(paths["json"], "w") as f:
    json.dump({"split": split, "view": view, "class_names": class_names,
               "per_class": report.per_class(matrix, class_names),
               "worst": worst_rows, "confusion": matrix.tolist()}, f,
              indent=2)
  return {"worst": worst_rows, "paths": paths, "report": text}


def main(argv):
  del argv
  result = plot_run(_WORKDIR.value, _SPLIT.value, _VIEW.value, _VIDEOS.value,
                    _VIDEO_IDS.value, _WORST.value, _OUT.value)
  print(result["report"])
  print("wrote " + ", ".join(result["paths"].values()))


if __name__ == "__main__":
  cli.run(main)
