"""Defaults shared by every experiment; other configs start from these.

Not meant to be run by itself: it trains the exo teacher with the reference
hyper-parameters on the embedded synthetic benchmark, as slowly as the paper.

The comment at (or right above) each field is its meaning, as `--help` shows
it: `python -m exo2ego_jax.train --config configs/<file>.py --help`.
"""

import ml_collections
from ml_collections import config_dict


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  # What is trained: a method registered in exo2ego_jax/methods/, e.g.
  # exo_supervised, ego_oracle, distill_model, distill_feature, distill_both,
  # uda_adversarial, uda_entropy, align_pseudo_label, sync_pseudo_label
  # (docs/methods.md).
  config.mode = "exo_supervised"
  config.seed = 0  # initialisation and data order

  config.dataset = ml_collections.ConfigDict()
  # TFDS name/config; the project's builders are built on first use.
  config.dataset.name = "synthetic_sync/default"
  # None: TFDS's default ($TFDS_DATA_DIR or ~/tensorflow_datasets).
  config.dataset.data_dir = config_dict.placeholder(str)

  config.data = ml_collections.ConfigDict()
  config.data.train_split = "train"  # the split trained on
  config.data.view = "exo"  # the view the trained network is fed
  config.data.label_key = "labels"  # supervised modes: labels of that view
  config.data.eval_split = "validation"  # model selection; never "test"
  config.data.eval_view = "exo"  # the view validation scores
  config.data.max_frames = 600  # window length in chunked steps
  config.data.chunk_size = 4  # frames max-pooled into one step
  config.data.zoom = True  # random chunk size in [c/2, 2c]
  config.data.batch_size = 8  # windows per step, all devices
  config.data.eval_batch_size = 8  # windows per evaluation batch
  # Chunk sizes whose predictions are averaged at evaluation, validation and
  # test (test-time augmentation), e.g. (3, 4, 5); None: (chunk_size,).
  config.data.eval_chunk_sizes = config_dict.placeholder(tuple)
  # Robustness studies (configs/synthetic_ablation_*.py): share of the
  # training split's recordings used, a fixed random subset (subset_seed;
  # smaller subsets nest in larger ones), trained for as many steps as the
  # whole split would take.
  config.data.train_fraction = 1.0
  config.data.subset_seed = 0  # which subset train_fraction keeps
  # Synchronization error put in at training time (distill_* and
  # sync_pseudo_label), in frames: the student view's frames are shifted
  # against the teacher's. For align_pseudo_label, which trusts no
  # timestamp, it is put into the recordings DTW aligns. Independent of any
  # jitter built into the dataset.
  config.data.sync_offset = 0
  # How sync_offset applies: "fixed" (always that shift), or an offset drawn
  # uniformly from [-sync_offset, sync_offset] once per recording
  # ("per_video") or per window ("per_window").
  config.data.sync_offset_mode = "fixed"
  # Training windows: "random" (one random crop of every recording per epoch)
  # or "consecutive" (every consecutive window of every recording once per
  # epoch, as the published recipe trains).
  config.data.windows = "random"

  config.model = ml_collections.ConfigDict()
  # Weights of the C2F-TCN heads y1..y5 and y in the averaged prediction.
  config.model.ensemble_weights = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
  # How the 5-tap convolutions are computed (same parameters, same function):
  # "xla" (XLA's convolution) or "winograd" (F(4, 5) minimal filtering, 2.5x
  # fewer matmul FLOPs, faster on CPU; equal to float32 rounding).
  config.model.conv_impl = "xla"
  # BatchNorm running variance updated with the unbiased (n / (n - 1))
  # estimate of the batch variance, as PyTorch does (the published recipe).
  config.model.bn_unbiased_var = False
  # The temporal model: "c2f_tcn" (offline, full context) or "causal_tcn"
  # (live: each output reads only past steps; configs/synthetic_causal_*.py
  # add its model.receptive_field, model.kernel_size and model.features).
  config.model.name = "c2f_tcn"

  config.loss = ml_collections.ConfigDict()
  config.loss.smooth_weight = 0.17  # weight of the temporal smoothing term
  # The published recipe's teacher and oracle: labels of the dataset's
  # background classes are ignored by the cross-entropy and the smoothing.
  config.loss.ignore_background = False
  # "valid_pairs": smoothing averaged over valid neighbour pairs (padding
  # never counts); "reference": as the published code, summed over valid,
  # non-ignored steps and divided by every step of the window, padding too.
  config.loss.smooth_average = "valid_pairs"
  # Distillation: MSE between teacher and student logits of these heads.
  config.loss.distill_heads = ("y5", "y4", "y3", "y2")
  config.loss.distill_weights = (1.0, 1.0, 1.0, 1.0)  # one per distill head
  # Optional label term of distillation: CE on the teacher's hard labels.
  config.loss.pseudo_label_weight = 0.0

  # Feature adapter of distill_feature / distill_both (ego -> exo features).
  config.adapter = ml_collections.ConfigDict()
  config.adapter.kind = "attention"  # "attention" (windowed) or "mlp"
  config.adapter.hidden_dim = 256  # adapter width
  config.adapter.num_layers = 2  # adapter depth
  config.adapter.num_heads = 4  # attention heads (kind "attention")
  config.adapter.window = 32  # attention span in steps

  # Domain-adaptation baselines (uda_*): unlabeled target windows, drawn
  # independently of the labeled ones (synchronization ignored).
  config.uda = ml_collections.ConfigDict()
  config.uda.target_split = "sync_pairs"  # uda_*: split of the target windows
  config.uda.target_view = "ego"  # uda_*: view of the target windows
  config.uda.frame_weight = 1.0  # uda_adversarial: frame domain classifier
  config.uda.sequence_weight = 0.0  # uda_adversarial: sequence-level one
  config.uda.hidden_dim = 64  # uda_adversarial: classifier width
  config.uda.entropy_weight = 0.01  # uda_entropy: target entropy
  # uda_entropy: minus the entropy of the mean target prediction (times
  # entropy_weight), against collapse onto one class; 0: plain entropy.
  config.uda.diversity_weight = 1.0

  # align_pseudo_label: DTW between the teacher's decoder features of the
  # exo and the ego steps of each synchronized-pairs recording.
  config.pseudo_labels = ml_collections.ConfigDict()
  # align_pseudo_label: DTW distance, "euclidean", "cosine" or "sqeuclidean".
  config.pseudo_labels.metric = "euclidean"
  # Sakoe-Chiba band radius as a fraction of the longer sequence (None: none).
  config.pseudo_labels.band_fraction = config_dict.placeholder(float)

  # Self-synchronization (exo2ego_jax/sync): estimate each synchronized
  # recording's clock t_exo = rate * t_ego + offset from the teacher's (and,
  # with rounds > 1, the previous round's student's) outputs and train on
  # the re-synchronized pairs. Modes that train on synchronized pairs only.
  config.sync = ml_collections.ConfigDict()
  config.sync.estimate = False  # off: the recorded timestamps are trusted
  # Rounds of estimate-then-distill; round R > 1 first trains round R - 1
  # in <workdir>/round<R-1> and estimates with its student.
  config.sync.rounds = 1
  config.sync.max_offset = 450  # frames searched each way
  # |rate - 1| searched with a student; 0: the rate is 1 (the clocks tick
  # alike, only the offset is estimated). On 1000-2000-frame recordings a
  # rate error of 0.3% moves the map by 3-6 frames, and the search's rates
  # were no better than 1 (docs/sync.md); set it (e.g. 0.005) for long
  # recordings, where drift adds up to many frames.
  config.sync.max_rate = 0.0
  config.sync.first_round_max_rate = 0.0  # ... and with the teacher
  config.sync.rate_steps = 21  # rates tried in that range
  config.sync.min_overlap = 0.5  # of the shorter stream, at any offset
  config.sync.min_frames = 64  # shorter ego streams keep their timestamps
  # Robust z-score of the correlation peak under which a recording keeps
  # its timestamps (counted and logged).
  config.sync.min_confidence = 2.0
  # Rounds > 1: the previous round's students are cross-fitted over this
  # many folds of the recordings (each estimates the fold it never saw).
  config.sync.folds = 2
  # Set by the run itself on a cross-fitting student: the fold it leaves out.
  config.sync.holdout = config_dict.placeholder(int)

  config.optim = ml_collections.ConfigDict()
  config.optim.learning_rate = 1e-5  # reference: Adam, lr 1e-5, wd 1e-4
  config.optim.weight_decay = 1e-4  # L2 added to the gradient (PyTorch Adam)

  config.num_epochs = 100  # passes over the training split
  config.eval_every_epochs = 10  # validation (and checkpoint) interval
  config.log_every_steps = 10  # metrics.jsonl / TensorBoard interval
  # Latest-state checkpoints besides those at every evaluation (0: only
  # those); a preempted or killed run resumes from the last one.
  config.checkpoint_every_steps = 0
  # False: a NaN/inf loss or gradient stops the run, naming step and videos.
  # True: such a batch's update is skipped and counted ("skipped" in logs).
  config.skip_nonfinite_batches = False
  # Validation metric that picks best/: a key of the evaluation summary,
  # e.g. "f1@25", "edit", "mof", or "f1_edit_mof_sum" (F1@10 + F1@25 +
  # F1@50 + Edit + MoF, the published code's choice).
  config.best_metric = "f1@25"
  # Stop after this many evaluations without a better best_metric (0: off;
  # the published recipe: 50, with an evaluation every epoch).
  config.early_stopping_patience = 0
  # How background frames are scored: "exclude_background_segments",
  # "drop_background_frames" (the paper's oracle script) or
  # "drop_background_frames_and_segments" (its transfer scripts); see
  # exo2ego_jax.evaluation.metrics.
  config.background_policy = "exclude_background_segments"
  # Run directory of the exo_supervised teacher (distillation, pseudo-labels).
  config.teacher_workdir = config_dict.placeholder(str)
  # Run directory of a distill_feature run whose adapter distill_both uses.
  config.adapter_workdir = config_dict.placeholder(str)
  # Run directory a distilled student of another network than its teacher's
  # (a causal one) starts from, e.g. the causal exo-only run; None: fresh.
  config.student_init_workdir = config_dict.placeholder(str)
  # Progress on stderr: a bar on a terminal, else a line a minute.
  config.progress = True
  return config
