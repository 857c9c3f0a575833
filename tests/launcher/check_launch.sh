#!/usr/bin/env bash
# `shardlm launch` end to end: --dry-run prints one line and runs nothing; a
# real launch prints that same line and runs it (2 ranks of `info --json`,
# each seeing the world of 2 and the OMP_NUM_THREADS the line gave it); inside
# a SLURM allocation the line is srun --mpi=pmix; no subcommand is an error.
#   tests/launcher/check_launch.sh path/to/shardlm
set -euo pipefail
SHARDLM=$(realpath "$1")
fail() { echo "FAIL: $*" >&2; exit 1; }
# What the test runner may have set must not leak into the lines checked here.
unset OMP_NUM_THREADS SLURM_JOB_ID
tmp=$(mktemp -d /tmp/shardlm-launch.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

# ---- --dry-run ------------------------------------------------------------------------
dry=$("$SHARDLM" launch -n 2 --dry-run -- info --json)
echo "dry run: $dry"
[ "$(printf '%s\n' "$dry" | wc -l)" -eq 1 ] || fail "--dry-run printed more than one line"
[[ "$dry" == "mpirun -n 2 "* ]] || fail "expected an mpirun line"
[[ "$dry" == *" $SHARDLM info --json" ]] || fail "the line must end with this binary's path and the subcommand"
threads=$(sed -n 's/.*-x OMP_NUM_THREADS=\([0-9]*\).*/\1/p' <<< "$dry")
[ -n "$threads" ] || fail "no -x OMP_NUM_THREADS in the line"
if [ "$(id -u)" -eq 0 ]; then
  [[ "$dry" == *" --allow-run-as-root "* ]] || fail "root needs --allow-run-as-root"
else
  [[ "$dry" != *"--allow-run-as-root"* ]] || fail "--allow-run-as-root for a user"
fi
[[ "$dry" == *" --bind-to "* ]] || fail "no binding in the line"

# ---- a real launch runs exactly the printed line --------------------------------------
"$SHARDLM" launch -n 2 -- info --json > "$tmp/out" 2> "$tmp/err" || fail "launch failed: $(cat "$tmp/err")"
grep -qxF "[shardlm launch] $dry" "$tmp/err" || fail "a real launch did not print the dry-run line: $(cat "$tmp/err")"
ranks=$(grep -o '"rank":[0-9]*' "$tmp/out" | sort | tr '\n' ' ')
[ "$ranks" = '"rank":0 "rank":1 ' ] || fail "expected ranks 0 and 1, got '$ranks' in $(cat "$tmp/out")"
[ "$(grep -c '"world_size":2' "$tmp/out")" -eq 2 ] || fail "expected world_size 2 on both ranks"
[ "$(grep -c "\"threads\":$threads[,}]" "$tmp/out")" -eq 2 ] ||
  fail "each rank should run $threads threads (the line's OMP_NUM_THREADS): $(cat "$tmp/out")"
[ "$(grep -c '"env_source":"mpi"' "$tmp/out")" -eq 2 ] || fail "ranks did not start MPI"

# ---- inside a SLURM allocation: srun --mpi=pmix -------------------------------------------
srun_line=$(SLURM_JOB_ID=7 SLURM_NTASKS=4 SLURM_JOB_NUM_NODES=2 SLURM_TASKS_PER_NODE='2(x2)' \
  SLURM_CPUS_ON_NODE=8 "$SHARDLM" launch --dry-run -- train --config 'my run.toml')
echo "under SLURM: $srun_line"
want="OMPI_MCA_btl=tcp,vader,self OMPI_MCA_pml=ob1 OMP_NUM_THREADS=4 srun --mpi=pmix --kill-on-bad-exit=0 $SHARDLM train --config 'my run.toml'"
[ "$srun_line" = "$want" ] || fail "expected: $want"

# ---- --mca settings, one value each: the `--` after the last one still ends the options --
mca_line=$("$SHARDLM" launch -n 2 --mca btl_base_verbose=0 --mca a=b --dry-run --mca c=d -- train --config x.toml) ||
  fail "--mca before -- was not accepted"
[[ "$mca_line" == *" --mca btl_base_verbose 0 --mca a b --mca c d $SHARDLM train --config x.toml" ]] ||
  fail "expected every --mca in the line, then the subcommand: $mca_line"

# ---- nothing to run ---------------------------------------------------------------------------
if "$SHARDLM" launch -n 2 --dry-run > "$tmp/out" 2> "$tmp/err"; then fail "launch without a subcommand succeeded"; fi
grep -q "nothing to run" "$tmp/err" || fail "unclear error: $(cat "$tmp/err")"
echo "ok"
