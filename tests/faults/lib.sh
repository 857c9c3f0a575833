# Shared by the fault-injection tests (tests/faults/*.sh): a scratch directory
# removed on exit, jobs started in their own process group (killed on exit, by
# group id), a small training config on the runtime fixture, and helpers to
# find a rank's PID and to wait.
set -euo pipefail
fail() { echo "FAIL: $*" >&2; exit 1; }
MPIEXEC=${MPIEXEC:-mpiexec}
TMP=$(mktemp -d /tmp/shardlm-fault.XXXXXX)
GROUPS_STARTED=()
cleanup() {
  for g in "${GROUPS_STARTED[@]}"; do kill -9 -- "-$g" 2>/dev/null || true; done
  rm -rf "$TMP"
}
trap cleanup EXIT

# start_job LOG COMMAND...: runs COMMAND in the background in a new session
# (its process group id is its PID), output to LOG; sets JOB to that PID.
start_job() {
  local log=$1; shift
  setsid "$@" > "$log" 2>&1 &
  JOB=$!
  GROUPS_STARTED+=("$JOB")
}

# now: seconds since the epoch, with milliseconds
now() { date +%s.%N | cut -c1-14; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
lt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a < b) }'; }

# write_train_config FILE RUN_DIR FIXTURE [extra TOML lines...]: a 2-block model
# that steps in milliseconds, metrics to RUN_DIR/metrics/rank-N.jsonl.
write_train_config() {
  local file=$1 run=$2 fixture=$3; shift 3
  cat > "$file" <<TOML
[train]
run_dir = "$run"
seed = 3
steps = 100000
[model]
vocab_size = 4096
context_length = 32
n_layer = 2
n_head = 2
d_model = 64
[data]
path = "$fixture/data"
batch_size = 2
seq_len = 32
[validation]
every = 0
batches = 1
[monitor]
jsonl = true
stdout = false
[log]
level = "info"
TOML
  for line in "$@"; do printf '%s\n' "$line" >> "$file"; done
}

# rank_pid PATTERN RANK: the PID of the process whose command line matches
# PATTERN and whose environment says it is MPI rank RANK.
rank_pid() {
  local p
  for p in $(pgrep -f "$1" || true); do
    if tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2"; then
      echo "$p"
      return
    fi
  done
}

# wait_until SECONDS 'CONDITION': evaluates the shell CONDITION every 0.1 s
# until it holds; returns 1 after SECONDS.
wait_until() {
  local limit=$1 cond=$2
  local end=$((SECONDS + limit))
  until eval "$cond"; do
    [ $SECONDS -lt $end ] || return 1
    sleep 0.1
  done
}

# show_log FILE: its last lines without the trainer's progress line.
show_log() { tr '\r' '\n' < "$1" | sed 's/\x1b\[K//g' | grep -v '^\[[.#= ]*\] step [0-9]' | tail -15; }

# alive PID: the process exists and is not a zombie waiting to be reaped.
alive() { [ -r "/proc/$1/stat" ] && ! awk '{ exit !($3 == "Z") }' "/proc/$1/stat" 2>/dev/null; }

# lines FILE: number of lines (0 when missing)
lines() { [ -f "$1" ] && wc -l < "$1" || echo 0; }
