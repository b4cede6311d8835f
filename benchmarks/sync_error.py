r"""How well the runs of a study estimated their clocks, and the sweep
figure of the self-synchronization study.

  python benchmarks/sync_error.py --workdir workdirs/synthetic_benchmark \
      [--figure sync_sweep.png --plain A/results.json \
       --estimated B/results.json --baseline C/results.json]

Finds every `sync_estimates.json` under --workdir (one per run that
estimated clocks: config.sync.estimate), groups them by sweep point and
round (round 1: the teacher's estimates, pooled over a run's cross-fitting
students; round 2: the students'), pools the recordings of all seeds and
prints, per group: recordings, fallbacks to the timestamps, the mean
absolute error of the estimated map (frames, over the ego frames inside the
exo recording), its 95th percentile over recordings, the share of
recordings whose mean error is within one chunk (config.data.chunk_size,
4 frames) and the share whose estimated offset is within 4 frames. Writes
sync_error.{md,json} into --out (default: --workdir).

With --figure: the share of the exo-only -> ego-oracle gap closed (F1@25
and Edit) against the sweep value, for the study without (--plain) and
with (--estimated) the estimator, and the DTW baseline: a curve where
--baseline is its own sweep over the same J (`--config.sweep.method=
align_pseudo_label`), else its align_pseudo_label row as a horizontal line.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import re


from exo2ego_jax.sync import resync

CHUNK = 4


def groups(workdir: str) -> dict:
  """{(point, round): [recording entries of every seed]}."""
  found = collections.defaultdict(list)
  pattern = os.path.join(workdir, "**", "sync_estimates.json")
  for path in sorted(glob.glob(pattern, recursive=True)):
    rel = os.path.relpath(path, workdir).split(os.sep)
    seed_at = max(
      i for i, part in enumerate(rel) if re.fullmatch(r"seed\d+", part)
    )
    point = "/".join(rel[:seed_at])
    with open(path) as f:
      record = json.load(f)
    found[(point, record.get("round", 1))] += record["recordings"]
  return found


def figures(entries: list[dict]) -> dict:
  return resync.summary(entries, CHUNK)


def table(found: dict) -> tuple[str, dict]:
  lines = [
    "| runs | round | recordings | fallbacks | map error (frames) | p95 | "
    "within one chunk | offset within 4 |",
    "|---|---|---|---|---|---|---|---|",
  ]
  results = {}
  for (point, rnd), entries in sorted(found.items()):
    f = figures(entries)
    results[f"{point} round{rnd}"] = f
    if "map_error_mean" in f:
      scores = (
        f"{f['map_error_mean']:.1f} | {f['map_error_p95']:.1f} | "
        f"{100 * f['within_chunk']:.0f}% | {100 * f['offsets_within_4']:.0f}%"
      )
    else:
      scores = "- | - | - | -"
    lines.append(
      f"| {point} | {rnd} | {f['recordings']} | {f['fallbacks']} | {scores} |"
    )
  return "\n".join(lines), results


def gap_curve(results: dict, metric: str) -> tuple[list, list]:
  sweep = results["sweep"]
  values = sweep["values"]
  lo = results["table"]["exo_only"][metric]["mean"]
  hi = results["table"]["ego_oracle"][metric]["mean"]
  curve = [100 * (p["mean"] - lo) / (hi - lo) for p in sweep["curve"][metric]]
  spread = [100 * p["std"] / (hi - lo) for p in sweep["curve"][metric]]
  return values, list(zip(curve, spread))


def draw(path: str, plain: str, estimated: str, baseline: str | None) -> None:
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  runs = {}
  for label, name in (("timestamps", plain), ("clocks estimated", estimated)):
    with open(name) as f:
      runs[label] = json.load(f)
  base = None
  if baseline:
    with open(baseline) as f:
      base = json.load(f)
  curves = [
    (results, {"marker": "o", "label": f"distill_model, {label}"})
    for label, results in runs.items()
  ]
  if base is not None and base.get("sweep"):  # DTW measured at every J
    style = {"color": "gray", "linestyle": "--", "marker": "s"}
    curves.append((base, dict(style, label="align_pseudo_label (DTW)")))
  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  for ax, metric, title in zip(axes, ("f1@25", "edit"), ("F1@25", "Edit")):
    for results, style in curves:
      values, curve = gap_curve(results, metric)
      ax.errorbar(
        values,
        [c for c, _ in curve],
        yerr=[s for _, s in curve],
        capsize=3,
        **style,
      )
    if base is not None and not base.get("sweep"):
      lo = base["table"]["exo_only"][metric]["mean"]
      hi = base["table"]["ego_oracle"][metric]["mean"]
      dtw = base["table"]["align_pseudo_label"][metric]["mean"]
      ax.axhline(
        100 * (dtw - lo) / (hi - lo),
        color="gray",
        linestyle="--",
        label="align_pseudo_label (DTW, J = 0)",
      )
    ax.axhline(100, color="black", linewidth=0.5)
    ax.set_xlabel("synchronization error J (frames)")
    ax.set_ylabel(f"gap closed, {title} (%)")
    ax.set_title(title)
  axes[0].legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--workdir", required=True, help="A study's workdir.")
  parser.add_argument("--out", help="Where sync_error.{md,json} go.")
  parser.add_argument("--figure", help="Also draw the sweep figure here.")
  parser.add_argument("--plain", help="results.json of the plain sweep.")
  parser.add_argument("--estimated", help="results.json, clocks estimated.")
  parser.add_argument(
    "--baseline",
    help="results.json of the DTW baseline: its sweep over the same J "
    "(--config.sweep.method=align_pseudo_label), drawn as a curve, or a "
    "study with an align_pseudo_label row, drawn as a line.",
  )
  args = parser.parse_args()
  if not os.path.isdir(args.workdir):
    raise SystemExit(f"error: {args.workdir} is not a study's workdir")
  found = groups(args.workdir)
  if not found:
    raise SystemExit(
      f"error: no sync_estimates.json under {args.workdir}: run a study "
      "with config.sync.estimate (configs/synthetic_ablation_*_sync.py)"
    )
  markdown, results = table(found)
  print(markdown)
  out = args.out or args.workdir
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, "sync_error.md"), "w") as f:
    f.write(markdown + "\n")
  with open(os.path.join(out, "sync_error.json"), "w") as f:
    json.dump(results, f, indent=2)
  if args.figure:
    if not (args.plain and args.estimated):
      raise SystemExit("error: --figure needs --plain and --estimated")
    draw(args.figure, args.plain, args.estimated, args.baseline)
    print(f"wrote {args.figure}")


if __name__ == "__main__":
  main()
