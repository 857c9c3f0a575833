#!/usr/bin/env bash
# Builds the API reference (doxygen docs/Doxyfile -> build/docs/html) and fails
# on any doxygen warning about the documented targets' headers: every public
# type, function and macro there has a doc comment (///). Other folders'
# warnings are counted, not fatal.
#   scripts/check_docs.sh [FOLDER ...]     (default: core load)
set -uo pipefail
cd "$(dirname "$0")/.."
command -v doxygen >/dev/null || { echo "check_docs: doxygen is not installed (./shardlm.sh setup)"; exit 1; }
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(core load)
mkdir -p build/docs
rm -f build/docs/warnings.log
doxygen docs/Doxyfile || { echo "check_docs: doxygen failed"; exit 1; }
log=build/docs/warnings.log
total=$(grep -c "warning:" "$log" || true)
pattern=$(printf '/%s/|' "${targets[@]}")
pattern="(${pattern%|})"
fatal=$(grep "warning:" "$log" | grep -E "$pattern" || true)
n=$(printf '%s' "$fatal" | grep -c "warning:" || true)
[ -n "$fatal" ] && printf '%s\n' "$fatal"
echo "api reference: build/docs/html/index.html; ${total} warnings in all, ${n} in the documented targets (${targets[*]})"
[ "$n" -eq 0 ]
