# Two "hosts" on one machine, for the multi-host tests (sourced; needs root):
# network namespaces $ns_a and $ns_b joined by a veth pair ($tag-va, $tag-vb)
# with addresses $ip_a and $ip_b, and a launch agent for OpenMPI
# (--mca plm_rsh_agent DIR/agent.sh), called as `agent HOST COMMAND...` like
# ssh (so the words of COMMAND are joined and parsed by a shell): it runs
# COMMAND in HOST's namespace under its own host name (a UTS namespace).
#   netns_hosts PREFIX DIR   sets tag, net, cidr, ip_a, ip_b, ns_a, ns_b (a /24 of
#                            PREFIX.0.0/16 from this process's id, so parallel
#                            runs differ) and writes DIR/agent.sh
#   netns_hosts_cleanup      kills what runs in them and deletes them
# The caller defines fail().
netns_hosts() {
  local prefix=$1 dir=$2 err
  tag=nh$$
  net=$((($$ % 250) + 1))
  cidr=$prefix.$net.0/24
  ip_a=$prefix.$net.1 ip_b=$prefix.$net.2
  ns_a=$tag-a ns_b=$tag-b
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
  cat > "$dir/agent.sh" <<AGENT
#!/bin/sh
host=\$1; shift
case "\$host" in
  $ip_a) ns=$ns_a name=host-a ;;
  $ip_b) ns=$ns_b name=host-b ;;
  *) echo "agent: unknown host \$host" >&2; exit 1 ;;
esac
exec ip netns exec "\$ns" unshare --uts sh -c "hostname \$name && \$*"
AGENT
  chmod +x "$dir/agent.sh"
}

netns_hosts_cleanup() {
  local ns p
  for ns in "${ns_a:-}" "${ns_b:-}"; do
    [ -n "$ns" ] || continue
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true  # deleting a namespace deletes its veth end
  done
}
