#!/usr/bin/env bash
# Crash test of checkpoints (ctest ckpt.crash, label mpi): a real 2-rank
# `shardlm train` of a 21M-parameter model (~125 MB of checkpoint per rank, so
# that a save takes long enough to be hit) saves every 2 steps (async, as users
# run it); as soon as a save starts (its step-N.tmp/ appears) a random delay
# later one rank, chosen at random, gets SIGKILL. After each of TRIALS crashes:
#   - no step-N/ directory is half-written: every committed one verifies
#     (`shardlm ckpt verify`: files, sizes, xxh3 checksums);
#   - `latest` names a committed checkpoint;
#   - a resume from it runs (`--resume latest`) and starts at its step.
#   tests/ckpt/crash_test.sh path/to/shardlm FIXTURE_DIR [TRIALS]
set -euo pipefail
SHARDLM=$(realpath "$1")
FIXTURE=$(realpath "$2")
TRIALS=${3:-4}
MPIEXEC=${MPIEXEC:-mpiexec}
fail() { echo "FAIL: $*" >&2; exit 1; }
[ -f "$FIXTURE/data/manifest.json" ] || fail "no prepared fixture in $FIXTURE (tests/runtime/make_fixture.sh)"

tmp=$(mktemp -d /tmp/shardlm-crash.XXXXXX)
cleanup() {
  pkill -9 -f "$tmp/" 2>/dev/null || true  # a run left by a failed trial
  rm -rf "$tmp"
}
trap cleanup EXIT

cat > "$tmp/crash.toml" <<EOF
[train]
run_dir = "$tmp/run"
seed = 7
steps = 100000
[model]
vocab_size = 4096
context_length = 64
n_layer = 6
n_head = 8
d_model = 512
[data]
path = "$FIXTURE/data"
batch_size = 2
seq_len = 64
[validation]
every = 0
batches = 1
[parallel]
zero_stage = 1
[ckpt]
every = 2
async = true
keep_last = 3
keep_best = 0
[monitor]
jsonl = false
[log]
level = "warn"
EOF

mpi=("$MPIEXEC" -n 2 --oversubscribe --bind-to none)
rank_pid() {  # the PID of `shardlm train` rank $1, or nothing
  for p in $(pgrep -f "$SHARDLM train --config $tmp/crash.toml" || true); do
    if tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$1"; then
      echo "$p"
      return
    fi
  done
}
# Every step-N/ (not step-N.tmp/ being written, not step-N.deleting/ being pruned).
committed() { find "$tmp/run/checkpoints" -maxdepth 1 -name 'step-*' ! -name '*.*' -type d 2>/dev/null | sort; }

RANDOM=$$
in_flight=0  # kills that found a step-N.tmp/ being written
for trial in $(seq 1 "$TRIALS"); do
  before=$(cat "$tmp/run/checkpoints/latest" 2>/dev/null || echo none)
  resume=()
  [ "$before" = none ] || resume=(--resume latest)
  OMP_NUM_THREADS=1 "${mpi[@]}" "$SHARDLM" train --config "$tmp/crash.toml" "${resume[@]}" \
    > "$tmp/train-$trial.log" 2>&1 &
  launcher=$!
  # Wait for a save that starts after this run has committed one of its own.
  deadline=$((SECONDS + 120))
  while :; do
    [ $SECONDS -lt $deadline ] || fail "trial $trial: no save started within 120 s; log: $(tail -5 "$tmp/train-$trial.log")"
    kill -0 "$launcher" 2>/dev/null || fail "trial $trial: the run ended early: $(tail -20 "$tmp/train-$trial.log")"
    if [ "$(cat "$tmp/run/checkpoints/latest" 2>/dev/null || echo none)" != "$before" ] && compgen -G "$tmp/run/checkpoints/step-*.tmp" > /dev/null; then
      break
    fi
    sleep 0.01
  done
  delay_ms=$((trial == 1 ? 0 : RANDOM % 150))  # the first kill lands at once
  victim=$((RANDOM % 2))
  sleep "0.$(printf '%03d' $delay_ms)"
  pid=$(rank_pid $victim)
  [ -n "$pid" ] || fail "trial $trial: rank $victim not found"
  tmps=$( (compgen -G "$tmp/run/checkpoints/step-*.tmp" || true) | xargs -r -n1 basename | tr '\n' ' ')
  kill -9 "$pid"
  wait "$launcher" && fail "trial $trial: mpiexec exited 0 after a rank was killed" || true
  [ -z "$tmps" ] || in_flight=$((in_flight + 1))
  echo "trial $trial: killed rank $victim ${delay_ms} ms after a save began (in flight: ${tmps:-none}); committed: $(committed | xargs -r -n1 basename | tr '\n' ' ')"

  # Every committed checkpoint verifies; latest names one of them.
  [ "$(committed | wc -l)" -ge 1 ] || fail "trial $trial: no committed checkpoint"
  for d in $(committed); do
    "$SHARDLM" ckpt verify "$d" > "$tmp/verify.log" 2>&1 ||
      fail "trial $trial: $(basename "$d") does not verify: $(cat "$tmp/verify.log")"
  done
  latest=$(cat "$tmp/run/checkpoints/latest")
  [ -d "$tmp/run/checkpoints/$(basename "$latest")" ] || fail "trial $trial: latest names '$latest', which is not committed"
  step=$((10#$(basename "$latest" | sed 's/^step-//')))

  # It resumes: a short run from latest starts at its step and finishes.
  OMP_NUM_THREADS=1 "${mpi[@]}" "$SHARDLM" train --config "$tmp/crash.toml" --resume latest \
    --train.steps=$((step + 2)) --ckpt.save_final=false --log.level=info > "$tmp/resume-$trial.log" 2>&1 ||
    fail "trial $trial: the resume from step $step failed: $(tail -20 "$tmp/resume-$trial.log")"
  grep -q "resumed from .* at step $step " "$tmp/resume-$trial.log" ||
    fail "trial $trial: the resume did not start from step $step: $(grep -m3 resumed "$tmp/resume-$trial.log")"
  echo "trial $trial: step-$step verified and resumed"
done
[ "$in_flight" -ge 1 ] || fail "no kill landed while a save was being written (saves too fast to hit?)"
echo "ok: $TRIALS crashes during saves ($in_flight with a save in flight), every committed checkpoint verified and resumed"
