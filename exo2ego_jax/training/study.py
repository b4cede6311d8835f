"""Whole comparison studies: every method and seed of a benchmark config
trained (or reused), scored on one split and view, and summarised as
tables, figures and a sweep plot. The command is `exo2ego_jax.benchmark`
(its docstring says what a study writes)."""

from __future__ import annotations

import json
import logging
import os
import time

import ml_collections
import numpy as np

from exo2ego_jax.runtime import config_help
from exo2ego_jax.runtime import errors
from exo2ego_jax.runtime import run_log
from exo2ego_jax.runtime import time_profile
from exo2ego_jax.runtime import workdir as workdir_lib
# JAX, TFDS and matplotlib (trainer, datasets, plots, ...) are imported
# where they are used, so that `benchmark --help` answers at once.
# pylint: disable=g-import-not-at-top

# The command's logger: its lines read as the benchmark's.
log = logging.getLogger("exo2ego_jax.benchmark")

METRICS = ("f1@10", "f1@25", "f1@50", "edit", "mof")
METRIC_TITLES = ("F1@10", "F1@25", "F1@50", "Edit", "MoF")


load_config_file = config_help.load


def method_config(
  bench: ml_collections.ConfigDict,
  method: str,
  seed: int,
  point: dict | None = None,
) -> tuple[ml_collections.ConfigDict, str]:
  """The training config and workdir of one method and seed; `point` (a
  sweep point: {dotted config key: value}) is applied last. A point that
  leaves the config as it was shares the method's own workdir."""
  from exo2ego_jax.methods import registry

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
  needs = registry.get(config.mode)
  if needs.loads_teacher:
    teacher = (bench.get("teachers") or {}).get(method, bench.teacher)
    if isinstance(teacher, (tuple, list)):  # one teacher row per exo view
      config.multiview.teachers = tuple(
        os.path.join(root, row, f"seed{seed}") for row in teacher
      )
      teacher = teacher[0]
    config.teacher_workdir = os.path.join(root, teacher, f"seed{seed}")
  start = (bench.get("student_inits") or {}).get(method)
  if start:  # the row whose run of the same seed the student starts from
    config.student_init_workdir = os.path.join(root, start, f"seed{seed}")
  if needs.loads_adapter:
    config.adapter_workdir = os.path.join(root, bench.adapter, f"seed{seed}")
  subdir = method
  if point:
    plain = config.to_json()
    config.update_from_flattened_dict(dict(point))
    if config.to_json() != plain:
      subdir = os.path.join(method, point_name(point))
  return config, os.path.join(root, subdir, f"seed{seed}")


def point_name(point: dict) -> str:
  """A sweep point as a row and folder name, e.g. train_fraction=0.5."""
  return ",".join(
    f"{key.rsplit('.', 1)[-1]}={value}".replace("/", "_")
    for key, value in point.items()
  )


def sweep_points(bench: ml_collections.ConfigDict) -> list[dict]:
  """The config changes of each sweep point (none without a sweep)."""
  sweep = bench.get("sweep")
  if not sweep or not sweep.grid:
    return []
  if sweep.method not in bench.method_configs:
    raise ValueError(
      f"config.sweep.method={sweep.method!r} has no entry in "
      "config.method_configs"
    )
  fixed = fixed_settings(sweep)
  return [dict(fixed, **{sweep.key: value}) for value in sweep.grid]


def fixed_settings(sweep: ml_collections.ConfigDict) -> dict:
  """The settings a sweep sets on every point, as {dotted key: value}."""
  return (
    workdir_lib.flatten(sweep.fixed.to_dict()) if sweep.get("fixed") else {}
  )


def study_rows(
  bench: ml_collections.ConfigDict,
) -> list[tuple[str, str, dict | None]]:
  """(row name, method, sweep point) of every table row, in order: the
  methods, then one row per sweep point."""
  unknown = [m for m in bench.methods if m not in bench.method_configs]
  if unknown:
    raise ValueError(
      f"config.methods names {', '.join(map(repr, unknown))}, which "
      "config.method_configs has no config file for: add an entry "
      f"(known: {', '.join(bench.method_configs)}) or drop it from "
      "config.methods; the baselines are in "
      "configs/synthetic_benchmark_baselines.py"
    )
  rows = [(method, method, None) for method in bench.methods]
  points = sweep_points(bench)
  if points:
    short = bench.sweep.key.rsplit(".", 1)[-1]
    rows += [
      (f"{bench.sweep.method} {short}={value}", bench.sweep.method, point)
      for value, point in zip(bench.sweep.grid, points)
    ]
  return rows


def summarize(scores: dict) -> dict:
  """{row: {metric: (mean, std)}} over seeds."""
  return {
    row: {
      m: (
        float(np.mean([s[m] for s in per_seed])),
        float(np.std([s[m] for s in per_seed])),
      )
      for m in METRICS
    }
    for row, per_seed in scores.items()
  }


def gap_closed(
  table: dict, row: str, lower: str, upper: str, metric: str
) -> float:
  """Share of the lower -> upper gap that `row` closes, in percent."""
  lo, hi, value = (
    table[lower][metric][0],
    table[upper][metric][0],
    table[row][metric][0],
  )
  return 100.0 * (value - lo) / (hi - lo) if hi != lo else float("nan")


def markdown_table(table: dict, methods, lower: str, upper: str) -> str:
  """The results as Markdown; reference rows (not in `methods`) get no
  gap-closed figure."""
  lines = [
    "| method | "
    + " | ".join(METRIC_TITLES)
    + " | gap closed (Edit / F1@25) |",
    "|---" * (len(METRICS) + 2) + "|",
  ]
  for row, values in table.items():
    cells = [f"{mean:.2f} ± {std:.2f}" for mean, std in values.values()]
    closed = ""
    if (
      row in methods
      and row not in (lower, upper)
      and {lower, upper} <= set(table)
    ):
      closed = " / ".join(
        f"{gap_closed(table, row, lower, upper, m):.0f}%"
        for m in ("edit", "f1@25")
      )
    lines.append(f"| {row} | " + " | ".join(cells) + f" | {closed} |")
  return "\n".join(lines)


def find_labels(
  config: ml_collections.ConfigDict, split: str, view: str, video_id: str
) -> np.ndarray:
  """Ground-truth labels of one recording (for the figure)."""
  from exo2ego_jax.data import datasets
  from exo2ego_jax.evaluation import evaluator

  _, sources = datasets.open_dataset(
    config.dataset.name, config.dataset.data_dir
  )
  source = sources[split]
  for i in range(len(source)):
    example = source[i]
    if evaluator.decode_id(example["video_id"]) == video_id:
      return evaluator.labels_for_view(example, view)
  raise KeyError(f"{video_id} is not in split {split}")


def move_to_workdir(bench, workdir: str) -> None:
  """Makes `workdir` the study's directory. A results_dir inside the
  config's own workdir (the baselines' `workdirs/synthetic_benchmark/
  baselines`) moves with it, so `--workdir W` keeps every output under W."""
  old = os.path.normpath(bench.workdir)
  results = bench.results_dir
  if results and not os.path.isabs(results):
    inside = os.path.relpath(os.path.normpath(results), old)
    if inside != os.pardir and not inside.startswith(os.pardir + os.sep):
      bench.results_dir = os.path.join(workdir, inside)
  bench.workdir = workdir


def run_benchmark(bench: ml_collections.ConfigDict) -> dict:
  """Trains and scores every (method, seed); returns the results dict."""
  from exo2ego_jax.evaluation import plots
  from exo2ego_jax.training import trainer

  out = bench.results_dir or bench.workdir  # tables and figure go here
  os.makedirs(out, exist_ok=True)
  test = f"{bench.test_split}/{bench.test_view}"
  reference = (
    f"{bench.teacher} scored on {bench.test_split}/"
    f"{bench.teacher_reference_view} (reference)"
  )
  rows = study_rows(bench)
  scores: dict = {row: [] for row, _, _ in rows}
  if bench.teacher_reference_view:
    scores[reference] = []
  predictions, seconds, profiles = {}, {}, {}
  start = time.time()
  profiles.update(train_as_members(bench, rows))
  runs = [(seed, *row) for seed in bench.seeds for row in rows]
  for i, (seed, row, method, point) in enumerate(runs, 1):
    config, workdir = method_config(bench, method, seed, point)
    log.info(
      "%s",
      study_progress(i, len(runs), list(seconds.values()), time.time() - start)
      + f": {row} seed {seed} ({workdir})",
    )
    t0 = time.time()
    run = trainer.train_and_evaluate(config, workdir)
    if run.get("preempted"):  # the study continues when run again
      errors.end_of_stopped_run(run)
    testing = time_profile.RunProfile()
    with testing.part("test_evaluation"):
      summary = trainer.evaluate_run(
        config, workdir, bench.test_split, view=bench.test_view
      )
      if row == bench.teacher and bench.teacher_reference_view:
        ref = trainer.evaluate_run(
          config,
          workdir,
          bench.test_split,
          view=bench.teacher_reference_view,
          write_predictions=False,
        )
        scores[reference].append({m: ref[m] for m in METRICS})
      if row in (bench.get("multiview_references") or ()):
        _multiview_references(scores, row, config, workdir, bench.test_split)
    testing.close()
    scores[row].append({m: summary[m] for m in METRICS})
    seconds[f"{row}/seed{seed}"] = round(time.time() - t0, 1)
    profiles[f"{row}/seed{seed}"] = run_profile(
      run, testing.seconds(), time.time() - t0
    )
    print(
      f"{row} seed {seed} on {test}: "
      + " ".join(
        f"{t}={summary[m]:.2f}" for m, t in zip(METRICS, METRIC_TITLES)
      )
      + f" ({seconds[f'{row}/seed{seed}']:.0f} s)",
      flush=True,
    )
    if seed == bench.seeds[0] and point is None:
      predictions[row] = os.path.join(
        workdir, "eval", f"{bench.test_split}_{bench.test_view}", "predictions"
      )
      last_summary, last_config = summary, config
  table = summarize(scores)
  gap_rows = [row for row, _, _ in rows]
  markdown = markdown_table(table, gap_rows, bench.lower, bench.upper)
  results = {
    "table": {
      row: {m: {"mean": v[0], "std": v[1]} for m, v in values.items()}
      for row, values in table.items()
    },
    "gap_closed_percent": {
      row: {
        m: gap_closed(table, row, bench.lower, bench.upper, m) for m in METRICS
      }
      for row in gap_rows
      if row not in (bench.lower, bench.upper)
      and {bench.lower, bench.upper} <= set(table)
    },
    "per_seed": scores,
    "seeds": list(bench.seeds),
    "scored_on": test,
    "background_policy": last_summary["background_policy"],
    "seconds_per_run": seconds,
    "total_seconds": round(time.time() - start, 1),
  }
  results["profile"] = study_profile(profiles, results["total_seconds"])
  profile_markdown = time_profile.markdown_table(
    dict(profiles, total=results["profile"]["total"])
  )
  sweep = bench.sweep if any(point for _, _, point in rows) else None
  if sweep:
    curve = {
      m: [table[row][m] for row, _, point in rows if point]
      for m in sweep.metrics
    }
    references = {
      row: {m: table[row][m][0] for m in sweep.metrics}
      for row in sweep.references
      if row in table
    }
    results["sweep"] = {
      "method": sweep.method,
      "key": sweep.key,
      "values": list(sweep.grid),
      "fixed": fixed_settings(sweep),
      "curve": {
        m: [{"mean": mean, "std": std} for mean, std in values]
        for m, values in curve.items()
      },
      "references": references,
    }
  with open(os.path.join(out, "results.json"), "w") as f:
    json.dump(results, f, indent=2)
  with open(os.path.join(out, "results.md"), "w") as f:
    f.write(
      f"Scored on {test} ({last_summary['background_policy']}), mean "
      f"± std over seeds {list(bench.seeds)}.\n\n{markdown}\n\n"
      f"{PROFILE_TITLE}\n\n{profile_markdown}\n"
    )
  if sweep:
    plots.sweep_curves(
      os.path.join(out, "sweep.png"),
      list(sweep.grid),
      curve,
      references,
      xlabel=sweep.label,
      title=f"{sweep.method} on {test}, mean ± std over "
      f"{len(bench.seeds)} seeds",
      label=sweep.method,
      metric_titles=dict(zip(METRICS, METRIC_TITLES)),
    )
  per_video = last_summary["per_video"]
  video_id = per_video[min(bench.plot_video_index, len(per_video) - 1)][
    "video_id"
  ]
  plots.segmentation_bars(
    os.path.join(out, "segmentation.png"),
    video_id,
    predictions,
    last_summary["class_names"],
    find_labels(last_config, bench.test_split, bench.test_view, video_id),
  )
  print(markdown)
  print(f"\n{PROFILE_TITLE}\n\n{profile_markdown}", flush=True)
  log.info(
    "study done in %s; results in %s (tensorboard --logdir %s)",
    run_log.duration(results["total_seconds"]),
    out,
    bench.workdir,
  )
  return results


def _multiview_references(scores, row, config, workdir, split) -> None:
  """Adds a multi-view teacher's reference rows: it scored on each exo view
  of `split` and as the views' ensemble (docs/multiview.md)."""
  from exo2ego_jax.methods import distill_multiview

  for view, summary in distill_multiview.ensemble_scores(
    config, workdir, split
  ).items():
    name = f"{row} scored on {split}/{view} (reference)"
    scores.setdefault(name, []).append({m: summary[m] for m in METRICS})


PROFILE_TITLE = (
  "Where the time went (seconds; docs/performance.md; runs that trained "
  "no step were reused):"
)


def train_as_members(bench: ml_collections.ConfigDict, rows) -> dict:
  """With bench.members = S > 1: trains the seeds of each row that have no
  workdir yet, S at a time, as members of one program
  (training/members.py), rows in order (teachers first). The study's loop
  then re-reports them as finished runs; runs started before are left to it
  (it resumes them). Returns {name: profile} of each program."""
  size = int(bench.get("members", 1) or 1)
  if size < 1:
    raise ValueError(f"config.members={size} must be >= 1 (1: no members)")
  if size == 1:
    return {}
  from exo2ego_jax.training import members

  profiles = {}
  for row, method, point in rows:
    fresh = []
    for seed in bench.seeds:
      config, workdir = method_config(bench, method, seed, point)
      if not os.path.exists(workdir):
        fresh.append((seed, config, workdir))
    for i in range(0, len(fresh), size):
      group = fresh[i : i + size]
      seeds = [seed for seed, _, _ in group]
      log.info("%s seeds %s: training as members of one program", row, seeds)
      results = members.train_members(
        [c for _, c, _ in group], [w for _, _, w in group]
      )
      if results[0].get("preempted"):  # the study continues when run again
        errors.end_of_stopped_run(results[0])
      name = f"{row}/members " + ",".join(f"seed{seed}" for seed in seeds)
      profiles[name] = results[0]["profile"]
  return profiles


def run_profile(run: dict, testing: dict, seconds: float) -> dict:
  """One run's profile in the study: the training call's parts (an old run
  re-reported from before profiles: all "other"), its test scoring, and the
  study's own time around them as "other"; "wall" is `seconds`."""
  trained = run.get("profile") or {"trained_steps": 0}
  combined = time_profile.add(trained, testing)
  combined.setdefault("trained_steps", 0)
  gap = max(0.0, seconds - combined.get("wall", 0.0))
  combined["other"] = round(combined.get("other", 0.0) + gap, 3)
  combined["wall"] = round(combined.get("wall", 0.0) + gap, 3)
  return combined


def study_profile(runs: dict, total_seconds: float) -> dict:
  """The study's profile: each run's, and their sum with the study's own
  time between runs (tables, the first imports) as "other"."""
  total = time_profile.add(*runs.values())
  gap = max(0.0, total_seconds - total.get("wall", 0.0))
  total["other"] = round(total.get("other", 0.0) + gap, 3)
  total["wall"] = round(total.get("wall", 0.0) + gap, 3)
  return {"runs": runs, "total": total}


def study_progress(
  run: int, runs: int, run_seconds: list[float], elapsed: float
) -> str:
  """`run i of n, elapsed t, ETA t`: the study's ETA is the mean time of the
  runs so far times the runs left (runs reused from an earlier invocation
  are quick and make it optimistic until new ones are trained)."""
  text = f"run {run} of {runs}, elapsed {run_log.duration(elapsed)}"
  if run_seconds:
    mean = sum(run_seconds) / len(run_seconds)
    text += (
      f", ETA {run_log.duration(mean * (runs - run + 1))} "
      f"(from {len(run_seconds)} runs so far)"
    )
  return text
