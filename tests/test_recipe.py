"""The published training recipe's pieces: consecutive windows, ignored
background labels, the reference's smoothing average, selection by the
score sum, early stopping, and the paper configs."""

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

from configs import assembly101_paper_benchmark
from configs import synthetic_paper_benchmark
from exo2ego_jax.training import study
from exo2ego_jax.data import input_pipeline as ip
from exo2ego_jax.training import losses
from exo2ego_jax.evaluation import metrics
from exo2ego_jax.training import trainer
from conftest import ListSource


def _recording(length, index):
  # Feature value = 1000 * recording + frame: every window says what it holds.
  frames = np.arange(length, dtype=np.float32) + 1000 * index
  labels = (np.arange(length) // 7 % 3).astype(np.int32)  # 0 = background
  return {
    "exo": frames[:, None],
    "ego": -frames[:, None],
    "labels": labels,
    "video_id": f"rec{index}".encode(),
  }


LENGTHS = (5, 23, 24, 25, 60)


def _consecutive(**kwargs):
  source = ListSource([_recording(n, i) for i, n in enumerate(LENGTHS)])
  args = dict(
    views=("exo",),
    label_key="labels",
    batch_size=1,
    num_epochs=2,
    max_frames=12,
    chunk_size=2,
    zoom=False,
    seed=3,
    windows="consecutive",
  )
  args.update(kwargs)
  return ip.train_dataset(source, **args)


def test_consecutive_windows_cover_every_frame_once_per_epoch():
  ds = _consecutive()
  span = 12 * 2
  per_epoch = sum(-(-n // span) for n in LENGTHS)  # 1 + 1 + 1 + 2 + 3
  assert per_epoch == 8 and len(ds) == 2 * per_epoch
  for epoch in range(2):
    seen = []
    for k in range(epoch * per_epoch, (epoch + 1) * per_epoch):
      window = ds[k]
      steps = int(window["mask"][0].sum())
      # Chunk 2 max-pools frame pairs: the odd frames (or a last lone one).
      values = window["exo"][0, :steps, 0].astype(int)
      recording = int(window["index"][0])
      assert (values // 1000 == recording).all()
      seen.append((recording, int(values[0] % 1000)))
    starts = sorted(seen)
    expected = sorted(
      (i, s) for i, n in enumerate(LENGTHS) for s in range(1, n + 1, span)
    )
    # The first step of a window holds frames start, start + 1 (max: start+1,
    # or start itself for a 1-frame tail).
    assert [(r, s) for r, s in starts] == [
      (r, min(s, LENGTHS[r] - 1)) for r, s in expected
    ]
  # The order is shuffled, and differently in the second epoch.
  first = [int(ds[k]["index"][0]) for k in range(per_epoch)]
  second = [int(ds[k]["index"][0]) for k in range(per_epoch, 2 * per_epoch)]
  assert first != sorted(first) or second != sorted(second)
  assert first != second


def test_consecutive_windows_are_deterministic_and_zoom_fits_the_span():
  a, b = _consecutive(zoom=True), _consecutive(zoom=True)
  for k in range(len(a)):
    np.testing.assert_array_equal(a[k]["exo"], b[k]["exo"])
    # A zoomed chunk never makes a window longer than max_frames steps, and
    # every frame of the window is still inside one of its steps.
    assert a[k]["mask"].sum() <= 12


def test_consecutive_windows_refuse_a_training_fraction():
  with pytest.raises(ValueError, match="train_fraction"):
    _consecutive(fraction=0.5)
  with pytest.raises(ValueError, match="config.data.windows='sideways'"):
    _consecutive(windows="sideways")


def test_ignore_classes_turn_background_labels_into_ignore():
  plain = _consecutive(chunk_size=1)[0]
  ignored = _consecutive(chunk_size=1, ignore_classes=(0,))[0]
  labels, kept = plain["labels"][0], ignored["labels"][0]
  background = labels == 0
  assert background.any() and (labels[~background] != -100).any()
  assert (kept[background] == -100).all()
  np.testing.assert_array_equal(kept[~background], labels[~background])


def _reference_smoothing(probs, labels, mask):
  """The published formula, written channels-first as the PyTorch code
  computes it: 0.17 is applied outside."""
  log_p = np.log(np.transpose(probs, (0, 2, 1)) + 1e-10)  # (B, C, T)
  valid = ((mask > 0) & (labels != -100)).astype(np.float64)[:, None, :]
  sq = np.clip((log_p[:, :, 1:] - log_p[:, :, :-1]) ** 2, 0, 16)
  return np.mean(sq * valid[:, :, 1:])


def test_reference_smoothing_matches_the_published_formula():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 10, 4)) * 3
  probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  mask = np.array([[1] * 10, [1] * 6 + [0] * 4], np.float32)
  labels = rng.integers(0, 4, size=(2, 10)).astype(np.int32)
  labels[0, 3] = labels[1, 7] = -100
  got = losses.reference_smoothing(
    jnp.asarray(probs, jnp.float32), jnp.asarray(labels), jnp.asarray(mask)
  )
  want = _reference_smoothing(probs, labels, mask)
  np.testing.assert_allclose(float(got), want, rtol=1e-5)
  # Ours averages over valid pairs only, so padding never dilutes it.
  ours = losses.smoothing(jnp.asarray(probs, jnp.float32), jnp.asarray(mask))
  assert float(ours) > float(got)
  total, logs = losses.supervised_loss(
    jnp.asarray(probs, jnp.float32),
    jnp.asarray(labels),
    jnp.asarray(mask),
    0.17,
    "reference",
  )
  np.testing.assert_allclose(float(logs["smooth"]), want, rtol=1e-5)
  np.testing.assert_allclose(
    float(total), float(logs["ce"]) + 0.17 * want, rtol=1e-5
  )


def test_score_sum_is_the_published_selection_score():
  out = metrics.score_videos(
    [("v", [1, 1, 2, 2, 0], [1, 1, 1, 2, 2])], background_classes=(0,)
  )
  want = out["f1@10"] + out["f1@25"] + out["f1@50"] + out["edit"] + out["mof"]
  assert out[metrics.SCORE_SUM] == pytest.approx(want)
  assert 0 < want < 500


@pytest.mark.parametrize(
  "step,best,expected",
  [(30, 10, True), (29, 10, False), (30, None, False), (12, 12, False)],
)
def test_patience_counts_evaluations_since_the_best(step, best, expected):
  # Evaluations every 5 steps, patience 4: 4 evaluations after step 10 is 30.
  assert trainer.patience_exhausted(step, best, 5, 4) is expected


def test_early_stopping_ends_a_run_and_a_rerun_only_reports(
  make_config, tmp_path
):
  # Evaluations every epoch (2 steps); patience 1 stops the run at the first
  # evaluation that is not better than the best so far.
  config = make_config(
    num_epochs=6, early_stopping_patience=1, best_metric="f1_edit_mof_sum"
  )
  workdir = str(tmp_path / "run")
  results = trainer.train_and_evaluate(config, workdir)
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    records = [json.loads(line) for line in f]
  evals = [
    (r["step"], r[metrics.SCORE_SUM])
    for r in records
    if r["split"] == "validation"
  ]
  best_step, best, expected_stop = None, -np.inf, None
  for step, score in evals:
    if score > best:
      best_step, best = step, score
    elif expected_stop is None:
      expected_stop = step
  assert expected_stop is not None, f"every evaluation improved: {evals}"
  assert results["stopped_early_at"] == expected_stop == evals[-1][0]
  assert results["best_step"] == best_step < expected_stop < 12
  assert max(r["step"] for r in records if r["split"] == "train") == (
    expected_stop
  )
  again = trainer.train_and_evaluate(config, workdir)
  assert again["stopped_early_at"] == expected_stop
  assert again["validation"] == results["validation"]


def test_recipe_options_are_checked(make_config, tmp_path):
  for override, field in (
    ({"loss.smooth_average": "median"}, "config.loss.smooth_average='median'"),
    ({"best_metric": "f1@33"}, "config.best_metric='f1@33'"),
    ({"early_stopping_patience": -1}, "early_stopping_patience"),
  ):
    with pytest.raises(
      ValueError, match=field.replace(".", r"\.").replace("@", "@")
    ):
      trainer.train_and_evaluate(make_config(**override), str(tmp_path / "bad"))


def test_recipe_trains_with_background_ignored(make_config, tmp_path):
  config = make_config(
    num_epochs=1,
    early_stopping_patience=0,
    best_metric="f1_edit_mof_sum",
    background_policy="drop_background_frames_and_segments",
    **{
      "data.windows": "consecutive",
      "data.batch_size": 1,
      "data.eval_batch_size": 1,
      "loss.ignore_background": True,
      "loss.smooth_average": "reference",
    },
  )
  results = trainer.train_and_evaluate(config, str(tmp_path / "paper"))
  validation = results["validation"]
  assert validation["background_policy"] == (
    "drop_background_frames_and_segments"
  )
  assert results["total_steps"] >= 8  # >= one window per tiny recording
  assert np.isfinite(validation[metrics.SCORE_SUM])


def test_paper_configs_set_the_published_recipe_for_every_method():
  for module in (assembly101_paper_benchmark, synthetic_paper_benchmark):
    bench = module.get_config()
    for method in bench.methods:
      config, _ = study.method_config(bench, method, 0)
      assert config.data.windows == "consecutive"
      assert config.data.batch_size == 1
      assert config.loss.ignore_background
      assert config.loss.smooth_average == "reference"
      assert config.model.bn_unbiased_var
      assert config.best_metric == "f1_edit_mof_sum"
      assert config.data.eval_split == "validation"
      assert config.background_policy == ("drop_background_frames_and_segments")
      assert tuple(config.loss.distill_heads) == ("y5", "y4", "y3", "y2")
  paper = assembly101_paper_benchmark.get_config()
  config, _ = study.method_config(paper, "distill_model", 0)
  assert (config.data.chunk_size, config.data.max_frames) == (1, 600)
  assert (config.optim.learning_rate, config.optim.weight_decay) == (1e-5, 1e-4)
  assert (config.num_epochs, config.early_stopping_patience) == (100, 50)
