"""The main job: the whole exo->ego study on the embedded synthetic benchmark.

  python -m exo2ego_jax.benchmark --config configs/synthetic_benchmark.py

Builds `synthetic_sync/default` if missing, then for seeds 0, 1, 2 trains the
exo teacher, the ego oracle and every adaptation method (configs/synthetic_*.py)
and scores each on the ego view of the test split. Writes
workdirs/synthetic_benchmark/{results.md,results.json,segmentation.png} and
prints the table (mean ± std over seeds). Runs that already finished are
reused; an interrupted study resumes. About 13 minutes on 2 CPU cores
(12 min 35 s measured from a cold start on an idle 2-vCPU Intel Xeon VM,
dataset build and compilation included).
Expected: exo_only F1@25 below 10; ego_oracle about 50; distill_model closes
more than 70% of the exo_only -> ego_oracle gap in Edit and F1@25.
"""

import ml_collections
from ml_collections import config_dict


def get_config():
  config = ml_collections.ConfigDict()
  # The study's directory (also --workdir): one run per <method>/seed<k>.
  config.workdir = "workdirs/synthetic_benchmark"
  # Where results.{md,json} and segmentation.png go (None: the workdir).
  config.results_dir = config_dict.placeholder(str)
  config.seeds = (0, 1, 2)  # every method is trained once per seed
  # Rows of the table (methods), in order.
  config.methods = (
    "exo_only",
    "ego_oracle",
    "distill_model",
    "distill_feature",
    "distill_both",
  )
  # The training config file of each method.
  config.method_configs = ml_collections.ConfigDict(
    {
      "exo_only": "configs/synthetic_exo.py",
      "ego_oracle": "configs/synthetic_ego_oracle.py",
      "distill_model": "configs/synthetic_distill_model.py",
      "distill_feature": "configs/synthetic_distill_feature.py",
      "distill_both": "configs/synthetic_distill_both.py",
    }
  )
  # Per-method config overrides, e.g. {"distill_model": {"num_epochs": 40}}.
  config.overrides = ml_collections.ConfigDict()
  config.teacher = "exo_only"  # whose runs teach the distillations
  config.adapter = "distill_feature"  # whose adapters distill_both uses
  config.lower = "exo_only"  # the gap closed is lower -> upper
  config.upper = "ego_oracle"  # the row that closes the whole gap
  config.test_split = "test"  # the split every run is scored on
  config.test_view = "ego"  # the view every run is scored on
  # Also score the teacher on this view of the test split (reference row).
  config.teacher_reference_view = "exo"
  # Dataset and TFDS data_dir of every run (None: each method config's).
  config.dataset_name = config_dict.placeholder(str)
  config.data_dir = config_dict.placeholder(str)  # as dataset_name
  config.plot_video_index = 0  # which test recording segmentation.png draws
  # Progress of each run on stderr (a bar on a terminal, else a line a
  # minute); the study's own line per run is always shown.
  config.progress = True
  # Seeds trained at once as members of one compiled program (1: one run
  # after another). Members equal separate runs to float32 rounding, not
  # bit for bit: docs/performance.md.
  config.members = 1
  return config
