#!/usr/bin/env bash
# Side by side on the same ~10 MB of real English (bench/tokenizer/make_corpus.sh):
#   encode: shardlm on the whole text (one thread; all threads, same ids), and
#           on its lines as documents (encode_batch, one and all threads)
#           vs gpt-tokenizer and tiktoken (wasm) from npm, one thread (Node);
#           r50k and cl100k ranks; best of 3 runs each; token counts must agree
#   train:  `shardlm tokenizer train --vocab-size 8000` vs
#           `spm_train --model_type=bpe --vocab_size=8000`, whole-process wall time
# Prints one Markdown row per figure for bench/RESULTS.md.
# Usage: bench/tokenizer/compare.sh [build dir]   (after ./shardlm.sh build)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BUILD="${1:-$ROOT/build}"
SHARDLM="$BUILD/launcher/shardlm"
REF="$ROOT/.cache/reference/node_modules"
CORPUS="$ROOT/.cache/corpus/english.txt"
"$ROOT/scripts/fetch_reference.sh" >/dev/null
"$ROOT/bench/tokenizer/make_corpus.sh" >/dev/null
[ -x "$SHARDLM" ] || { echo "build first: $SHARDLM missing" >&2; exit 1; }
command -v spm_train >/dev/null || { echo "spm_train missing: apt-get install sentencepiece" >&2; exit 1; }

DATE=$(date +%F)
CORES=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)  # nproc alone follows OMP_NUM_THREADS
CPU="$(lscpu | sed -n 's/^Model name: *//p' | head -1), $CORES cores"
MB=$(awk -v b="$(stat -c %s "$CORPUS")" 'BEGIN{printf "%.1f", b/1e6}')
echo "# $DATE on $CPU; corpus $MB MB; load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
row() { echo "| $DATE | $CPU | $1 | \`$2\` | $3 | $4 | $5 |"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1fx", a/b}'; }

# ---- encode -----------------------------------------------------------------------
for enc in r50k_base cl100k_base; do
  tok="$REF/gpt-tokenizer/data/$enc.tiktoken"
  # "N bytes -> M tokens (...) in S s: X MB/s"
  one=$("$SHARDLM" tokenizer encode -t "$tok" -i "$CORPUS" --stats --repeat 3)
  all=$("$SHARDLM" tokenizer encode -t "$tok" -i "$CORPUS" --stats --repeat 3 --threads 0)
  lines1=$("$SHARDLM" tokenizer encode -t "$tok" -i "$CORPUS" --stats --repeat 3 --lines --threads 1)
  linesN=$("$SHARDLM" tokenizer encode -t "$tok" -i "$CORPUS" --stats --repeat 3 --lines --threads 0)
  ours_tokens=$(echo "$one" | awk '{print $4}')
  ours1=$(echo "$one" | awk '{print $(NF-1)}')
  oursN=$(echo "$all" | awk '{print $(NF-1)}')
  ours_l1=$(echo "$lines1" | awk '{print $(NF-1)}')
  ours_lN=$(echo "$linesN" | awk '{print $(NF-1)}')
  [ "$(echo "$all" | awk '{print $4}')" = "$ours_tokens" ] || echo "WARNING: threads changed the ids" >&2
  js=$(node "$ROOT/bench/tokenizer/encode_js.cjs" "$CORPUS" "$enc" 3)
  echo "$js" >&2
  best_name="" best=0
  while read -r name tokens secs mbs; do
    [ "$tokens" = "$ours_tokens" ] || echo "WARNING: $name gives $tokens tokens, shardlm $ours_tokens" >&2
    if awk -v a="$mbs" -v b="$best" 'BEGIN{exit !(a>b)}'; then best=$mbs; best_name=$name; fi
    row "encode $enc, 1 thread, MB/s ($name)" "shardlm tokenizer encode -t $enc.tiktoken -i english.txt --stats --repeat 3" \
        "$ours1" "$mbs" "$(ratio "$ours1" "$mbs")"
  done <<< "$js"
  row "encode $enc, all $CORES threads, MB/s (vs fastest JS, $best_name)" \
      "shardlm tokenizer encode -t $enc.tiktoken -i english.txt --stats --repeat 3 --threads 0" \
      "$oursN" "$best" "$(ratio "$oursN" "$best")"
  row "encode $enc, lines as documents (encode_batch), 1 / all $CORES threads, MB/s" \
      "shardlm tokenizer encode ... --lines --threads 1 / 0" "$ours_l1 / $ours_lN" "-" \
      "$(ratio "$ours_lN" "$ours_l1") from threads"
done

# ---- train ------------------------------------------------------------------------
work=$(mktemp -d)
t0=$(date +%s.%N)
"$SHARDLM" tokenizer train -i "$CORPUS" -v 8000 -o "$work/tok.json" --no-progress >&2
t1=$(date +%s.%N)
spm_train --input="$CORPUS" --model_prefix="$work/spm" --model_type=bpe --vocab_size=8000 \
          --minloglevel=2 >/dev/null 2>&1
t2=$(date +%s.%N)
ours=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}')
spm=$(awk -v a="$t1" -v b="$t2" 'BEGIN{printf "%.2f", b-a}')
row "train BPE, vocabulary 8000, s (whole process)" "shardlm tokenizer train -i english.txt -v 8000 -o tok.json" \
    "$ours" "$spm (spm_train --model_type=bpe --vocab_size=8000)" "$(ratio "$spm" "$ours")"
rm -rf "$work"
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
