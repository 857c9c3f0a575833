#!/usr/bin/env bash
# Two hosts on one machine (ctest label mpi, needs root): two network
# namespaces joined by a veth pair, private addresses inside them only, each
# with its own host name. `shardlm launch --hosts A:1,B:1 --net CIDR` runs
# inside namespace A; OpenMPI reaches B through a launch agent that enters B
# (--mca plm_rsh_agent), and the ranks talk over TCP on the veth (btl
# tcp,vader,self limited to the CIDR). The ZeRO-3 parity tests of
# tests/parallel must pass with one rank per "host", and the veth must have
# carried their traffic.
#   tests/launcher/check_multihost.sh path/to/shardlm path/to/test_parallel
set -euo pipefail
SHARDLM=$(realpath "$1")
TEST_PARALLEL=$(realpath "$2")
FILTER='Sharded/ShardedLosses.MatchTheReference/Stage3:Sharded/ShardedLosses.MatchTheReference/Stage3Offload'

fail() { echo "FAIL: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "needs root to create network namespaces (CI runs as root)"

tmp=$(mktemp -d /tmp/shardlm-netns.XXXXXX)
source "$(dirname "$0")/netns_hosts.sh"
cleanup() {
  netns_hosts_cleanup
  rm -rf "$tmp"
}
trap cleanup EXIT
netns_hosts 10.200 "$tmp"

tx_bytes() { ip -n "$ns_a" -s -j link show "$tag-va" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["stats64"]["tx"]["bytes"])'; }
before=$(tx_bytes)
launch=("$SHARDLM" launch --hosts "$ip_a:1,$ip_b:1" --net "$cidr" --threads 1
        --mca "plm_rsh_agent=$tmp/agent.sh" --program "$TEST_PARALLEL")
tests=(-- "--gtest_filter=$FILTER" --gtest_color=no)
echo "in namespace $ns_a (host-a):"
"${launch[@]}" --dry-run "${tests[@]}"
if ! ip netns exec "$ns_a" unshare --uts sh -c 'hostname host-a && exec "$@"' sh \
    "${launch[@]}" "${tests[@]}" 2>&1 | tee "$tmp/run.log"; then
  fail "the ZeRO-3 parity tests failed across the two namespaces"
fi
grep -q "PASSED  \] 2 tests" "$tmp/run.log" || fail "expected 2 passed tests in the output"
sent=$(($(tx_bytes) - before))
echo "veth $ip_a -> $ip_b carried $sent bytes"
[ "$sent" -gt 500000 ] || fail "only $sent bytes crossed the veth: the ranks did not talk over TCP between the hosts"
echo "ok: ZeRO-3 parity over TCP between two namespaces"
