#!/usr/bin/env bash
# `shardlm plan` end to end through the real binary: the table, --json, the
# 7B --search on 8 x 80 GB (ZeRO-3 first, ZeRO-0 rejected for memory), bad
# input naming the option, and --measure on 2 real MPI ranks.
#   tests/plan/check_plan_cli.sh path/to/shardlm path/to/source
set -euo pipefail
SHARDLM=$(realpath "$1")
SRC=$(realpath "$2")
MPIEXEC=${MPIEXEC:-mpiexec}
fail() { echo "FAIL: $*" >&2; exit 1; }
tmp=$(mktemp -d /tmp/shardlm-plan.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# ---- the table ---------------------------------------------------------------------------
"$SHARDLM" plan --config "$SRC/configs/plan/gpt2-124m.toml" --world 8 >"$tmp/table.txt"
cat "$tmp/table.txt"
grep -q "^verdict    fits" "$tmp/table.txt" || fail "GPT-2 124M on 8 H100s should fit"
grep -q "reduce_scatter\|all_reduce" "$tmp/table.txt" || fail "no collectives in the table"

# ---- --json, with an override: ZeRO-3 sends 1.5x what DDP sends ---------------------------
"$SHARDLM" plan --config "$SRC/configs/plan/gpt2-124m.toml" --world 8 --json >"$tmp/z0.json"
"$SHARDLM" plan --config "$SRC/configs/plan/gpt2-124m.toml" --world 8 --json \
  --parallel.zero_stage=3 >"$tmp/z3.json"
python3 - "$tmp/z0.json" "$tmp/z3.json" <<'PY' || fail "--json"
import json, sys
z0, z3 = (json.load(open(f)) for f in sys.argv[1:3])
assert z0["input"]["zero_stage"] == 0 and z3["input"]["zero_stage"] == 3
r = z3["communication"]["wire_bytes"] / z0["communication"]["wire_bytes"]
# By hand: psi = 124,439,808; the root unit (wte 50257 x 768 + wpe 1024 x 768 + ln_f
# 2 x 768) = 39,385,344; both unit sizes divide by 8. DDP sends 2 (P-1)/P psi per
# step; ZeRO-3 gathers every block twice and the root once, and reduce-scatters
# all: (P-1)/P (3 psi - root). Ratio (3 psi - root) / (2 psi) = 1.34175 (the
# scalar all-reduces are negligible).
psi, root = 124439808, 39385344
want = (3 * psi - root) / (2 * psi)
assert abs(r - want) < 1e-4, (r, want)
assert z3["memory"]["model_states"]["peak"]["optimizer"] * 8 == z0["memory"]["model_states"]["peak"]["optimizer"]
print("json ok: ZeRO-3 / DDP bytes sent", round(r, 3))
PY

# ---- --search: 7B on 8 x 80 GB ------------------------------------------------------------
"$SHARDLM" plan --config "$SRC/configs/plan/gpt3-6.7b.toml" --world 8 --device-memory 80GB \
  --global-batch 32 --search >"$tmp/search.txt"
cat "$tmp/search.txt"
sed -n '4p' "$tmp/search.txt" | grep -q "ZeRO-3" || fail "the fastest configuration should be ZeRO-3"
grep -q "ZeRO-0, 1 x 4 .*does not fit" "$tmp/search.txt" || fail "ZeRO-0 should be rejected with its reason"
"$SHARDLM" plan --config "$SRC/configs/plan/gpt3-6.7b.toml" --world 8 --device-memory 80GB \
  --global-batch 32 --search --json >"$tmp/search.json"
python3 - "$tmp/search.json" <<'PY' || fail "--search --json"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["best"]["zero_stage"] == 3, r["best"]
z0 = [p for p in r["rejected"] if p["zero_stage"] == 0 and not p["cpu_offload"]]
assert z0 and all("does not fit" in p["verdict"] for p in z0)
assert not any(p["zero_stage"] == 0 and not p["cpu_offload"] for p in r["fitting"])
print("search ok:", r["best"]["config"], "|", z0[0]["verdict"])
PY

# ---- bad input names the option ---------------------------------------------------------------
if "$SHARDLM" plan --config "$SRC/configs/plan/gpt2-124m.toml" --device-memory 80XB 2>"$tmp/err"; then
  fail "a bad size was accepted"
fi
grep -q -- "--device-memory: '80XB' is not a size" "$tmp/err" || fail "message: $(cat "$tmp/err")"
if "$SHARDLM" plan --config "$SRC/configs/plan/gpt2-124m.toml" --net nvlink4,pigeon 2>"$tmp/err"; then
  fail "an unknown link was accepted"
fi
grep -q "unknown link profile 'pigeon'" "$tmp/err" || fail "message: $(cat "$tmp/err")"

# ---- --measure on 2 real ranks ------------------------------------------------------------------
[ "$(id -u)" -eq 0 ] && root=--allow-run-as-root || root=
"$MPIEXEC" $root --oversubscribe -n 2 "$SHARDLM" plan --config "$SRC/configs/demo.toml" --device cpu \
  --measure --json >"$tmp/measure.json"
python3 - "$tmp/measure.json" <<'PY' || fail "--measure"
import json, sys
j = json.load(open(sys.argv[1]))  # one object: only rank 0 prints
m = j["measured"]
assert m["ranks"] == 2 and m["bandwidth"] > 1e6 and 0 < m["latency"] < 0.1, m
assert j["input"]["network"]["intra"]["name"] == "measured"
assert j["input"]["network"]["intra"]["bandwidth"] == m["bandwidth"]
assert j["communication"]["per_kind"]["reduce_scatter"]["wire_bytes"] > 0
print("measure ok: %.3g GB/s, %.3g us per step" % (m["bandwidth"] / 1e9, m["latency"] * 1e6))
PY
echo "plan CLI: all checks passed"
