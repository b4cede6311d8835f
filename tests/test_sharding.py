"""Data parallelism changes nothing but speed: one global batch gives the same
loss, BatchNorm statistics and updated parameters on 1 device, on 8 devices,
and on 2 processes (hosts) of 2 devices each; with either of the model's
convolution implementations.

XLA fixes the number of simulated CPU devices when JAX starts, and other tests
start it with one, so the devices live in subprocesses (this file, run as a
script) with XLA_FLAGS=--xla_force_host_platform_device_count=N. They train
the trainer's real `make_train_step` (with SGD, see `_setup`) for two steps on
the same global batch, once per layout, and write the losses of both steps and
the state after the first; the tests compare them.

Bit-equal float32 updates are not a property of ReLU networks: the layouts
sum the batch in different orders, and a ReLU (or max-pool) input within
rounding of zero (about one in 10^6 here) can land on either side, which
changes that frame's gradient by O(1) and a few parameters' updates by a few
%. So the forward quantities (loss, BatchNorm statistics) must agree to
float32 rounding, the update to 3% in norm and the next loss to 1% (one tie,
a ReLU input of 1.5e-6 in the distillation step on 8 devices, moved the
update by 1.8% and the next loss by 0.44%; in float64 the layouts' gradients
agree to 2e-7); a mean of per-device means instead of the global masked mean
changes the loss itself (checked with uneven masks).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

NUM_DEVICES = 8
BATCH, WINDOW, FEATURE_DIM, NUM_CLASSES = 8, 64, 8, 5
# Valid frames per window: uneven on purpose, so that averaging per-device
# means (mean of means) would give a different loss than the global mean.
VALID_FRAMES = (64, 10, 64, 33, 1, 64, 50, 20)
STEPS = 2
# "<mode>:winograd": the model with conv_impl="winograd" (same parameters),
# run on 8 devices only and compared with the XLA model on one (its compile
# is the slowest of the file; tests/test_winograd.py checks it on one).
MODES = ("exo_supervised", "distill_model", "distill_model:winograd")
XLA_MODES = MODES[:2]
# Seeds trained as members of one program (training/members.py) on 8 devices.
MEMBERS = 2


def _layouts(mode: str) -> tuple[int, ...]:
  return (NUM_DEVICES,) if mode.endswith(":winograd") else (1, NUM_DEVICES)


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env(num_devices: int, **extra) -> dict:
  env = {
    k: v
    for k, v in os.environ.items()
    if not k.startswith(("EXO2EGO_DISTRIBUTED", "JAX_COORDINATOR"))
  }
  env.update(
    JAX_PLATFORMS="cpu",
    XLA_FLAGS=" ".join(
      [
        env.get("XLA_FLAGS", ""),  # the suite's (conftest.TEST_XLA_FLAGS)
        f"--xla_force_host_platform_device_count={num_devices}",
      ]
    ).strip(),
    **extra,
  )
  return env


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
  out_dir = tmp_path_factory.mktemp("sharding")
  proc = subprocess.run(
    [sys.executable, __file__, "devices", str(out_dir)],
    env=_env(NUM_DEVICES),
    capture_output=True,
    text=True,
    cwd=REPO,
  )  # no timeout: a loaded machine is slow
  assert proc.returncode == 0, proc.stderr[-4000:]
  with open(out_dir / "facts.json") as f:
    facts = json.load(f)
  arrays = {
    (mode, devices): dict(np.load(out_dir / f"{mode}_{devices}.npz"))
    for mode in MODES
    for devices in _layouts(mode)
  }
  for k in range(MEMBERS):
    arrays["members", k] = dict(np.load(out_dir / f"members_seed{k}.npz"))
    arrays["single", k] = (  # seed 0 on the unshifted batch: exo_supervised
      arrays["exo_supervised", 1]
      if k == 0
      else dict(np.load(out_dir / f"single_seed{k}.npz"))
    )
  return {"facts": facts, "arrays": arrays}


@pytest.mark.parametrize("mode", MODES)
def test_batch_is_split_over_eight_devices_and_state_replicated(results, mode):
  facts = results["facts"][mode]
  assert facts["device_count"] == NUM_DEVICES
  assert facts["batch_devices"] == NUM_DEVICES
  # Each device holds BATCH / 8 windows of the global batch.
  assert (
    facts["batch_shard_shapes"]
    == [[BATCH // NUM_DEVICES, WINDOW, FEATURE_DIM]] * NUM_DEVICES
  )
  assert facts["params_replicated"] and facts["batch_stats_replicated"]
  assert facts["params_devices"] == NUM_DEVICES


def assert_same_run(
  one: dict, other: dict, update_tolerance: float = 3e-2
) -> None:
  """Same first loss and BatchNorm statistics (float32 rounding), the same
  update up to ReLU ties (3% in norm), and a close second-step loss."""
  np.testing.assert_allclose(other["losses"][0], one["losses"][0], rtol=1e-5)
  np.testing.assert_allclose(other["losses"][1:], one["losses"][1:], rtol=1e-2)
  assert np.all(one["losses"] > 0) and np.isfinite(one["losses"]).all()
  for key in one:
    if key.startswith("batch_stats"):
      np.testing.assert_allclose(
        other[key],
        one[key],
        rtol=0,
        atol=1e-5 * np.abs(one[key]).max(),
        err_msg=key,
      )
  keys = [k for k in one if k.startswith("params")]
  initial = [one["initial" + k[len("params") :]] for k in keys]
  update = np.concatenate([(one[k] - i).ravel() for k, i in zip(keys, initial)])
  other_update = np.concatenate(
    [(other[k] - i).ravel() for k, i in zip(keys, initial)]
  )
  assert np.abs(update).max() > 1e-3  # the step really trains
  error = np.linalg.norm(other_update - update) / np.linalg.norm(update)
  assert error < update_tolerance, f"updates differ by {error:.2%} in norm"


def test_sharding_module_builds_each_mesh_and_places_batches(results):
  """runtime/sharding.py: one `data` axis, Explicit for the temporal model
  and Auto for the backbone, and three ways to make a global batch that
  all give back the host batch, split evenly over the devices."""
  facts = results["facts"]["mesh"]
  for name, size, axis_type in (
    ("global", NUM_DEVICES, "Explicit"),
    ("backbone_local", NUM_DEVICES, "Auto"),
    ("first_two", 2, "Explicit"),
  ):
    mesh = facts[name]
    assert mesh["size"] == size
    assert mesh["axis_names"] == ["data"]
    assert mesh["axis_types"] == [f"AxisType.{axis_type}"]
    assert mesh["replicated_spec"] == []  # every device holds all of it
    assert mesh["batch_spec"] == ["data"]  # leading axis over the devices
    for key in ("from_process_rows", "from_shared_batch", "from_host_array"):
      assert mesh[key] == {
        "equal": True,
        "devices": size,
        "shard_rows": [BATCH // size],
      }, (name, key)
  assert facts["global"]["refused"] == (
    "config.data.batch_size=6 must be a multiple of the 8 devices"
  )
  assert facts["first_two"]["refused"] is None  # 6 splits over 2


@pytest.mark.parametrize("mode", XLA_MODES)
def test_eight_devices_match_one_device(results, mode):
  one = results["arrays"][mode, 1]
  eight = results["arrays"][mode, NUM_DEVICES]
  assert one.keys() == eight.keys()
  assert_same_run(one, eight)


def test_winograd_model_on_eight_devices_matches_xla_model_on_one(results):
  """conv_impl="winograd" changes how the convolutions are computed, not
  what: the same loss and statistics to float32 rounding. Its rounding
  differs from XLA's more than a layout's does, so more ReLU/max-pool ties
  land on the other side: the update differed by 0.83% in norm (a layout:
  0.002%), hence a 5% bound; tests/test_winograd.py checks the gradients
  exactly in float64."""
  assert_same_run(
    results["arrays"]["distill_model", 1],
    results["arrays"]["distill_model:winograd", NUM_DEVICES],
    update_tolerance=5e-2,
  )


@pytest.mark.parametrize("mode", XLA_MODES)
def test_loss_is_the_global_masked_mean_not_a_mean_of_device_means(
  results, mode
):
  facts = results["facts"][mode]
  one = results["arrays"][mode, 1]
  np.testing.assert_allclose(facts["first_loss"], one["losses"][0], rtol=1e-5)
  # What a per-device loss averaged over devices would have reported.
  assert abs(facts["mean_of_device_losses"] - facts["first_loss"]) > (
    1e-3 * facts["first_loss"]
  )


def test_members_on_eight_devices_match_each_seed_on_one_device(results):
  """Members and data parallelism compose (training/members.py): 2 seeds
  as one vmapped program, each member's batch split over 8 devices and the
  stacked state replicated, train as each seed does alone on one device
  (the vmapped program's own rounding: tests/test_members.py)."""
  facts = results["facts"]["members"]
  assert facts["batch_devices"] == NUM_DEVICES
  # Every device holds both members' rows of its part of the batch.
  assert facts["batch_shard_shapes"] == [
    [MEMBERS, BATCH // NUM_DEVICES, WINDOW, FEATURE_DIM]
  ]
  assert facts["state_replicated"]
  assert facts["state_devices"] == NUM_DEVICES
  first_losses = set()
  for k in range(MEMBERS):
    alone = results["arrays"]["single", k]
    assert_same_run(alone, results["arrays"]["members", k])
    first_losses.add(round(float(alone["losses"][0]), 5))
  assert len(first_losses) == MEMBERS  # each its own seed and batch


def test_two_hosts_match_one_device(results, tmp_path):
  """Two processes joined by distributed.initialize() from the environment,
  each feeding its half of the batch, as the trainer does on a pod."""
  with socket.socket() as s:
    s.bind(("localhost", 0))
    port = s.getsockname()[1]
  procs = [
    subprocess.Popen(
      [sys.executable, __file__, "host", str(tmp_path)],
      cwd=REPO,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
      env=_env(
        2,
        JAX_COORDINATOR_ADDRESS=f"localhost:{port}",
        JAX_NUM_PROCESSES="2",
        JAX_PROCESS_ID=str(i),
      ),
    )
    for i in range(2)
  ]
  # An hour: far above any slow machine, yet a hung coordinator still ends.
  outputs = [p.communicate(timeout=3600)[0] for p in procs]
  for p, out in zip(procs, outputs):
    assert p.returncode == 0, out[-4000:]
  hosts = [dict(np.load(tmp_path / f"host{i}.npz")) for i in range(2)]
  one = results["arrays"]["exo_supervised", 1]
  for host in hosts:
    # processes, devices, local devices, devices of a local mesh
    assert tuple(host["layout"]) == (2, 4, 2, 2)
    np.testing.assert_array_equal(host["shared_batch"], host["exo_batch"])
    assert_same_run(one, host)
  # Evaluation: both processes get every window's probabilities.
  np.testing.assert_array_equal(hosts[0]["probs"], hosts[1]["probs"])
  assert hosts[0]["probs"].shape == (BATCH, WINDOW, NUM_CLASSES)


# ----- The subprocesses: several simulated CPU devices (and hosts). -----


def _flat(prefix: str, tree) -> dict:
  import jax  # pylint: disable=g-import-not-at-top

  return {
    prefix + jax.tree_util.keystr(path): np.array(leaf)  # a copy
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
  }


def _setup():
  """The batch, modes, optimizer and teacher every layout trains with."""
  import jax  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from exo2ego_jax.methods import registry  # pylint: disable=g-import-not-at-top
  from exo2ego_jax.models import c2f_tcn  # pylint: disable=g-import-not-at-top

  model = c2f_tcn.C2FTCN(NUM_CLASSES)
  rng = np.random.default_rng(0)
  mask = np.arange(WINDOW)[None] < np.array(VALID_FRAMES)[:, None]
  labels = rng.integers(0, NUM_CLASSES, (BATCH, WINDOW)).astype(np.int32)
  labels[:, 5] = -100  # an ignored frame
  batch = {
    "exo": rng.normal(size=(BATCH, WINDOW, FEATURE_DIM)).astype(np.float32),
    "ego": rng.normal(size=(BATCH, WINDOW, FEATURE_DIM)).astype(np.float32),
    "labels": np.where(mask, labels, -100).astype(np.int32),
    "mask": mask.astype(np.float32),
  }
  # A teacher whose BatchNorm statistics are not the initial 0/1.
  teacher = jax.tree.map(
    np.asarray,
    model.init(jax.random.key(1), batch["exo"][:1], batch["mask"][:1]),
  )
  teacher["batch_stats"] = jax.tree.map(
    lambda a: a + rng.uniform(0.5, 1.5, a.shape).astype(a.dtype),
    teacher["batch_stats"],
  )

  def make_mode(name: str):
    name, _, conv_impl = name.partition(":")
    method = registry.get(name)
    distill = method.loads_teacher
    return method(
      model=c2f_tcn.C2FTCN(NUM_CLASSES, conv_impl=conv_impl or "xla"),
      ensemble_weights=(1.0,) * 6,
      smooth_weight=0.17,
      train_view="ego" if distill else "exo",
      label_key=None if distill else "labels",
    )

  # The trainer's weight decay, then SGD rather than Adam: Adam's first
  # update is about lr * sign(gradient), and many gradients are zero up to
  # rounding (e.g. conv biases before a BatchNorm), so their sign is noise.
  optimizer = optax.chain(optax.add_decayed_weights(1e-4), optax.sgd(0.1))
  return batch, make_mode, optimizer, teacher


def _train(
  mode, optimizer, frozen, batch, parallel, process_slice=slice(None), seed=0
):
  """Two steps as trainer.train_and_evaluate runs them, on the mesh
  `parallel` (runtime/sharding.py); (arrays, state, global batch).
  `process_slice`: this process's part of the batch."""
  import jax  # pylint: disable=g-import-not-at-top
  from exo2ego_jax.training import trainer  # pylint: disable=g-import-not-at-top

  replicated = parallel.replicated
  state = trainer.initial_state(
    mode, frozen, optimizer, FEATURE_DIM, seed, replicated
  )
  global_batch = {
    k: parallel.from_process_rows(v[process_slice]) for k, v in batch.items()
  }
  train_step = jax.jit(
    trainer.make_train_step(mode, optimizer),
    donate_argnums=0,
    out_shardings=(replicated, replicated),
  )
  arrays = _flat("initial", state["params"])
  losses = []
  for step in range(STEPS):
    state, logs = train_step(state, global_batch)
    losses.append(float(logs["loss"]))  # replicated: readable on every host
    if step == 0:
      arrays.update(_flat("params", state["params"]))
      arrays.update(_flat("batch_stats", state["batch_stats"]))
  arrays["losses"] = np.array(losses)
  return arrays, state, global_batch


def _run_devices(out_dir: str) -> None:
  import jax  # pylint: disable=g-import-not-at-top
  from exo2ego_jax.runtime import sharding  # pylint: disable=g-import-not-at-top

  assert jax.device_count() == NUM_DEVICES, jax.devices()
  batch, make_mode, optimizer, teacher = _setup()
  facts = {"mesh": _mesh_facts(batch)}
  for name in MODES:
    mode = make_mode(name)
    frozen = {"teacher": teacher} if mode.loads_teacher else {}
    for devices in _layouts(name):
      parallel = (  # the trainer's mesh (topology order) on all 8
        sharding.data_parallel()
        if devices == NUM_DEVICES
        else sharding.data_parallel(devices=jax.devices()[:devices])
      )
      arrays, state, global_batch = _train(
        mode, optimizer, frozen, batch, parallel
      )
      np.savez(os.path.join(out_dir, f"{name}_{parallel.size}.npz"), **arrays)
    params = jax.tree.leaves(state["params"])
    initial_params = [arrays[k] for k in arrays if k.startswith("initial")]
    assert len(initial_params) == len(params)
    exo = global_batch["exo"]
    facts[name] = {
      "device_count": jax.device_count(),
      "batch_devices": len(exo.sharding.device_set),
      "batch_shard_shapes": [
        list(s.data.shape) for s in exo.addressable_shards
      ],
      "params_replicated": all(p.sharding.is_fully_replicated for p in params),
      "params_devices": len(params[0].sharding.device_set),
      "batch_stats_replicated": all(
        a.sharding.is_fully_replicated
        for a in jax.tree.leaves(state["batch_stats"])
      ),
      "first_loss": float(arrays["losses"][0]),
    }
    if name not in XLA_MODES:
      continue  # the mean-of-means check is the XLA modes'
    # Each device's loss on its own windows, for the mean-of-means check.
    loss_fn = jax.jit(lambda s, b, mode=mode: mode.loss(s["params"], s, b)[0])
    init = jax.tree.map(
      np.asarray,
      jax.tree.unflatten(jax.tree.structure(state["params"]), initial_params),
    )
    start = dict(state, params=init)
    per_device = [
      float(loss_fn(start, {k: v[i : i + 1] for k, v in batch.items()}))
      for i in range(BATCH)
    ]
    facts[name]["mean_of_device_losses"] = float(np.mean(per_device))
  facts["members"] = _train_members(make_mode, optimizer, batch, out_dir)
  with open(os.path.join(out_dir, "facts.json"), "w") as f:
    json.dump(facts, f)


def _member_batch(batch: dict, k: int) -> dict:
  """Member k's batch: the windows in another order per member."""
  return {key: np.roll(v, 3 * k, axis=0) for key, v in batch.items()}


def _train_members(make_mode, optimizer, batch, out_dir: str) -> dict:
  """MEMBERS seeds of exo_supervised as one vmapped program on 8 devices
  (training/members.py's layout: state replicated with a leading member
  axis, each member's batch split over the devices), and each seed but 0
  alone on one device (seed 0 alone is the exo_supervised 1-device run);
  writes both, returns the layout's facts."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from exo2ego_jax.runtime import sharding  # pylint: disable=g-import-not-at-top
  from exo2ego_jax.training import members  # pylint: disable=g-import-not-at-top
  from exo2ego_jax.training import trainer  # pylint: disable=g-import-not-at-top

  mode = make_mode("exo_supervised")
  one = sharding.data_parallel(devices=jax.devices()[:1])
  for k in range(1, MEMBERS):  # seed 0 alone: the exo_supervised_1 run
    arrays, _, _ = _train(
      mode, optimizer, {}, _member_batch(batch, k), one, seed=k
    )
    np.savez(os.path.join(out_dir, f"single_seed{k}.npz"), **arrays)
  parallel = sharding.data_parallel(auto_axes=True)  # members.py's mesh
  replicated = parallel.replicated
  states = [
    jax.jit(
      lambda k=k: trainer.init_state(mode, {}, optimizer, FEATURE_DIM, k),
      out_shardings=replicated,
    )()
    for k in range(MEMBERS)
  ]
  state = jax.tree.map(lambda *xs: jnp.stack(xs), *states)
  rows = [_member_batch(batch, k) for k in range(MEMBERS)]
  global_batch = {
    key: parallel.from_member_rows(np.stack([r[key] for r in rows]))
    for key in batch
  }
  step = jax.jit(
    jax.vmap(trainer.make_train_step(mode, optimizer)),
    donate_argnums=0,
    out_shardings=(replicated, replicated),
  )
  arrays = [_flat("initial", s["params"]) for s in states]
  losses = []
  for i in range(STEPS):
    state, logs = step(state, global_batch)
    losses.append(np.asarray(logs["loss"]))
    if i == 0:
      for k in range(MEMBERS):
        member = members.member_state(state, k)
        arrays[k].update(_flat("params", member["params"]))
        arrays[k].update(_flat("batch_stats", member["batch_stats"]))
  for k in range(MEMBERS):
    arrays[k]["losses"] = np.array([l[k] for l in losses])
    np.savez(os.path.join(out_dir, f"members_seed{k}.npz"), **arrays[k])
  exo = global_batch["exo"]
  return {
    "batch_devices": len(exo.sharding.device_set),
    "batch_shard_shapes": sorted(
      {tuple(s.data.shape) for s in exo.addressable_shards}
    ),
    "state_replicated": all(
      a.sharding.is_fully_replicated for a in jax.tree.leaves(state)
    ),
    "state_devices": len(jax.tree.leaves(state)[0].sharding.device_set),
  }


def _mesh_facts(batch: dict) -> dict:
  """What runtime/sharding.py builds on 8 devices of one process."""
  import jax  # pylint: disable=g-import-not-at-top
  from exo2ego_jax.runtime import sharding  # pylint: disable=g-import-not-at-top

  facts = {}
  for name, parallel in (
    ("global", sharding.data_parallel()),
    ("backbone_local", sharding.data_parallel(local=True, auto_axes=True)),
    ("first_two", sharding.data_parallel(devices=jax.devices()[:2])),
  ):
    exo = batch["exo"]
    arrays = {
      "from_process_rows": parallel.from_process_rows(exo),
      "from_shared_batch": parallel.from_shared_batch(exo),
      "from_host_array": parallel.from_host_array(exo),
    }
    try:
      parallel.check_divides("config.data.batch_size", 6)
      refused = None
    except ValueError as e:
      refused = str(e)
    facts[name] = {
      "size": parallel.size,
      "axis_names": list(parallel.mesh.axis_names),
      "axis_types": [str(t) for t in parallel.mesh.axis_types],
      "replicated_spec": list(parallel.replicated.spec),
      "batch_spec": list(parallel.batch.spec),
      "refused": refused,
      **{
        key: {
          "equal": bool(np.array_equal(np.asarray(a), exo)),
          "devices": len(a.sharding.device_set),
          "shard_rows": sorted({s.data.shape[0] for s in a.addressable_shards}),
        }
        for key, a in arrays.items()
      },
    }
  return facts


def _run_host(out_dir: str) -> None:
  """One of two processes; the environment makes it join the other."""
  from exo2ego_jax.runtime import distributed  # pylint: disable=g-import-not-at-top

  assert distributed.initialize()
  import jax  # pylint: disable=g-import-not-at-top
  from exo2ego_jax.runtime import sharding  # pylint: disable=g-import-not-at-top
  from exo2ego_jax.training import trainer  # pylint: disable=g-import-not-at-top

  batch, make_mode, optimizer, _ = _setup()
  mode = make_mode("exo_supervised")
  parallel = sharding.data_parallel()
  per_process = BATCH // jax.process_count()
  start = jax.process_index() * per_process
  arrays, state, _ = _train(
    mode, optimizer, {}, batch, parallel, slice(start, start + per_process)
  )
  arrays["layout"] = np.array(
    [
      jax.process_count(),
      jax.device_count(),
      jax.local_device_count(),
      sharding.data_parallel(local=True).size,
    ]
  )
  predict_fn = trainer.make_predict_fn(mode, state, parallel)
  arrays["probs"] = predict_fn(batch["exo"], batch["mask"])
  # Every process holds the whole batch and passes it: the global array is
  # that batch (each process contributed its own rows), read back whole.
  gather = jax.jit(lambda x: x, out_shardings=parallel.replicated)
  arrays["shared_batch"] = np.asarray(
    gather(parallel.from_shared_batch(batch["exo"]))
  )
  arrays["exo_batch"] = batch["exo"]
  np.savez(os.path.join(out_dir, f"host{jax.process_index()}.npz"), **arrays)


if __name__ == "__main__":
  sys.path.insert(0, REPO)
  {"devices": _run_devices, "host": _run_host}[sys.argv[1]](sys.argv[2])
