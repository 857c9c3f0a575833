#!/usr/bin/env bash
# Stands in for `shardlm train` in the SLURM test until the trainer saves
# checkpoints: same arguments (train --config FILE --train.run_dir=DIR
# [--resume latest]), same protocol. Every rank runs `steps` steps (from
# [train] steps in the config) of a deterministic "loss" whose state carries
# from step to step; SIGUSR1/SIGTERM finish the current step, save that state
# as run_dir/checkpoints/step-NNNNNN/rank-R (rank 0 points `latest` at it),
# and exit 75. --resume latest continues from there; rank 0 appends "step loss"
# to run_dir/losses.txt and "start STEP" to run_dir/starts.txt.
set -euo pipefail
[ "${1:-}" = train ] || { echo "standin: expected 'train', got '${1:-}'" >&2; exit 2; }
shift
config='' run_dir='' resume=''
while [ $# -gt 0 ]; do
  case "$1" in
    --config) config=$2; shift ;;
    --train.run_dir=*) run_dir=${1#*=} ;;
    --resume) resume=$2; shift ;;
    *) echo "standin: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
steps=$(sed -n 's/^ *steps *= *\([0-9]*\).*/\1/p' "$config" | head -1)
delay=$(sed -n 's/^ *standin_step_seconds *= *\([0-9.]*\).*/\1/p' "$config" | head -1)
rank=${PMIX_RANK:-${OMPI_COMM_WORLD_RANK:-${SLURM_PROCID:-0}}}
mkdir -p "$run_dir/checkpoints"

stop=''
trap 'stop=1' USR1 TERM

step=0 state=12345
if [ -n "$resume" ]; then
  [ "$resume" = latest ] || { echo "standin: --resume $resume unsupported" >&2; exit 2; }
  # Ranks are not in lock-step here (the real trainer agrees on the stop step):
  # rank 0's state, the one whose losses are logged, is everyone's.
  read -r step state < "$run_dir/checkpoints/latest/rank-0"
fi
[ "$rank" -ne 0 ] || echo "start $step" >> "$run_dir/starts.txt"

# No command substitution below: bash 5.2 can garble a trap that fires while
# it parses one ("trap: unexpected EOF while looking for matching `)'").
while [ "$step" -lt "$steps" ]; do
  sleep "${delay:-0.3}" & wait $! || true   # the "compute" of one step; a signal ends only the wait
  state=$(( (state * 1103515245 + 12345) % 2147483648 ))
  step=$((step + 1))
  [ "$rank" -ne 0 ] || printf '%d 0.%09d\n' "$step" $((state * 1000000000 / 2147483648)) >> "$run_dir/losses.txt"
  if [ -n "$stop" ]; then
    printf -v dir '%s/checkpoints/step-%06d' "$run_dir" "$step"
    mkdir -p "$dir"
    echo "$step $state" > "$dir/rank-$rank"
    [ "$rank" -ne 0 ] || ln -sfn "${dir##*/}" "$run_dir/checkpoints/latest"
    exit 75
  fi
done
exit 0
