#!/usr/bin/env bash
# Formatting check of the tree: clang-format (the repository's .clang-format)
# over every tracked C++/CUDA file; with the dashboard's packages installed,
# prettier and eslint over monitor/dashboard. Prints each file that would
# change and exits 1 when any would; `--fix` rewrites them instead.
#   scripts/check_format.sh [--fix]
set -uo pipefail
cd "$(dirname "$0")/.."
fix=0
[ "${1:-}" = "--fix" ] && fix=1
command -v clang-format >/dev/null || { echo "check_format: clang-format is not installed"; exit 1; }
bad=0 n=0
while IFS= read -r f; do
  [ -f "$f" ] || continue
  n=$((n + 1))
  if [ $fix -eq 1 ]; then
    clang-format -i "$f"
  elif ! clang-format --dry-run -Werror "$f" >/dev/null 2>&1; then
    echo "needs clang-format: $f"
    bad=$((bad + 1))
  fi
done < <(git ls-files '*.cpp' '*.h' '*.hpp' '*.cu' '*.cuh' ':!:*/node_modules/*')
echo "clang-format: $n files, $bad to format"
rc=$(( bad > 0 ))
dash=monitor/dashboard
if [ -x "$dash/node_modules/.bin/prettier" ] && [ -f "$dash/.prettierrc.json" ]; then
  if [ $fix -eq 1 ]; then
    (cd "$dash" && npx prettier --write --log-level warn src test >/dev/null)
  elif ! (cd "$dash" && npx prettier --check --log-level warn src test); then
    echo "prettier: files above need formatting (./shardlm.sh format)"
    rc=1
  fi
  if [ $fix -eq 1 ]; then
    (cd "$dash" && npx eslint --fix src test) || rc=1
  else
    (cd "$dash" && npx eslint --max-warnings 0 src test) || rc=1
  fi
else
  echo "check_format: the dashboard's packages are not installed (npm ci in $dash): prettier and eslint not run"
  rc=1
fi
exit $rc
