#!/usr/bin/env bash
# Multi-node GPU training under SLURM: submits launch/slurm_job.sh with
# sbatch, one task (JAX process) per node driving all of the node's GPUs.
# Run from the repository root, on the cluster's login node; see --help.
set -euo pipefail

# shellcheck source=launch/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<'USAGE'
Usage: launch/slurm_gpu.sh [options] --config FILE --workdir DIR [-- TRAIN_ARGS...]

Submits `python -m exo2ego_jax.train --config FILE --workdir DIR TRAIN_ARGS`
as one SLURM job over NODES nodes. WORKDIR (and the dataset) must be on a
file system every node sees.

Options (environment variable, default):
  --config FILE         training config (CONFIG, required)
  --workdir DIR         run directory on a shared file system (WORKDIR, required)
  --data-dir DIR        TFDS data_dir of the built dataset (DATA_DIR, the config's)
  --nodes N             (NODES, 2)
  --gpus-per-node G     (GPUS_PER_NODE, 8)
  --cpus-per-node C     (CPUS_PER_NODE, 32)
  --time HH:MM:SS       (TIME_LIMIT, 24:00:00)
  --partition P         (PARTITION, the cluster's default)
  --account A           (ACCOUNT, the user's default)
  --job-name NAME       (JOB_NAME, exo2ego)
  --port PORT           coordinator port on the first node (COORDINATOR_PORT, 12355)
  --venv DIR            virtual environment to activate (VENV, .venv)
  --dry-run             print the commands instead of running them (DRY_RUN=1)
  -h, --help            this help

Example:
  launch/slurm_gpu.sh --nodes 2 --config configs/default.py \
      --workdir /shared/runs/teacher --dry-run -- --config.data.batch_size=16
USAGE
}

CONFIG="${CONFIG:-}"
WORKDIR="${WORKDIR:-}"
DATA_DIR="${DATA_DIR:-}"
NODES="${NODES:-2}"
GPUS_PER_NODE="${GPUS_PER_NODE:-8}"
CPUS_PER_NODE="${CPUS_PER_NODE:-32}"
TIME_LIMIT="${TIME_LIMIT:-24:00:00}"
PARTITION="${PARTITION:-}"
ACCOUNT="${ACCOUNT:-}"
JOB_NAME="${JOB_NAME:-exo2ego}"
COORDINATOR_PORT="${COORDINATOR_PORT:-12355}"
VENV="${VENV:-.venv}"
TRAIN_ARGS=()

while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --config) need_value "$@"; CONFIG="$2"; shift 2 ;;
    --workdir) need_value "$@"; WORKDIR="$2"; shift 2 ;;
    --data-dir) need_value "$@"; DATA_DIR="$2"; shift 2 ;;
    --nodes) need_value "$@"; NODES="$2"; shift 2 ;;
    --gpus-per-node) need_value "$@"; GPUS_PER_NODE="$2"; shift 2 ;;
    --cpus-per-node) need_value "$@"; CPUS_PER_NODE="$2"; shift 2 ;;
    --time) need_value "$@"; TIME_LIMIT="$2"; shift 2 ;;
    --partition) need_value "$@"; PARTITION="$2"; shift 2 ;;
    --account) need_value "$@"; ACCOUNT="$2"; shift 2 ;;
    --job-name) need_value "$@"; JOB_NAME="$2"; shift 2 ;;
    --port) need_value "$@"; COORDINATOR_PORT="$2"; shift 2 ;;
    --venv) need_value "$@"; VENV="$2"; shift 2 ;;
    --) shift; TRAIN_ARGS=("$@"); break ;;
    *) usage_error "unknown argument $1" ;;
  esac
done

[[ -n "$CONFIG" ]] || usage_error "--config (or CONFIG) is required"
[[ -n "$WORKDIR" ]] || usage_error "--workdir (or WORKDIR) is required"
for number in NODES GPUS_PER_NODE CPUS_PER_NODE COORDINATOR_PORT; do
  [[ "${!number}" =~ ^[1-9][0-9]*$ ]] || usage_error "$number must be a positive integer, got '${!number}'"
done

sbatch=(sbatch "--job-name=$JOB_NAME" "--nodes=$NODES" --ntasks-per-node=1
        "--gpus-per-node=$GPUS_PER_NODE" "--cpus-per-task=$CPUS_PER_NODE"
        "--time=$TIME_LIMIT" "--output=$WORKDIR/slurm-%j.out")
[[ -z "$PARTITION" ]] || sbatch+=("--partition=$PARTITION")
[[ -z "$ACCOUNT" ]] || sbatch+=("--account=$ACCOUNT")
train=(python -m exo2ego_jax.train --config "$CONFIG" --workdir "$WORKDIR")
[[ -z "$DATA_DIR" ]] || train+=("--config.dataset.data_dir=$DATA_DIR")

run mkdir -p "$WORKDIR"
run "${sbatch[@]}" "$(dirname "${BASH_SOURCE[0]}")/slurm_job.sh" \
    --gpus-per-node "$GPUS_PER_NODE" --port "$COORDINATOR_PORT" --venv "$VENV" \
    -- "${train[@]}" "${TRAIN_ARGS[@]}"
