"""The multi-view study (issue #20, docs/multiview.md).

  python -m exo2ego_jax.benchmark \
      --config configs/synthetic_benchmark_multiview.py

On `synthetic_sync/multiview` (the default world, its exo camera as view
0, seen by 3 more exo cameras, each absent during stretches of its own),
seeds 0, 1, 2: the single-view rows, which are the main study's runs
(exo_only and distill_model use exo view 0, the `exo` field, the default
world's exo view byte for byte), the multi-view teacher and its students,
one teacher per view (exo_only is view 0's) and their student, all scored
on the ego view of the test split; the teachers' reference rows (the shared
teacher on each exo view and as the views' ensemble, each per-view teacher
on its view, on test/exo); and a sweep of distill_multiview over the number
of views it combines (1, 2, 4 = K: sweep.png).
"""

import ml_collections

from configs import synthetic_benchmark


def get_config():
  config = synthetic_benchmark.get_config()
  config.workdir = "workdirs/synthetic_benchmark_multiview"
  config.dataset_name = "synthetic_sync/multiview"
  config.methods = (
    "exo_only",
    "ego_oracle",
    "distill_model",
    "exo_multiview",
    "distill_multiview",
    "distill_multiview_confidence",
    "sync_pseudo_label_vote",
    # One teacher per view (view 0's is exo_only) and their student.
    "exo_view1",
    "exo_view2",
    "exo_view3",
    "distill_multiview_per_view",
  )
  config.method_configs = ml_collections.ConfigDict(
    {
      "exo_only": "configs/synthetic_exo.py",
      "ego_oracle": "configs/synthetic_ego_oracle.py",
      "distill_model": "configs/synthetic_distill_model.py",
      "exo_multiview": "configs/synthetic_exo_multiview.py",
      "distill_multiview": "configs/synthetic_distill_multiview.py",
      "distill_multiview_confidence": (
        "configs/synthetic_distill_multiview_confidence.py"
      ),
      "sync_pseudo_label_vote": "configs/synthetic_sync_pseudo_label_vote.py",
      "exo_view1": "configs/synthetic_exo_view.py",
      "exo_view2": "configs/synthetic_exo_view.py",
      "exo_view3": "configs/synthetic_exo_view.py",
      "distill_multiview_per_view": (
        "configs/synthetic_distill_multiview_per_view.py"
      ),
    }
  )
  # Teachers other than config.teacher's, per method: the multi-view rows
  # learn from the multi-view teacher.
  config.teachers = ml_collections.ConfigDict(
    {
      "distill_multiview": "exo_multiview",
      "distill_multiview_confidence": "exo_multiview",
      "sync_pseudo_label_vote": "exo_multiview",
      # A row per view, in view order: multiview.teachers.
      "distill_multiview_per_view": (
        "exo_only",
        "exo_view1",
        "exo_view2",
        "exo_view3",
      ),
    }
  )
  # num_views=4 (= K, every view) as the sweep's last point, so that the
  # sweep reuses the distill_multiview runs.
  config.overrides = ml_collections.ConfigDict(
    {
      "distill_multiview": {"multiview": {"num_views": 4}},
      **{f"exo_view{k}": {"multiview": {"view": k}} for k in (1, 2, 3)},
    }
  )
  # Teacher runs also scored on every exo view of the test split and as
  # the views' ensemble (reference rows).
  config.multiview_references = (
    "exo_multiview",
    "exo_view1",
    "exo_view2",
    "exo_view3",
  )
  config.sweep = ml_collections.ConfigDict()
  config.sweep.method = "distill_multiview"
  config.sweep.key = "multiview.num_views"
  config.sweep.grid = (1, 2, 4)
  config.sweep.label = "exo views used"
  config.sweep.metrics = ("f1@25", "edit")
  config.sweep.references = ("ego_oracle", "distill_model", "exo_only")
  return config
