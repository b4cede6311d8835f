"""Runs a whole comparison study and prints the table.

  python -m exo2ego_jax.benchmark --config configs/synthetic_benchmark.py

For every seed and method it trains (or resumes, or reuses) a run under
`<config.workdir>/<method>/seed<k>`, the teacher first, then scores every run
on the test split's ego view. Writes `results.json`, `results.md` (mean and
std over seeds of F1@10/25/50, Edit, MoF, and the share of the exo-only ->
ego-oracle gap each method closes) and `segmentation.png` (ground truth and
each method's prediction of one test recording as coloured bars) into
`config.results_dir` (default `config.workdir`), and prints the Markdown
table.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time

from absl import flags
import ml_collections
from ml_collections import config_flags
import numpy as np

from exo2ego_jax import cli
from exo2ego_jax import datasets
from exo2ego_jax import evaluation
from exo2ego_jax import modes
from exo2ego_jax import plots
from exo2ego_jax import trainer

_CONFIG = config_flags.DEFINE_config_file("config", None,
                                          "Benchmark config file.")

METRICS = ("f1@10", "f1@25", "f1@50", "edit", "mof")
METRIC_TITLES = ("F1@10", "F1@25", "F1@50", "Edit", "MoF")


def load_config_file(path: str) -> ml_collections.ConfigDict:
  """`get_config()` of a config file, as `--config` would load it."""
  spec = importlib.util.spec_from_file_location("_method_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def method_config(bench: ml_collections.ConfigDict, method: str, seed: int
                  ) -> tuple[ml_collections.ConfigDict, str]:
  """The training config and workdir of one method and seed."""
  config = load_config_file(bench.method_configs[method])
  config.seed = seed
  config.progress = bench.progress
  if bench.dataset_name:
    config.dataset.name = bench.dataset_name
  if bench.data_dir:
    config.dataset.data_dir = bench.data_dir
  if method in bench.overrides:
    config.update(bench.overrides[method])
  root = os.path.abspath(bench.workdir)
  if config.mode in modes.TEACHER_MODES:
    config.teacher_workdir = os.path.join(root, bench.teacher, f"seed{seed}")
  if config.mode == "distill_both":
    config.adapter_workdir = os.path.join(root, bench.adapter, f"seed{seed}")
  return config, os.path.join(root, method, f"seed{seed}")


def summarize(scores: dict) -> dict:
  """{row: {metric: (mean, std)}} over seeds."""
  return {row: {m: (float(np.mean([s[m] for s in per_seed])),
                    float(np.std([s[m] for s in per_seed])))
                for m in METRICS}
          for row, per_seed in scores.items()}


def gap_closed(table: dict, row: str, lower: str, upper: str,
               metric: str) -> float:
  """Share of the lower -> upper gap that `row` closes, in percent."""
  lo, hi, value = (table[lower][metric][0], table[upper][metric][0],
                   table[row][metric][0])
  return 100.0 * (value - lo) / (hi - lo) if hi != lo else float("nan")


def markdown_table(table: dict, methods, lower: str, upper: str) -> str:
  """The results as Markdown; reference rows (not in `methods`) get no
  gap-closed figure."""
  lines = ["| method | " + " | ".join(METRIC_TITLES) +
           " | gap closed (Edit / F1@25) |",
           "|---" * (len(METRICS) + 2) + "|"]
  for row, values in table.items():
    cells = [f"{mean:.2f} ± {std:.2f}" for mean, std in values.values()]
    closed = ""
    if row in methods and row not in (lower, upper) and {lower, upper} <= set(
        table):
      closed = " / ".join(f"{gap_closed(table, row, lower, upper, m):.0f}%"
                          for m in ("edit", "f1@25"))
    lines.append(f"| {row} | " + " | ".join(cells) + f" | {closed} |")
  return "\n".join(lines)


def find_labels(config: ml_collections.ConfigDict, split: str, view: str,
                video_id: str) -> np.ndarray:
  """Ground-truth labels of one recording (for the figure)."""
  _, sources = datasets.open_dataset(config.dataset.name,
                                     config.dataset.data_dir)
  source = sources[split]
  for i in range(len(source)):
    example = source[i]
    if evaluation.decode_id(example["video_id"]) == video_id:
      return evaluation.labels_for_view(example, view)
  raise KeyError(f"{video_id} is not in split {split}")


def run_benchmark(bench: ml_collections.ConfigDict) -> dict:
  """Trains and scores every (method, seed); returns the results dict."""
  out = bench.results_dir or bench.workdir  # tables and figure go here
  os.makedirs(out, exist_ok=True)
  test = f"{bench.test_split}/{bench.test_view}"
  reference = (f"{bench.teacher} scored on {bench.test_split}/"
               f"{bench.teacher_reference_view} (reference)")
  scores: dict = {m: [] for m in bench.methods}
  if bench.teacher_reference_view:
    scores[reference] = []
  predictions, seconds = {}, {}
  start = time.time()
  runs = [(seed, method) for seed in bench.seeds for method in bench.methods]
  for i, (seed, method) in enumerate(runs, 1):
    config, workdir = method_config(bench, method, seed)
    print(f"[{i}/{len(runs)}] {method} seed {seed} ({workdir})", flush=True)
    t0 = time.time()
    trainer.train_and_evaluate(config, workdir)
    summary = trainer.evaluate_run(config, workdir, bench.test_split,
                                   view=bench.test_view)
    scores[method].append({m: summary[m] for m in METRICS})
    if method == bench.teacher and bench.teacher_reference_view:
      ref = trainer.evaluate_run(config, workdir, bench.test_split,
                                 view=bench.teacher_reference_view,
                                 write_predictions=False)
      scores[reference].append({m: ref[m] for m in METRICS})
    seconds[f"{method}/seed{seed}"] = round(time.time() - t0, 1)
    print(f"    {test}: " + " ".join(f"{t}={summary[m]:.2f}" for m, t in
                                     zip(METRICS, METRIC_TITLES)) +
          f" ({seconds[f'{method}/seed{seed}']:.0f} s)", flush=True)
    if seed == bench.seeds[0]:
      predictions[method] = os.path.join(workdir, "eval",
                                         f"{bench.test_split}_"
                                         f"{bench.test_view}", "predictions")
      last_summary, last_config = summary, config
  table = summarize(scores)
  markdown = markdown_table(table, bench.methods, bench.lower, bench.upper)
  results = {
      "table": {row: {m: {"mean": v[0], "std": v[1]} for m, v in
                      values.items()} for row, values in table.items()},
      "gap_closed_percent": {
          row: {m: gap_closed(table, row, bench.lower, bench.upper, m)
                for m in METRICS}
          for row in bench.methods if row not in (bench.lower, bench.upper)},
      "per_seed": scores, "seeds": list(bench.seeds), "scored_on": test,
      "background_policy": last_summary["background_policy"],
      "seconds_per_run": seconds,
      "total_seconds": round(time.time() - start, 1),
  }
  with open(os.path.join(out, "results.json"), "w") as f:
    json.dump(results, f, indent=2)
  with open(os.path.join(out, "results.md"), "w") as f:
    f.write(f"Scored on {test} ({last_summary['background_policy']}), mean "
            f"± std over seeds {list(bench.seeds)}.\n\n{markdown}\n")
  per_video = last_summary["per_video"]
  video_id = per_video[min(bench.plot_video_index, len(per_video) - 1)][
      "video_id"]
  plots.segmentation_bars(
      os.path.join(out, "segmentation.png"), video_id, predictions,
      last_summary["class_names"],
      find_labels(last_config, bench.test_split, bench.test_view, video_id))
  print(markdown)
  print(f"total {results['total_seconds']:.0f} s; results in {out}")
  return results


def main(argv):
  del argv
  run_benchmark(_CONFIG.value)


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  cli.run(main)
