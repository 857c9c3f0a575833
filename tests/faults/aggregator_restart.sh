#!/usr/bin/env bash
# The aggregator is killed (SIGKILL) and restarted mid-run (ctest
# faults.aggregator_restart): a real 2-rank `shardlm train` reports to an
# external `shardlm monitor` on a fixed port; 2 s after the kill a new
# aggregator starts on the same port and run directory. The ranks must
# reconnect by themselves and finish, and the aggregator's history
# (metrics.jsonl, reloaded on restart) must hold every step message of each
# rank's own record (RUN_DIR/metrics/rank-N.jsonl) except at most those the
# dead process had read but not stored: the count is printed, and must stay
# within the sink's bounded queue (monitor.queue_capacity).
#   tests/faults/aggregator_restart.sh path/to/shardlm FIXTURE_DIR
SHARDLM=$(realpath "$1")
FIXTURE=$(realpath "$2")
source "$(dirname "$0")/lib.sh"
export OMP_NUM_THREADS=1
[ -f "$FIXTURE/data/manifest.json" ] || fail "no prepared fixture in $FIXTURE (tests/runtime/make_fixture.sh)"
QUEUE=4096
mon=$TMP/monitor run=$TMP/run
mkdir -p "$mon"

# A free port, the same for both aggregators.
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
start_monitor() {
  local mlog=$TMP/monitor-$1.log  # (wait_until's eval sees its own $1)
  start_job "$mlog" "$SHARDLM" monitor --run-dir "$mon" --port "$port"
  MONITOR=$JOB
  wait_until 120 'grep -q "listening on" "$mlog"' ||
    fail "the aggregator did not start: $(cat "$mlog")"
}
steps_in() {  # steps_in FILE RANK: the step numbers of RANK's step messages, sorted
  /usr/bin/python3 - "$1" "$2" <<'PY'
import json, sys
out = set()
for line in open(sys.argv[1], errors="replace"):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("type") == "step" and m.get("rank") == int(sys.argv[2]):
        out.add(m["step"])
print(" ".join(str(s) for s in sorted(out)))
PY
}
start_monitor 1
token=$(cat "$mon/monitor.token")

cfg=$TMP/run.toml
write_train_config "$cfg" "$run" "$FIXTURE" "[ckpt]" "every = 0" "save_final = false"
sed -i "/^\[monitor\]\$/a url = \"ws://127.0.0.1:$port/ws\"\ntoken = \"$token\"\nqueue_capacity = $QUEUE\nheartbeat_s = 0.5" "$cfg"
sed -i 's/^steps = 100000/steps = 400/' "$cfg"
start_job "$TMP/train.log" "$MPIEXEC" -n 2 --oversubscribe --bind-to none "$SHARDLM" train --config "$cfg"
train=$JOB
wait_until 120 '[ "$(cat "$mon/metrics.jsonl" 2>/dev/null | grep -c "\"type\":\"step\"")" -ge 60 ]' ||
  fail "the aggregator received no steps: $(show_log "$TMP/train.log") $(tail -5 "$TMP/monitor-1.log")"
kill -9 "$MONITOR"
killed_at=$(tail -1 "$run/metrics/rank-0.jsonl" | sed -n 's/.*"step":\([0-9]*\).*/\1/p')
echo "aggregator killed near step $killed_at"
sleep 2
start_monitor 2
rc=0; wait "$train" || rc=$?
[ "$rc" -eq 0 ] || fail "the run failed (exit $rc) after the aggregator restarted: $(show_log "$TMP/train.log")"
sleep 1  # the aggregator stores what the ranks flushed at exit
total_lost=0
for rank in 0 1; do
  truth=$(steps_in "$run/metrics/rank-$rank.jsonl" "$rank")
  seen=$(steps_in "$mon/metrics.jsonl" "$rank")
  n_truth=$(wc -w <<<"$truth")
  lost=$(comm -23 <(tr ' ' '\n' <<<"$truth" | sort) <(tr ' ' '\n' <<<"$seen" | sort) | wc -l)
  after=$(tr ' ' '\n' <<<"$seen" | awk -v k="$killed_at" '$1 > k + 20' | wc -l)
  echo "rank $rank: $n_truth steps sent, $lost not in the aggregator's history, $after received after the restart"
  [ "$n_truth" -ge 400 ] || fail "rank $rank recorded only $n_truth steps"
  [ "$after" -gt 0 ] || fail "rank $rank did not reconnect: no step after the restart"
  [ "$lost" -le "$QUEUE" ] || fail "rank $rank lost $lost steps, more than its queue of $QUEUE"
  total_lost=$((total_lost + lost))
done
echo "ok: aggregator killed at step ~$killed_at and restarted; the ranks reconnected; $total_lost step messages lost in all"
