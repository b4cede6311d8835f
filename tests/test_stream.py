"""The live command: python -m exo2ego_jax.stream on a causal student's run
(labels per frame, label changes, latency line; error lines), and the
online scores of a split."""

import io
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import tiny_config

from configs import synthetic_causal_exo
from exo2ego_jax import stream
from exo2ego_jax.models import online
from exo2ego_jax.training import trainer


@pytest.fixture(scope="module")
def live_run(tmp_path_factory, tiny_data_dir):
  """A causal ego oracle trained for 2 steps on synthetic_sync/tiny."""
  config = synthetic_causal_exo.causal_model(
    tiny_config(tiny_data_dir, "ego_oracle")
  )
  config.num_epochs = 1
  config.eval_every_epochs = 1
  config.model.receptive_field = 8
  config.model.features = 16
  workdir = str(tmp_path_factory.mktemp("live"))
  trainer.train_and_evaluate(config, workdir)
  return workdir


def test_stream_prints_changes_and_labels_every_frame(live_run):
  segmenter = online.OnlineSegmenter.from_workdir(live_run)
  rng = np.random.default_rng(1)
  frames = rng.normal(size=(41, segmenter.feature_dim)).astype(np.float32)
  names = [f"c{k}" for k in range(segmenter.num_classes)]
  out = io.StringIO()
  labels, seconds = stream.stream(
    segmenter, frames, online.Smoother(0.0, 1), names, out
  )
  assert len(seconds) == 10  # 41 frames: 10 whole chunks of 4
  assert list(labels[:3]) == [-1, -1, -1]  # before the first step
  whole = online.RecordingForward(segmenter).step_probs(frames)
  want = online.live_frames(whole.argmax(-1), 4, 41)
  # Frame 40 starts a chunk that never finishes: it still shows step 9.
  np.testing.assert_array_equal(labels[3:40], want[3:40])
  assert labels[40] == want[39]
  changes = [i for i in range(4, 41) if labels[i] != labels[i - 1]]
  printed = out.getvalue().splitlines()
  assert [int(line.split(":")[0].split()[1]) for line in printed] == (
    [3] + changes
  )
  assert printed[0].startswith(f"frame 3: {names[labels[3]]} (p=")
  assert "p99" in stream.latency_line(seconds, 4)


def test_no_smoothing_is_the_live_stream_and_a_margin_changes_it(live_run):
  segmenter = online.OnlineSegmenter.from_workdir(live_run)
  outputs, background = stream.split_outputs(segmenter, "test", "ego")
  chunk = segmenter.chunk_size
  scores = stream.score_outputs(outputs, background, chunk, 0.0, 1)
  assert set(scores) == {"steps", "live", "live_smoothed"}
  assert scores["live"] == scores["live_smoothed"]
  assert 0 <= scores["steps"]["mof"] <= 100
  assert stream.score_split(segmenter, "test", "ego", 0.0, 1) == scores
  # A margin no class can win by: each recording shows its first label.
  held = stream.score_outputs(outputs, background, chunk, 0.99, 1)[
    "live_smoothed"
  ]
  firsts = stream.score_outputs(
    [(v, np.broadcast_to(p[:1], p.shape), t, n) for v, p, t, n in outputs],
    background,
    chunk,
    0.0,
    1,
  )["live"]
  assert held == firsts


def test_command_writes_a_label_per_frame(live_run, tmp_path):
  segmenter = online.OnlineSegmenter.from_workdir(live_run)
  features = tmp_path / "features.npy"
  np.save(features, np.zeros((30, segmenter.feature_dim), np.float32))
  output = tmp_path / "labels.txt"
  done = subprocess.run(
    [
      sys.executable,
      "-m",
      "exo2ego_jax.stream",
      f"--workdir={live_run}",
      f"--features={features}",
      f"--output={output}",
    ],
    capture_output=True,
    text=True,
    env=dict(os.environ, JAX_PLATFORMS="cpu"),
  )
  assert done.returncode == 0, done.stderr
  lines = output.read_text().splitlines()
  assert len(lines) == 30 and lines[:3] == ["-"] * 3
  assert set(lines[3:]) <= set(stream.class_names(segmenter.config, 0))
  assert done.stdout.splitlines()[-1].startswith(
    "latency per step (4 frames): p50 "
  )


def test_bad_features_are_refused_in_one_line(tmp_path):
  bad = tmp_path / "bad.npy"
  np.save(bad, np.zeros((30, 17), np.float32))
  with pytest.raises(ValueError) as e:
    stream.load_features(str(bad), 16)
  assert str(e.value) == (
    f"--features {bad} holds an array of shape (30, 17); this run needs (T, 16)"
  )
  with pytest.raises(ValueError, match="cannot read --features"):
    stream.load_features(str(tmp_path / "missing.npy"), 16)
