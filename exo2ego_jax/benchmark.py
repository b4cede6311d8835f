"""Runs a whole comparison study and prints the table.

  python -m exo2ego_jax.benchmark --config configs/synthetic_benchmark.py

For every seed and method it trains (or resumes, or reuses) a run under
`<config.workdir>/<method>/seed<k>`, the teacher first, then scores every run
on the test split's ego view. Writes `results.json`, `results.md` (mean and
std over seeds of F1@10/25/50, Edit, MoF) and `segmentation.png` (ground
truth and each method's prediction of one test recording as coloured bars)
into `config.workdir`, and prints the Markdown table.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time

from absl import app
from absl import flags
import ml_collections
from ml_collections import config_flags
import numpy as np

from exo2ego_jax import cli
from exo2ego_jax import plots
from exo2ego_jax import trainer

_CONFIG = config_flags.DEFINE_config_file("config", None,
                                          "Benchmark config file.")

METRICS = ("f1@10", "f1@25", "f1@50", "edit", "mof")


def load_config_file(path: str) -> ml_collections.ConfigDict:
  """`get_config()` of a config file, as `--config` would load it."""
  spec = importlib.util.spec_from_file_location("_method_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def method_config(bench: ml_collections.ConfigDict, method: str, seed: int
                  ) -> tuple[ml_collections.ConfigDict, str]:
  """The training config and workdir of one method and seed."""
  config = load_config_file(bench.methods[method])
  config.seed = seed
  config.progress = bench.progress
  if bench.dataset_name:
    config.dataset.name = bench.dataset_name
  if bench.data_dir:
    config.dataset.data_dir = bench.data_dir
  for key, value in bench.overrides.get(method, {}).items():
    section, _, name = key.rpartition(".")
    (config[section] if section else config)[name] = value
  root = os.path.abspath(bench.workdir)
  if config.mode in ("distill_model", "distill_feature", "distill_both"):
    config.teacher_workdir = os.path.join(root, bench.teacher, f"seed{seed}")
  if config.mode == "distill_both":
    config.adapter_workdir = os.path.join(root, bench.adapter, f"seed{seed}")
  return config, os.path.join(root, method, f"seed{seed}")


def summarize(scores: dict) -> dict:
  """{method: {metric: (mean, std)}} over seeds."""
  table = {}
  for method, per_seed in scores.items():
    table[method] = {m: (float(np.mean([s[m] for s in per_seed])),
                         float(np.std([s[m] for s in per_seed])))
                     for m in METRICS}
  return table


def gap_closed(table: dict, method: str, lower: str, upper: str,
               metric: str) -> float:
  """Fraction of the (lower -> upper) gap that `method` closes, in percent."""
  lo, hi, value = (table[lower][metric][0], table[upper][metric][0],
                   table[method][metric][0])
  return 100.0 * (value - lo) / (hi - lo) if hi != lo else float("nan")


def markdown_table(table: dict, bench: ml_collections.ConfigDict) -> str:
  header = ("| method | " + " | ".join(m.upper() if m == "mof" else
                                       m.replace("f1", "F1").replace(
                                           "edit", "Edit")
                                       for m in METRICS) +
            " | gap closed (Edit / F1@25) |")
  lines = [header, "|" + "---|" * (len(METRICS) + 2)]
  for method, row in table.items():
    cells = [f"{mean:.2f} ± {std:.2f}" for mean, std in row.values()]
    if method in (bench.lower, bench.upper) or bench.lower not in table:
      closed = ""
    else:
      closed = " / ".join(
          f"{gap_closed(table, method, bench.lower, bench.upper, m):.0f}%"
          for m in ("edit", "f1@25"))
    lines.append(f"| {method} | " + " | ".join(cells) + f" | {closed} |")
  return "\n".join(lines)


def run_benchmark(bench: ml_collections.ConfigDict) -> dict:
  """Trains and scores every (method, seed); returns the results dict."""
  os.makedirs(bench.workdir, exist_ok=True)
  scores: dict = {m: [] for m in bench.methods}
  predictions: dict = {}
  timings: dict = {}
  start = time.time()
  runs = [(seed, method) for seed in bench.seeds for method in bench.methods]
  for i, (seed, method) in enumerate(runs, 1):
    config, workdir = method_config(bench, method, seed)
    print(f"[{i}/{len(runs)}] {method} seed {seed} -> {workdir}", flush=True)
    t0 = time.time()
    trainer.train_and_evaluate(config, workdir)
    summary = trainer.evaluate_run(config, workdir, bench.test_split,
                                    view=bench.test_view)
    timings[f"{method}/seed{seed}"] = round(time.time() - t0, 1)
    scores[method].append({m: summary[m] for m in METRICS})
    if seed == bench.seeds[0]:
      predictions[method] = os.path.join(
          workdir, "eval", f"{bench.test_split}_{bench.test_view}",
          "predictions")
      class_names = summary["class_names"]
      per_video = summary["per_video"]
  table = summarize(scores)
  markdown = markdown_table(table, bench)
  results = {
      "table": {m: {k: {"mean": v[0], "std": v[1]} for k, v in row.items()}
                for m, row in table.items()},
      "per_seed": scores, "seeds": list(bench.seeds),
      "test_split": bench.test_split, "test_view": bench.test_view,
      "seconds_per_run": timings,
      "total_seconds": round(time.time() - start, 1),
  }
  with open(os.path.join(bench.workdir, "results.json"), "w") as f:
    json.dump(results, f, indent=2)
  with open(os.path.join(bench.workdir, "results.md"), "w") as f:
    f.write(markdown + "\n")
  video_id = per_video[min(bench.plot_video_index, len(per_video) - 1)][
      "video_id"]
  plots.segmentation_bars(
      os.path.join(bench.workdir, "segmentation.png"), video_id,
      predictions, class_names, bench_ground_truth(bench, video_id))
  print(markdown)
  print(f"total {results['total_seconds']:.0f} s; written to {bench.workdir}")
  return results


def bench_ground_truth(bench: ml_collections.ConfigDict, video_id: str
                       ) -> np.ndarray:
  """Ground-truth labels of one test recording (for the figure)."""
  from exo2ego_jax import datasets, evaluation  # pylint: disable=g-import-not-at-top
  config, _ = method_config(bench, bench.teacher, bench.seeds[0])
  _, sources = datasets.open_dataset(config.dataset.name,
                                     config.dataset.data_dir)
  source = sources[bench.test_split]
  for i in range(len(source)):
    example = source[i]
    if evaluation._decode(example["video_id"]) == video_id:  # pylint: disable=protected-access
      return evaluation.labels_for_view(example, bench.test_view)
  raise KeyError(video_id)


def main(argv):
  del argv
  run_benchmark(_CONFIG.value)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  cli.run(main)
