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
FILTER='Sharded.Stage3:Sharded.Stage3Offload'

fail() { echo "FAIL: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "needs root to create network namespaces (CI runs as root)"

# Names and a /24 of 10.200.0.0/16 from this process's id, so parallel runs differ.
tag=shl$$
net=$((($$ % 250) + 1))
cidr=10.200.$net.0/24
ip_a=10.200.$net.1 ip_b=10.200.$net.2
ns_a=$tag-a ns_b=$tag-b
tmp=$(mktemp -d /tmp/shardlm-netns.XXXXXX)
cleanup() {
  ip netns del "$ns_a" 2>/dev/null || true  # deleting a namespace deletes its veth end
  ip netns del "$ns_b" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

if ! err=$(ip netns add "$ns_a" 2>&1); then
  fail "'ip netns add' is not permitted here ($err): this test needs root with CAP_SYS_ADMIN and CAP_NET_ADMIN (a privileged container)"
fi
ip netns add "$ns_b"
ip -n "$ns_a" link add "$tag-va" type veth peer name "$tag-vb" netns "$ns_b"
ip -n "$ns_a" addr add "$ip_a/24" dev "$tag-va"
ip -n "$ns_b" addr add "$ip_b/24" dev "$tag-vb"
for ns in "$ns_a" "$ns_b"; do ip -n "$ns" link set lo up; done
ip -n "$ns_a" link set "$tag-va" up
ip -n "$ns_b" link set "$tag-vb" up

# The launch agent, called by mpirun as `agent HOST COMMAND...` (like ssh, so
# the words of COMMAND are joined and parsed by a shell): runs COMMAND in
# HOST's namespace, under its own host name (a UTS namespace).
cat > "$tmp/agent.sh" <<EOF
#!/bin/sh
host=\$1; shift
case "\$host" in
  $ip_a) ns=$ns_a name=host-a ;;
  $ip_b) ns=$ns_b name=host-b ;;
  *) echo "agent: unknown host \$host" >&2; exit 1 ;;
esac
exec ip netns exec "\$ns" unshare --uts sh -c "hostname \$name && \$*"
EOF
chmod +x "$tmp/agent.sh"

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
