#!/usr/bin/env bash
# Builds ~10 MB of real English text from Debian packages, for the tokenizer
# benchmarks and the data pipeline: .cache/corpus/english.txt (path is stable).
#   bible-kjv       the King James Bible, verse references stripped (~4.3 MB prose)
#   fortunes-min    fortunes, literature and riddles (~0.1 MB)
#   python3.11-doc  the reStructuredText sources of Python's docs (prose + code)
# Files are taken in a fixed (C-locale sorted) order and the result is cut at
# exactly 10,000,000 bytes (at a line end), so every machine builds the same file.
# Re-running with the file present does nothing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT_DIR="${SHARDLM_CORPUS_DIR:-$ROOT/.cache/corpus}"
OUT="$OUT_DIR/english.txt"
SIZE=10000000
if [ -s "$OUT" ] && [ "$(stat -c %s "$OUT")" -le "$SIZE" ] && [ -f "$OUT.done" ]; then
  echo "[shardlm] corpus present: $OUT ($(stat -c %s "$OUT") bytes)"
  exit 0
fi
for tool in bible; do
  command -v "$tool" >/dev/null || { echo "error: '$tool' missing: apt-get install --no-install-recommends bible-kjv" >&2; exit 1; }
done
FORTUNES=/usr/share/games/fortunes
PYDOC=/usr/share/doc/python3.11/html/_sources
[ -d "$FORTUNES" ] || { echo "error: $FORTUNES missing: apt-get install fortunes-min" >&2; exit 1; }
[ -d "$PYDOC" ] || { echo "error: $PYDOC missing: apt-get install --no-install-recommends python3.11-doc" >&2; exit 1; }
mkdir -p "$OUT_DIR"
tmp="$OUT.tmp"
# (head closes the pipe early on purpose: ignore the writers' SIGPIPE.)
set +o pipefail
{
  bible -f "Gen1:1-Rev22:21" | sed -E 's/^[0-9]?[A-Za-z]+[0-9]+:[0-9]+ //'
  for f in fortunes literature riddles; do [ -f "$FORTUNES/$f" ] && cat "$FORTUNES/$f"; done
  find "$PYDOC" -type f -name '*.rst.txt' | LC_ALL=C sort | xargs cat 2>/dev/null
} | head -c "$SIZE" > "$tmp"
set -o pipefail
# Drop the last partial line so the file ends at a line boundary.
if [ -n "$(tail -c 1 "$tmp")" ]; then
  n=$(tail -c 4096 "$tmp" | LC_ALL=C awk 'END{print length($0)}')
  truncate -s "-$n" "$tmp"
fi
mv "$tmp" "$OUT"
touch "$OUT.done"
echo "[shardlm] corpus written: $OUT ($(stat -c %s "$OUT") bytes)"
