r"""Is one study row better than another, or is it the seeds? Pools the
per-seed scores of rows over any number of studies' results.json (say seeds
0-2 from one study and seeds 3-5 from another) and compares each row with
a reference row, seed by seed.

  python benchmarks/compare_rows.py \
      --results A/results.json [B/results.json ...] \
      --against C/results.json [D/results.json ...] \
      (--against_row align_pseudo_label | --against_method align_pseudo_label) \
      [--rows "distill_model sync_offset=32" ...] [--metrics f1@25 edit] \
      [--out comparison.md]

The reference is one row (--against_row), or, for the rows of a sweep,
the same sweep point of another method (--against_method: "distill_model
sync_offset=32" against "align_pseudo_label sync_offset=32"; rows with no
such counterpart are left out). For every row of --results (or only
--rows) and every metric it prints the row's mean ± std over its seeds,
the reference row's, and the difference
of the means with a 95% confidence interval. Where the two rows were run
on the same seeds, the difference is taken seed by seed (a paired t
interval: the runs of one seed share their teacher and data, so their
scores move together); otherwise the interval is Welch's. "p" is the
two-sided p-value of the same test. A seed that two files both hold must
hold the same scores in both (the same run reported twice); otherwise the
command stops with an error line naming the row and the seed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import numpy as np
from scipy import stats


def pooled(paths: list[str]) -> dict:
  """{row: {seed: {metric: score}}} over the studies' results.json."""
  rows: dict = {}
  for path in paths:
    try:
      with open(path) as f:
        results = json.load(f)
      seeds, per_seed = results["seeds"], results["per_seed"]
    except (OSError, ValueError, KeyError) as e:
      raise SystemExit(
        f"error: {path}: not a study's results.json ({e}); give the file "
        "`python -m exo2ego_jax.benchmark` wrote into its results_dir"
      ) from None
    for row, scores in per_seed.items():
      mine = rows.setdefault(row, {})
      for seed, score in zip(seeds, scores):
        if seed in mine and mine[seed] != score:
          raise SystemExit(
            f"error: {path}: row {row!r} seed {seed} differs from the "
            "same seed in an earlier file; give each run once"
          )
        mine[seed] = score
  return rows


def compare(a: dict, b: dict, metric: str) -> dict:
  """Means, stds and the difference a - b with its 95% interval, for the
  scores {seed: {metric: x}} of two rows."""
  xa = np.array([a[s][metric] for s in sorted(a)], np.float64)
  xb = np.array([b[s][metric] for s in sorted(b)], np.float64)
  out = {
    "seeds": sorted(a),
    "reference_seeds": sorted(b),
    "mean": float(xa.mean()),
    "std": float(xa.std()),
    "reference_mean": float(xb.mean()),
    "reference_std": float(xb.std()),
    "difference": float(xa.mean() - xb.mean()),
  }
  if sorted(a) == sorted(b) and len(xa) > 1:
    d = xa - xb
    se = d.std(ddof=1) / math.sqrt(len(d))
    dof = len(d) - 1
    out["test"] = "paired"
  elif len(xa) > 1 and len(xb) > 1:
    va, vb = xa.var(ddof=1) / len(xa), xb.var(ddof=1) / len(xb)
    se = math.sqrt(va + vb)
    dof = (
      (va + vb) ** 2 / (va**2 / (len(xa) - 1) + vb**2 / (len(xb) - 1))
      if se > 0
      else 1.0
    )
    out["test"] = "welch"
  else:
    out["test"] = None
    return out
  half = float(stats.t.ppf(0.975, dof) * se)
  out["interval"] = (out["difference"] - half, out["difference"] + half)
  if se > 0:
    t = out["difference"] / se
    out["p"] = float(2 * stats.t.sf(abs(t), dof))
  else:
    out["p"] = 0.0 if out["difference"] else 1.0
  return out


def counterpart(row: str, method: str) -> str:
  """The same sweep point of `method`: "m key=v" -> "method key=v"."""
  _, sep, point = row.partition(" ")
  return f"{method}{sep}{point}"


def table(rows: dict, pairs: list, metrics) -> str:
  """pairs: [(row name, reference name, reference scores)]."""
  lines = [
    "Mean ± std over seeds (population std, as the study tables), the "
    "difference of the means with its 95% interval (paired by seed where "
    "both rows ran the same seeds, else Welch) and the two-sided p-value.",
    "",
    "| row | reference | seeds | metric | row | reference | difference | "
    "95% interval | p | test |",
    "|---|---|---|---|---|---|---|---|---|---|",
  ]
  for name, against, reference in pairs:
    for metric in metrics:
      c = compare(rows[name], reference, metric)
      interval = (
        f"[{c['interval'][0]:+.2f}, {c['interval'][1]:+.2f}]"
        if "interval" in c
        else "-"
      )
      p = f"{c['p']:.2f}" if "p" in c else "-"
      lines.append(
        f"| {name} | {against} | {len(c['seeds'])} | {metric} | "
        f"{c['mean']:.2f} ± {c['std']:.2f} | "
        f"{c['reference_mean']:.2f} ± {c['reference_std']:.2f} | "
        f"{c['difference']:+.2f} | {interval} | {p} | {c['test'] or '-'} |"
      )
  return "\n".join(lines)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--results", nargs="+", required=True)
  parser.add_argument("--against", nargs="+", required=True)
  which = parser.add_mutually_exclusive_group(required=True)
  which.add_argument("--against_row", help="the one reference row")
  which.add_argument(
    "--against_method", help="each row's sweep point of this method"
  )
  parser.add_argument("--rows", nargs="*", default=None)
  parser.add_argument("--metrics", nargs="+", default=["f1@25", "edit"])
  parser.add_argument("--out", default=None, help="also write the table here")
  args = parser.parse_args(argv)
  rows = pooled(args.results)
  references = pooled(args.against)
  names = args.rows or list(rows)
  missing = [n for n in names if n not in rows]
  if missing:
    raise SystemExit(
      f"error: no row {missing[0]!r} in {' '.join(args.results)}; rows "
      f"there: {', '.join(rows)}"
    )
  if args.against_row:
    if args.against_row not in references:
      raise SystemExit(
        f"error: no row {args.against_row!r} in {' '.join(args.against)}; "
        f"rows there: {', '.join(references)}"
      )
    pairs = [(n, args.against_row) for n in names]
  else:
    pairs = [
      (n, counterpart(n, args.against_method))
      for n in names
      if counterpart(n, args.against_method) in references
    ]
    if not pairs:
      raise SystemExit(
        f"error: no row of {' '.join(args.against)} is a sweep point of "
        f"{args.against_method!r} that {' '.join(args.results)} has; rows "
        f"there: {', '.join(references)}"
      )
  checked = [(n, rows[n]) for n, _ in pairs]
  checked += [(a, references[a]) for _, a in pairs]
  for name, scores in checked:
    known = set.intersection(*(set(s) for s in scores.values()))
    for metric in args.metrics:
      if metric not in known:
        raise SystemExit(
          f"error: row {name!r} has no metric {metric!r}; metrics: "
          f"{', '.join(sorted(known))}"
        )
  text = table(rows, [(n, a, references[a]) for n, a in pairs], args.metrics)
  print(text)
  if args.out:
    with open(args.out, "w") as f:
      f.write(text + "\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())
