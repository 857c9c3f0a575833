#!/usr/bin/env bash
# The first hour of a new user, measured: a fresh clone of REPO, then
# `./shardlm.sh demo` with an empty ccache, until the first training step's
# loss is printed. Every output line is written to LOG prefixed with the
# seconds since the clone started; the last lines say when the build ended
# and when the first loss appeared. Used for the cold-build rows of
# bench/RESULTS.md (run it on an otherwise idle machine).
#
#   bench/build/first_hour.sh REPO [DEST] [LOG]
#   bench/build/first_hour.sh /work/main /tmp/first-hour /tmp/first-hour.log
#
# DEST is deleted first; the ccache used is DEST.ccache (emptied first), so
# the user's own cache is neither used nor filled. It gives up after
# FIRST_HOUR_LIMIT_S (5400) seconds.
set -u
src=${1:?usage: first_hour.sh REPO [DEST] [LOG]}
dest=${2:-/tmp/shardlm-first-hour} logf=${3:-/tmp/shardlm-first-hour.log}
cc=$dest.ccache
rm -rf "$dest" "$cc"
mkdir -p "$cc"
export OMPI_MCA_rmaps_base_oversubscribe=1 CCACHE_DIR=$cc
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
start=$(date +%s.%N)
elapsed() { echo "$(date +%s.%N) - $start" | bc; }
git clone -q "$src" "$dest"
cd "$dest" || exit 1
setsid ./shardlm.sh demo > demo.raw 2>&1 &
pid=$!
: > "$logf"
built=
# the progress bar ends its lines with \r: split on both
timeout "${FIRST_HOUR_LIMIT_S:-5400}" tail -n +1 -F demo.raw 2>/dev/null | stdbuf -o0 tr '\r' '\n' | while IFS= read -r line; do
  t=$(elapsed)
  printf '%8.1f %s\n' "$t" "$line" >> "$logf"
  if [ -z "$built" ] && [[ $line == *"shardlm info on 2 MPI ranks"* ]]; then
    built=1
    printf 'BUILT %.1f\n' "$t" >> "$logf"
  fi
  if [[ $line =~ step\ 1/[0-9]+\ \|\ loss ]]; then
    printf 'FIRST_LOSS %.1f\n' "$t" >> "$logf"
    kill -- -"$pid" 2>/dev/null
    break
  fi
done
wait "$pid" 2>/dev/null
grep '^BUILT\|^FIRST_LOSS' "$logf" || { echo "first_hour: no loss line; see $logf" >&2; exit 1; }
