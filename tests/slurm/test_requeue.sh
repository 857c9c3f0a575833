#!/usr/bin/env bash
# SLURM end to end (ctest label slurm), on a real single-node cluster started
# by cluster.sh: slurm/train.sbatch runs a 2-task training job through
# `shardlm launch` (srun --mpi=pmix); `scancel --signal=USR1 --batch` mid-run
# makes the ranks checkpoint and exit 75, the script requeues the job, the
# rerun resumes from checkpoints/latest and finishes. Asserts: one restart,
# resumed from a step > 0, losses equal to an uninterrupted run of the same
# payload (under mpirun, outside SLURM), the FINISHED marker, and that a
# second submission of the finished run does nothing.
#   SHARDLM_FIXTURE=DIR tests/slurm/test_requeue.sh path/to/shardlm path/to/source
# DIR holds a dataset prepared with a 4096-token tokenizer (DIR/data; ctest's
# runtime.fixture makes it).
set -euo pipefail
SHARDLM=$(realpath "$1")
SRC=$(realpath "$2")

# The training payload, the one thing to switch: "train" is the real
# `shardlm train`; "standin" is tests/slurm/standin_train.sh, a payload of
# sleeps that obeys the same protocol (no data needed; it checks the batch
# script and the cluster alone).
PAYLOAD=${SHARDLM_TEST_PAYLOAD:-train}

fail() { echo "FAIL: $*" >&2; exit 1; }
say() { echo "[test_requeue $(date +%T)] $*"; }
[ "$(id -u)" -eq 0 ] || fail "needs root: the test cluster's slurmd runs jobs as their owner"

tmp=$(mktemp -d /tmp/shardlm-slurm.XXXXXX)
ref_pid=''
cleanup() {
  local rc=$?
  if [ -n "${SLURM_CONF:-}" ]; then
    scancel --quiet --full $(squeue -h -o %i 2>/dev/null) 2>/dev/null || true
    for _ in $(seq 50); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.2; done
  fi
  [ -z "$ref_pid" ] || kill "$ref_pid" 2>/dev/null || true
  "$SRC/tests/slurm/cluster.sh" stop "$tmp/cluster" || true
  if [ $rc -ne 0 ]; then
    for f in "$tmp"/job*.out "$tmp/ref.log" "$tmp/cluster/log/slurmctld.log" "$tmp/cluster/log/slurmd.log"; do
      [ -f "$f" ] && { echo "---- $f (last 40 lines)"; tail -40 "$f"; }
    done
    echo "kept $tmp for a look"
  else
    rm -rf "$tmp"
  fi
}
trap cleanup EXIT

# ---- the payload: its config, and the losses and starts it logged ----------------------
cfg=$tmp/run.toml
case "$PAYLOAD" in
  train)
    program=''
    STEPS=150
    fixture=${SHARDLM_FIXTURE:?set SHARDLM_FIXTURE to a directory with a prepared dataset in data/}
    # A small GPT on the fixture's data: 0.04-0.1 s a step here, so USR1 lands
    # mid-run. (Validation reads the train split: the fixture has no val split.)
    cat > "$cfg" <<EOF
[train]
seed = 1234
steps = $STEPS
grad_clip = 1.0
precision = "fp32"
[train.schedule]
warmup_steps = 5
[optimizer]
lr = 1e-3
[model]
vocab_size = 4096
context_length = 64
n_layer = 2
n_head = 2
d_model = 128
[data]
path = "$fixture/data"
batch_size = 4
seq_len = 64
[validation]
every = 0
split = "train"
batches = 2
[ckpt]
async = false
[parallel]
zero_stage = 2
EOF
    # Every rank appends its messages to metrics/rank-N.jsonl, across restarts.
    metrics() {
      /usr/bin/python3 -c '
import json, sys
for line in open(sys.argv[1] + "/metrics/rank-0.jsonl"):
    m = json.loads(line)
    if m["type"] == "step" and sys.argv[2] == "losses": print(m["step"], repr(m["loss"]))
    if m["type"] == "event" and m["kind"] == "run_started" and sys.argv[2] == "starts":
        print("start", m.get("step", 0))' "$@"
    }
    losses_of() { metrics "$1" losses; }
    starts_of() { metrics "$1" starts; }
    steps_done() {
      local n
      n=$(grep -cs '"type":"step"' "$1/metrics/rank-0.jsonl" || true)
      echo "${n:-0}"
    }
    ;;
  standin)
    program=$SRC/tests/slurm/standin_train.sh
    STEPS=30
    printf '[train]\nsteps = %d\nstandin_step_seconds = 0.3\n' $STEPS > "$cfg"
    losses_of() { cat "$1/losses.txt"; }
    starts_of() { cat "$1/starts.txt"; }
    steps_done() { cat "$1/losses.txt" 2>/dev/null | wc -l; }
    ;;
  *) fail "SHARDLM_TEST_PAYLOAD=$PAYLOAD: expected train or standin" ;;
esac
# One thread per rank in both runs: the same arithmetic, so the same losses.
launch_args="--threads=1${program:+ --program=$program}"

# ---- the uninterrupted reference, under mpirun outside SLURM ----------------------
say "reference run: shardlm launch --launcher mpirun -n 2"
# shellcheck disable=SC2086  # launch_args is a list of words
"$SHARDLM" launch --launcher mpirun -n 2 $launch_args -- \
  train --config "$cfg" --train.run_dir="$tmp/ref" > "$tmp/ref.log" 2>&1 &
ref_pid=$!

# ---- the cluster and the job --------------------------------------------------------
conf=$("$SRC/tests/slurm/cluster.sh" start "$tmp/cluster") || fail "the test cluster did not start"
export "$conf"
say "cluster up ($SLURM_CONF)"
submit() {  # submit SCRIPT OUTPUT_FILE [sbatch options] -> job id
  local script=$1 out=$2
  shift 2
  sbatch --parsable --chdir="$tmp" --output="$out" --nodes=1 --ntasks-per-node=2 --cpus-per-task=1 \
    --time=10 --export="ALL,CONFIG=$cfg,RUN_DIR=$tmp/run,SHARDLM=$SHARDLM,LAUNCH_ARGS=$launch_args" \
    "$@" "$SRC/slurm/$script"
}
job_field() { scontrol show job "$1" -o | tr ' ' '\n' | sed -n "s/^$2=//p"; }
# wait_for SECONDS DESCRIPTION COMMAND...: poll until COMMAND succeeds.
wait_for() {
  local secs=$1 what=$2
  shift 2
  for _ in $(seq $((secs * 5))); do "$@" && return 0; sleep 0.2; done
  fail "timed out after ${secs}s waiting for $what"
}
steps_at_least() { [ "$(steps_done "$1")" -ge "$2" ]; }
job_done() {
  local s; s=$(job_field "$1" JobState)
  case "$s" in COMPLETED) return 0 ;; FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY) fail "job $1 ended $s" ;; esac
  return 1
}

job=$(submit train.sbatch "$tmp/job.out")
say "submitted job $job; waiting for 5 steps"
wait_for 240 "5 steps of job $job" steps_at_least "$tmp/run" 5
scancel --signal=USR1 --batch "$job"
say "sent USR1 to the batch script; waiting for checkpoint, requeue, resume and finish"
wait_for 240 "job $job to finish after its requeue" job_done "$job"

# ---- what must hold ---------------------------------------------------------------------
restarts=$(job_field "$job" Restarts)
[ "$restarts" = 1 ] || fail "job restarted $restarts times, expected 1"
grep -q "got SIGUSR1" "$tmp/job.out" || fail "the batch script did not see USR1"
grep -q "requeuing job $job" "$tmp/job.out" || fail "the batch script did not requeue"
grep -q "resuming from $tmp/run/checkpoints/latest" "$tmp/job.out" || fail "the rerun did not resume"
[ -e "$tmp/run/FINISHED" ] || fail "no FINISHED marker"
mapfile -t starts < <(starts_of "$tmp/run")
[ "${#starts[@]}" -eq 2 ] && [ "${starts[0]}" = "start 0" ] || fail "expected two starts, got: ${starts[*]}"
resumed_at=${starts[1]#start }
[ "$resumed_at" -gt 0 ] && [ "$resumed_at" -lt "$STEPS" ] || fail "resumed at step $resumed_at"
say "resumed at step $resumed_at of $STEPS; the job's log (launch, batch script, stop):"
tr '\r' '\n' < "$tmp/job.out" | grep -E '^\[(shardlm launch|train.sbatch)|^srun|stopping at|checkpoint:' | sed 's/^/    /'

wait "$ref_pid" || fail "the reference run failed: $(cat "$tmp/ref.log")"
ref_pid=''
[ "$(losses_of "$tmp/ref" | wc -l)" -eq "$STEPS" ] || fail "reference run logged the wrong number of steps"
diff <(losses_of "$tmp/ref") <(losses_of "$tmp/run") > "$tmp/losses.diff" ||
  fail "losses differ from the uninterrupted run: $(cat "$tmp/losses.diff")"
say "losses of the interrupted run equal the uninterrupted run's ($STEPS steps)"

# ---- a finished run is not started again -----------------------------------------------
# (submitted through the multi-node script, shrunk to this one GPU-less node: it
# must find and run train.sbatch, which must see the marker)
before=$(losses_of "$tmp/run" | md5sum)
job2=$(submit train-multinode.sbatch "$tmp/job2.out" --gpus-per-node=0)
wait_for 60 "job $job2 (the finished run again)" job_done "$job2"
grep -q "FINISHED exists" "$tmp/job2.out" || fail "the second job did not see the marker"
[ "$(losses_of "$tmp/run" | md5sum)" = "$before" ] || fail "the second job trained again"
[ "$(starts_of "$tmp/run" | wc -l)" -eq 2 ] || fail "the second job started the payload"
say "ok: the finished marker kept job $job2 from training again"
