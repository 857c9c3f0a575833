#!/usr/bin/env bash
# A host drops out of a two-host run mid-collective (ctest faults.host_drop,
# needs root): two network namespaces joined by a veth pair stand for two
# hosts (as tests/launcher/check_multihost.sh sets them up), `shardlm launch`
# runs a real 2-rank `shardlm train` with one rank on each over TCP, and with
# parallel.collective_timeout_s = 5 the link of host B goes down mid-run (no
# FIN, no RST: the packets just stop, as when a host loses power). Rank 0 on
# host A must report within twice the timeout that rank 1 did not arrive in
# the collective, and every rank of the job, on both hosts, must be gone soon
# after (each rank's watchdog ends it even when its launcher cannot be reached).
#   tests/faults/host_drop.sh path/to/shardlm FIXTURE_DIR
SHARDLM=$(realpath "$1")
FIXTURE=$(realpath "$2")
source "$(dirname "$0")/lib.sh"
TIMEOUT_S=5
[ "$(id -u)" -eq 0 ] || fail "needs root to create network namespaces (CI runs as root)"
[ -f "$FIXTURE/data/manifest.json" ] || fail "no prepared fixture in $FIXTURE (tests/runtime/make_fixture.sh)"

source "$(dirname "$0")/../launcher/netns_hosts.sh"
netns_cleanup() {
  netns_hosts_cleanup
  cleanup
}
trap netns_cleanup EXIT
netns_hosts 10.201 "$TMP"

cfg=$TMP/run.toml run=$TMP/run
write_train_config "$cfg" "$run" "$FIXTURE" "[parallel]" "zero_stage = 1" \
  "collective_timeout_s = $TIMEOUT_S" "[ckpt]" "every = 0" "save_final = false"
start_job "$TMP/train.log" ip netns exec "$ns_a" unshare --uts sh -c 'hostname host-a && exec "$@"' sh \
  "$SHARDLM" launch --hosts "$ip_a:1,$ip_b:1" --net "$cidr" --threads 1 \
  --mca "plm_rsh_agent=$TMP/agent.sh" -- train --config "$cfg"
launcher=$JOB
wait_until 120 '[ "$(lines "$run/metrics/rank-1.jsonl")" -ge 20 ]' ||
  fail "the two-host run made no progress: $(show_log "$TMP/train.log")"
# The job's ranks, by namespace: processes running the training command that
# MPI started as a rank (the launcher's and mpirun's command lines hold the same words).
job_ranks() {
  for p in $(ip netns pids "$1"); do
    tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | grep -q "train --config $cfg" || continue
    tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -q "^OMPI_COMM_WORLD_RANK=" && echo "$p"
  done
  return 0
}
[ -n "$(job_ranks "$ns_b")" ] || fail "no rank runs in host B's namespace"

ip -n "$ns_b" link set "$tag-vb" down
t0=$(now)
echo "host B's link is down"
limit=$((2 * TIMEOUT_S))
wait_until $((3 * limit)) 'grep -qE "\[shardlm watchdog\] rank 0: .*ranks not arrived: 1" "$TMP/train.log"' ||
  fail "rank 0 never reported rank 1 missing: $(show_log "$TMP/train.log")"
took=$(elapsed "$t0")
echo "rank 0 reported rank 1 missing after $took s"
lt "$took" "$limit" || fail "the report came after $took s, more than twice the timeout ($limit s)"
grep -E "\[shardlm watchdog\] rank 0: .*collective #[0-9]+ [a-z_]+\(" "$TMP/train.log" > /dev/null ||
  fail "the report does not name the collective"
# Every rank of the job ends, on host A and on the unreachable host B.
end=$((SECONDS + limit + 10))
while [ -n "$(job_ranks "$ns_a")$(job_ranks "$ns_b")" ] && [ $SECONDS -lt $end ]; do sleep 0.1; done
[ -z "$(job_ranks "$ns_a")$(job_ranks "$ns_b")" ] ||
  fail "ranks still alive $(elapsed "$t0") s after the drop: A: $(job_ranks "$ns_a") B: $(job_ranks "$ns_b")"
gone=$(elapsed "$t0")
echo "every rank ended $gone s after the drop"
# The launcher on host A: it may wait for host B's unreachable daemon; say how long.
end=$((SECONDS + 5))
while kill -0 "$launcher" 2>/dev/null && [ $SECONDS -lt $end ]; do sleep 0.2; done
if kill -0 "$launcher" 2>/dev/null; then
  echo "note: mpirun on host A still waits for host B's daemon $(elapsed "$t0") s after the drop (killed by the test)"
else
  echo "mpirun on host A exited $(elapsed "$t0") s after the drop"
fi
echo "ok: host B dropped mid-collective; rank 0 named rank 1 after $took s, every rank gone after $gone s"
