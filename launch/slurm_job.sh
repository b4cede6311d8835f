#!/usr/bin/env bash
# The body of a SLURM job (sbatch runs it on the first node; see
# launch/slurm_gpu.sh): points every node's JAX process at the coordinator,
# then starts COMMAND once per node with srun.
#
# Each process gets JAX_COORDINATOR_ADDRESS (first node:PORT),
# JAX_NUM_PROCESSES (nodes), JAX_PROCESS_ID (its SLURM_PROCID) and
# JAX_LOCAL_DEVICE_IDS (all GPUs of its node); exo2ego_jax.runtime.distributed reads
# them and calls jax.distributed.initialize.
set -euo pipefail

# sbatch runs a copy of this file from its spool directory: find lib.sh in
# the submit directory (the repository root) then.
launch_dir="$(dirname "${BASH_SOURCE[0]}")"
[[ -f "$launch_dir/lib.sh" ]] || launch_dir="${SLURM_SUBMIT_DIR:-.}/launch"
# shellcheck source=launch/lib.sh
source "$launch_dir/lib.sh"

usage() {
  cat <<'USAGE'
Usage: launch/slurm_job.sh [options] -- COMMAND...   (inside a SLURM allocation)

Options:
  --gpus-per-node G   GPUs each process drives (GPUS_PER_NODE, 8)
  --port PORT         coordinator port on the first node (COORDINATOR_PORT, 12355)
  --venv DIR          virtual environment to activate (VENV, .venv)
  --dry-run           print the commands instead of running them (DRY_RUN=1)
  -h, --help          this help
USAGE
}

GPUS_PER_NODE="${GPUS_PER_NODE:-8}"
COORDINATOR_PORT="${COORDINATOR_PORT:-12355}"
VENV="${VENV:-.venv}"
COMMAND=()

while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --gpus-per-node) need_value "$@"; GPUS_PER_NODE="$2"; shift 2 ;;
    --port) need_value "$@"; COORDINATOR_PORT="$2"; shift 2 ;;
    --venv) need_value "$@"; VENV="$2"; shift 2 ;;
    --) shift; COMMAND=("$@"); break ;;
    *) usage_error "unknown argument $1" ;;
  esac
done

[[ ${#COMMAND[@]} -gt 0 ]] || usage_error "missing -- COMMAND"
[[ -n "${SLURM_JOB_NODELIST:-}" && -n "${SLURM_NNODES:-}" ]] ||
  usage_error "not inside a SLURM allocation (SLURM_JOB_NODELIST, SLURM_NNODES unset): submit with launch/slurm_gpu.sh"
[[ "$GPUS_PER_NODE" =~ ^[1-9][0-9]*$ ]] || usage_error "--gpus-per-node must be a positive integer"

hosts="$(scontrol show hostnames "$SLURM_JOB_NODELIST")"
coordinator="${hosts%%$'\n'*}"
export JAX_COORDINATOR_ADDRESS="$coordinator:$COORDINATOR_PORT"
export JAX_NUM_PROCESSES="$SLURM_NNODES"
JAX_LOCAL_DEVICE_IDS="$(seq -s, 0 $((GPUS_PER_NODE - 1)))"
export JAX_LOCAL_DEVICE_IDS
if [[ "$DRY_RUN" == 1 ]]; then
  print_command export "JAX_COORDINATOR_ADDRESS=$JAX_COORDINATOR_ADDRESS" \
      "JAX_NUM_PROCESSES=$JAX_NUM_PROCESSES" \
      "JAX_LOCAL_DEVICE_IDS=$JAX_LOCAL_DEVICE_IDS"
fi
if [[ -f "$VENV/bin/activate" ]]; then
  # shellcheck source=/dev/null
  source "$VENV/bin/activate"
fi

# JAX_PROCESS_ID differs per task, so each task sets it from its own
# SLURM_PROCID: the single quotes keep it for the task's shell.
# shellcheck disable=SC2016
run srun --ntasks-per-node=1 "--nodes=$SLURM_NNODES" --kill-on-bad-exit=1 \
    bash -c 'export JAX_PROCESS_ID="$SLURM_PROCID"; exec "$@"' bash \
    "${COMMAND[@]}"
