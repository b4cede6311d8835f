#!/usr/bin/env bash
# Cloud TPU VM pod slice: create it, install this repository on every worker,
# build a dataset into a bucket, and run one training command on all workers.
# Run from the repository root; see launch/README.md and --help.
set -euo pipefail

# shellcheck source=launch/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<'USAGE'
Usage: launch/tpu_pod.sh [options] COMMAND [-- TRAIN_ARGS...]

Commands:
  create      create the TPU VM slice
  install     copy the committed repository (git archive HEAD) to every
              worker, pip install it with jax[tpu], mount the bucket
  build-data  on worker 0: tfds build the dataset into gs://BUCKET/tensorflow_datasets
  train       run the same `python -m exo2ego_jax.train` on every worker
              (EXO2EGO_DISTRIBUTED=1: each joins the run, see
              exo2ego_jax/runtime/distributed.py); TRAIN_ARGS go to the trainer
  delete      delete the slice

Options (environment variable, default):
  --name NAME           TPU VM name (TPU_NAME, required)
  --zone ZONE           (TPU_ZONE, us-central2-b)
  --project PROJECT     (GCP_PROJECT, gcloud's configured project)
  --accelerator TYPE    (TPU_ACCELERATOR, v4-32)
  --version VERSION     TPU VM software version (TPU_VERSION, tpu-ubuntu2204-base)
  --spot                create spot (preemptible) capacity (TPU_SPOT=1)
  --bucket gs://BUCKET  data and runs (GCS_BUCKET; required by install,
                        build-data, train). Workers mount it with gcsfuse
                        at MOUNT_DIR, so every process sees one workdir.
  --mount-dir DIR       (MOUNT_DIR, /mnt/gcs)
  --dataset NAME        folder in tfds_builders/ (DATASET, synthetic_sync)
  --builder-config C    TFDS builder config to build (BUILDER_CONFIG, all)
  --manual-dir DIR      downloaded files on worker 0 (MANUAL_DIR)
  --config FILE         training config (CONFIG, configs/default.py)
  --run-name NAME       workdir MOUNT_DIR/runs/NAME (RUN_NAME, config's stem)
  --remote-dir DIR      checkout on the workers (REMOTE_DIR, exo2ego-jax)
  --dry-run             print the commands instead of running them (DRY_RUN=1)
  -h, --help            this help

Example:
  launch/tpu_pod.sh --name tas --bucket gs://my-bucket --dry-run train -- \
      --config.data.batch_size=16
USAGE
}

NAME="${TPU_NAME:-}"
ZONE="${TPU_ZONE:-us-central2-b}"
PROJECT="${GCP_PROJECT:-}"
ACCELERATOR="${TPU_ACCELERATOR:-v4-32}"
VERSION="${TPU_VERSION:-tpu-ubuntu2204-base}"
SPOT="${TPU_SPOT:-0}"
BUCKET="${GCS_BUCKET:-}"
MOUNT_DIR="${MOUNT_DIR:-/mnt/gcs}"
DATASET="${DATASET:-synthetic_sync}"
BUILDER_CONFIG="${BUILDER_CONFIG:-}"
MANUAL_DIR="${MANUAL_DIR:-}"
CONFIG="${CONFIG:-configs/default.py}"
RUN_NAME="${RUN_NAME:-}"
REMOTE_DIR="${REMOTE_DIR:-exo2ego-jax}"
COMMAND=""
TRAIN_ARGS=()

while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --dry-run) DRY_RUN=1; shift ;;
    --spot) SPOT=1; shift ;;
    --name) need_value "$@"; NAME="$2"; shift 2 ;;
    --zone) need_value "$@"; ZONE="$2"; shift 2 ;;
    --project) need_value "$@"; PROJECT="$2"; shift 2 ;;
    --accelerator) need_value "$@"; ACCELERATOR="$2"; shift 2 ;;
    --version) need_value "$@"; VERSION="$2"; shift 2 ;;
    --bucket) need_value "$@"; BUCKET="$2"; shift 2 ;;
    --mount-dir) need_value "$@"; MOUNT_DIR="$2"; shift 2 ;;
    --dataset) need_value "$@"; DATASET="$2"; shift 2 ;;
    --builder-config) need_value "$@"; BUILDER_CONFIG="$2"; shift 2 ;;
    --manual-dir) need_value "$@"; MANUAL_DIR="$2"; shift 2 ;;
    --config) need_value "$@"; CONFIG="$2"; shift 2 ;;
    --run-name) need_value "$@"; RUN_NAME="$2"; shift 2 ;;
    --remote-dir) need_value "$@"; REMOTE_DIR="$2"; shift 2 ;;
    --) shift; TRAIN_ARGS=("$@"); break ;;
    -*) usage_error "unknown option $1" ;;
    *)
      [[ -z "$COMMAND" ]] || usage_error "one command only, got $COMMAND and $1"
      COMMAND="$1"; shift ;;
  esac
done

case "$COMMAND" in
  create|install|build-data|train|delete) ;;
  "") usage_error "missing COMMAND (create, install, build-data, train, delete)" ;;
  *) usage_error "unknown command $COMMAND" ;;
esac
[[ -n "$NAME" ]] || usage_error "--name (or TPU_NAME) is required"
if [[ "$COMMAND" =~ ^(install|build-data|train)$ ]]; then
  [[ -n "$BUCKET" ]] || usage_error "--bucket (or GCS_BUCKET) is required for $COMMAND"
fi
if [[ ${#TRAIN_ARGS[@]} -gt 0 && "$COMMAND" != train ]]; then
  usage_error "arguments after -- are for the train command only"
fi
BUCKET_NAME="${BUCKET#gs://}"
BUCKET_NAME="${BUCKET_NAME%/}"
RUN_NAME="${RUN_NAME:-$(basename "$CONFIG" .py)}"

GCLOUD_TPU=(gcloud compute tpus tpu-vm)
WHERE=("--zone=$ZONE")
[[ -z "$PROJECT" ]] || WHERE+=("--project=$PROJECT")
ARCHIVE="/tmp/exo2ego-jax.tar.gz"
MOUNT="mountpoint -q $(quote "$MOUNT_DIR") || gcsfuse --implicit-dirs $(quote "$BUCKET_NAME") $(quote "$MOUNT_DIR")"

# Runs one shell command line on the given workers ("all" or an index).
on_workers() {
  run "${GCLOUD_TPU[@]}" ssh "$NAME" "${WHERE[@]}" "--worker=$1" "--command=$2"
}

case "$COMMAND" in
  create)
    args=("${GCLOUD_TPU[@]}" create "$NAME" "${WHERE[@]}"
          "--accelerator-type=$ACCELERATOR" "--version=$VERSION")
    [[ "$SPOT" != 1 ]] || args+=(--spot)
    run "${args[@]}"
    ;;
  install)
    # Expands on the worker, not here.
    # shellcheck disable=SC2016
    gcsfuse_apt='curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | sudo tee /usr/share/keyrings/cloud.google.asc >/dev/null && echo "deb [signed-by=/usr/share/keyrings/cloud.google.asc] https://packages.cloud.google.com/apt gcsfuse-$(lsb_release -cs) main" | sudo tee /etc/apt/sources.list.d/gcsfuse.list >/dev/null && sudo apt-get update -q && sudo apt-get install -y -q gcsfuse'
    dir="$(quote "$REMOTE_DIR")"
    run git archive --format=tar.gz "--output=$ARCHIVE" HEAD
    run "${GCLOUD_TPU[@]}" scp "$ARCHIVE" "$NAME:exo2ego-jax.tar.gz" "${WHERE[@]}" --worker=all
    on_workers all "set -e; mkdir -p $dir && tar -xzf exo2ego-jax.tar.gz -C $dir && cd $dir && python3 -m venv .venv && .venv/bin/pip install -q -U pip && .venv/bin/pip install -q -e . 'jax[tpu]' && (command -v gcsfuse >/dev/null || ($gcsfuse_apt)) && sudo mkdir -p $(quote "$MOUNT_DIR") && sudo chmod a+rwx $(quote "$MOUNT_DIR") && ($MOUNT)"
    ;;
  build-data)
    build=(.venv/bin/tfds build "tfds_builders/$DATASET" --file_format=array_record
           "--data_dir=gs://$BUCKET_NAME/tensorflow_datasets")
    [[ -z "$BUILDER_CONFIG" ]] || build+=("--config=$BUILDER_CONFIG")
    [[ -z "$MANUAL_DIR" ]] || build+=("--manual_dir=$MANUAL_DIR")
    on_workers 0 "set -e; cd $(quote "$REMOTE_DIR") && .venv/bin/pip install -q -e '.[build]' && $(print_command "${build[@]}")"
    ;;
  train)
    train=(.venv/bin/python -m exo2ego_jax.train --config "$CONFIG"
           --workdir "$MOUNT_DIR/runs/$RUN_NAME"
           "--config.dataset.data_dir=$MOUNT_DIR/tensorflow_datasets"
           "${TRAIN_ARGS[@]}")
    on_workers all "set -e; cd $(quote "$REMOTE_DIR") && ($MOUNT) && EXO2EGO_DISTRIBUTED=1 $(print_command "${train[@]}")"
    ;;
  delete)
    run "${GCLOUD_TPU[@]}" delete "$NAME" "${WHERE[@]}" --quiet
    ;;
esac
