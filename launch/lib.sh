# shellcheck shell=bash
# Shared by the launch scripts (sourced, not run): dry-run aware execution.
#
# DRY_RUN=1 makes `run` print each command, one shell-quoted line per
# command, instead of running it, so a launch can be reviewed (and tested)
# without a cloud account or a cluster.

DRY_RUN="${DRY_RUN:-0}"

# Prints one argument so that a shell reads it back unchanged.
quote() {
  if [[ "$1" =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then
    printf '%s' "$1"
  else
    printf "'%s'" "${1//\'/\'\\\'\'}"
  fi
}

# Prints a command line, its arguments quoted.
print_command() {
  local sep=""
  for arg in "$@"; do
    printf '%s' "$sep"
    quote "$arg"
    sep=" "
  done
  printf '\n'
}

# Runs a command, or only prints it under DRY_RUN=1.
run() {
  if [[ "$DRY_RUN" == 1 ]]; then
    print_command "$@"
  else
    echo "+ $(print_command "$@")" >&2
    "$@"
  fi
}

# Reports a usage error (exit status 2), pointing at --help.
usage_error() {
  echo "$(basename "$0"): $1" >&2
  echo "Run '$(basename "$0") --help' for usage." >&2
  exit 2
}

# Usage error unless option $1 is followed by a value ($2).
need_value() {
  if [[ $# -lt 2 || -z "$2" || "$2" == --* ]]; then
    usage_error "option $1 needs a value"
  fi
}
