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
# One clang-format process for the whole list (a process per file took a
# minute on a loaded 2-core machine); its diagnostics name the files.
mapfile -t files < <(git ls-files '*.cpp' '*.h' '*.hpp' '*.cu' '*.cuh' ':!:*/node_modules/*')
n=${#files[@]} bad=0
if [ $fix -eq 1 ]; then
  printf '%s\0' "${files[@]}" | xargs -0 clang-format -i
else
  out=$(printf '%s\0' "${files[@]}" | xargs -0 clang-format --dry-run -Werror 2>&1) || true
  mapfile -t unformatted < <(sed -n 's/^\([^:]*\):[0-9]*:[0-9]*: error: code should be clang-formatted.*/\1/p' <<<"$out" | sort -u)
  for f in "${unformatted[@]}"; do echo "needs clang-format: $f"; done
  bad=${#unformatted[@]}
  if [ "$bad" -eq 0 ] && grep -q "error" <<<"$out"; then echo "$out" | head -5; bad=1; fi
fi
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
