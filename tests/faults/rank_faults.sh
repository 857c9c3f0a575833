#!/usr/bin/env bash
# A rank of a real 2-rank `shardlm train` fails mid-step, with
# parallel.collective_timeout_s = 5 (ctest faults.rank_stalled, faults.rank_killed):
#   stop  SIGSTOP of rank 1 (a hung rank: alive, silent). The watchdog of rank 0
#         must end the job within twice the timeout, its report naming rank 1 as
#         the rank that did not arrive and the collective it waits in.
#   kill  SIGKILL of rank 1 (a crashed rank). The job must end within the
#         timeout with a message naming rank 1, and a resume from `latest`
#         must start at the newest committed checkpoint.
#   ckpt  SIGKILL of rank 1 while a checkpoint is being written (its
#         step-N.tmp/ exists; a wider model, so that a save lasts long enough
#         to be hit). As `kill`: `latest` names a committed checkpoint that
#         verifies (never the half-written one), and the resume starts there.
#   ckpt_stop  SIGSTOP of rank 1 while a checkpoint is being written: the
#         checkpoint's own channel between ranks is watched as the training
#         collectives are (the job ends within twice the timeout, rank 0's report
#         naming rank 1), and `latest` still names a committed checkpoint.
#   tests/faults/rank_faults.sh stop|kill|ckpt|ckpt_stop path/to/shardlm FIXTURE_DIR
MODE=$1
case "$MODE" in
  stop) SIG=STOP IN_SAVE=0 ;;
  kill) SIG=KILL IN_SAVE=0 ;;
  ckpt) SIG=KILL IN_SAVE=1 ;;
  ckpt_stop) SIG=STOP IN_SAVE=1 ;;
  *) echo "usage: $0 stop|kill|ckpt|ckpt_stop SHARDLM FIXTURE" >&2; exit 2 ;;
esac
SHARDLM=$(realpath "$2")
FIXTURE=$(realpath "$3")
source "$(dirname "$0")/lib.sh"
TIMEOUT_S=5
[ -f "$FIXTURE/data/manifest.json" ] || fail "no prepared fixture in $FIXTURE (tests/runtime/make_fixture.sh)"

cfg=$TMP/run.toml run=$TMP/run
write_train_config "$cfg" "$run" "$FIXTURE" \
  "[parallel]" "zero_stage = 1" "collective_timeout_s = $TIMEOUT_S" \
  "[ckpt]" "every = 20" "async = false" "keep_last = 2" "save_final = false"
if [ "$IN_SAVE" = 1 ]; then
  # ~100 MB of checkpoint per rank (weights and optimizer state of a d_model
  # 384 model), a save every 4 steps: writing one takes a good fraction of a second.
  sed -i 's/^d_model = 64/d_model = 384/; s/^every = 20/every = 4/' "$cfg"
fi
export OMP_NUM_THREADS=1
start_job "$TMP/train.log" "$MPIEXEC" -n 2 --oversubscribe --bind-to none "$SHARDLM" train --config "$cfg"
launcher=$JOB
in_flight=
if [ "$IN_SAVE" = 1 ]; then
  # A committed checkpoint, then the moment the next save has begun.
  wait_until 240 '[ -f "$run/checkpoints/latest" ]' ||
    fail "no checkpoint was committed: $(show_log "$TMP/train.log")"
  committed=$(cat "$run/checkpoints/latest")
  victim=$(rank_pid "$SHARDLM train --config $cfg" 1)
  [ -n "$victim" ] || fail "rank 1 not found"
  # The kill follows the sight of a step-N.tmp/ by a millisecond or so (a
  # save lasts tens of milliseconds here: those seen too late are let go).
  end=$((SECONDS + 120))
  in_flight=
  until [ -n "$in_flight" ]; do
    [ $SECONDS -lt $end ] || fail "no save caught in flight after $committed: $(show_log "$TMP/train.log")"
    sleep 0.005
    in_flight=$( (compgen -G "$run/checkpoints/step-*.tmp" || true) | head -1)
  done
  kill -$SIG "$victim"
  in_flight=$(basename "$in_flight")
  step="$(tail -1 "$run/metrics/rank-0.jsonl" | sed -n 's/.*"step":\([0-9]*\).*/\1/p'), while $in_flight was being written"
else
  # Running, past a committed checkpoint (step 20) and a few steps beyond it.
  wait_until 120 '[ "$(lines "$run/metrics/rank-1.jsonl")" -ge 30 ]' ||
    fail "the run made no progress: $(show_log "$TMP/train.log")"
  victim=$(rank_pid "$SHARDLM train --config $cfg" 1)
  [ -n "$victim" ] || fail "rank 1 not found"
  step=$(tail -1 "$run/metrics/rank-0.jsonl" | sed -n 's/.*"step":\([0-9]*\).*/\1/p')
  kill -$SIG "$victim"
fi
did=$([ "$SIG" = STOP ] && echo stopped || echo killed)
t0=$(now)
limit=$([ "$SIG" = STOP ] && echo $((2 * TIMEOUT_S)) || echo "$TIMEOUT_S")
# Wait at most 3x the limit, then fail (the trap kills what is left).
end=$((SECONDS + 3 * limit + 5))
while kill -0 "$launcher" 2>/dev/null && [ $SECONDS -lt $end ]; do sleep 0.05; done
took=$(elapsed "$t0")
kill -0 "$launcher" 2>/dev/null && fail "the job still runs $took s after rank 1 was $did: $(show_log "$TMP/train.log")"
rc=0; wait "$launcher" || rc=$?
echo "rank 1 $did near step $step: the job ended after $took s (exit code $rc, limit $limit s)"
[ "$rc" -ne 0 ] || fail "mpiexec exited 0 after a rank failed"
lt "$took" "$limit" || fail "the job took $took s to end, more than $limit s: $(show_log "$TMP/train.log")"
# mpiexec has exited, but the kernel may still be tearing the stopped rank down
# after its SIGKILL (seen under ASan, whose process maps terabytes of shadow
# memory: a zombie a moment later): a few seconds' grace.
wait_until 5 '! alive "$victim"' ||
  fail "rank 1 (pid $victim) is still alive: $(ps -o pid,stat,cmd -p "$victim")"

if [ "$SIG" = STOP ]; then
  # Rank 0's watchdog report: the collective, and rank 1 as the one missing.
  grep -qaE "\[shardlm watchdog\] rank 0: .*collective #[0-9]+ [a-z_]+\(.*ranks not arrived: 1" "$TMP/train.log" ||
    fail "no watchdog report on rank 0 naming rank 1 and the collective: $(show_log "$TMP/train.log")"
  if [ "$IN_SAVE" = 1 ]; then
    latest=$(cat "$run/checkpoints/latest")
    [ -d "$run/checkpoints/$latest" ] || fail "latest names $latest, which is not a committed directory"
    "$SHARDLM" ckpt verify "$run/checkpoints/$latest" > "$TMP/verify.log" 2>&1 ||
      fail "$latest does not verify: $(cat "$TMP/verify.log")"
    echo "latest: $latest verifies"
  fi
else
  grep -qaE "rank 1 .*(exited on signal 9|killed)|ranks not arrived: 1" "$TMP/train.log" ||
    fail "nothing names rank 1 as the failed rank: $(show_log "$TMP/train.log")"
  # The newest committed checkpoint resumes.
  latest=$(cat "$run/checkpoints/latest")
  ckstep=$((10#${latest#step-}))
  [ "$ckstep" -ge "$([ "$IN_SAVE" = 1 ] && echo 4 || echo 20)" ] || fail "latest names $latest"
  [ -d "$run/checkpoints/$latest" ] || fail "latest names $latest, which is not a committed directory"
  "$SHARDLM" ckpt verify "$run/checkpoints/$latest" > "$TMP/verify.log" 2>&1 ||
    fail "$latest does not verify: $(cat "$TMP/verify.log")"
  "$MPIEXEC" -n 2 --oversubscribe --bind-to none "$SHARDLM" train --config "$cfg" \
    --resume latest --train.steps=$((ckstep + 2)) > "$TMP/resume.log" 2>&1 ||
    fail "the resume failed: $(show_log "$TMP/resume.log")"
  grep -q "resumed from .* at step $ckstep " "$TMP/resume.log" ||
    fail "the resume did not start at step $ckstep: $(grep -m3 resumed "$TMP/resume.log")"
  echo "resumed from $latest (step $ckstep)"
fi
grep -aoE "\[shardlm watchdog\] rank 0: [^|]*|mpiexec noticed that process rank 1 [^)]*\)" "$TMP/train.log" | head -2
echo "ok: rank 1 $did, the job ended in $took s (< $limit s) naming it"
