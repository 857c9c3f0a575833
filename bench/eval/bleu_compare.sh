#!/usr/bin/env bash
# Corpus BLEU of 10k sentence pairs: `shardlm eval bleu` against a plain-Python
# implementation of sacrebleu's defaults (bleu_reference.py), same input, same
# run; checks that the scores agree and prints both scoring times (best of 3; the
# process start of either side is not counted).
# Usage: bench/eval/bleu_compare.sh [build dir]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${1:-$ROOT/build}/launcher/shardlm"
PY=/usr/bin/python3
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
# 10k hypothesis/reference pairs: sentences of a fixed word list, each hypothesis
# a perturbed copy (words dropped, swapped, replaced), punctuation and numbers included.
"$PY" - "$DIR" <<'PYEOF'
import random, sys
d = sys.argv[1]
random.seed(7)
words = ("the a of and to in is was he she it that for on with as his her they at by this "
         "from had not but what all were when we there can an your which their said if do "
         "will each about how up out them then many some so these would other into has more "
         "time two like him see number no way could people my than first water been call who "
         "oil its now find long down day did get come made may part river house garden").split()
punct = [",", ".", ";", "!", "?", " 3.5", " 1,000", " 12-4", "'s", " (x)"]
with open(f"{d}/ref.txt", "w") as r, open(f"{d}/hyp.txt", "w") as h:
    for _ in range(10000):
        s = [random.choice(words) for _ in range(random.randint(8, 30))]
        ref = " ".join(s) + random.choice(punct)
        hyp = list(s)
        for _ in range(random.randint(0, 6)):
            i = random.randrange(len(hyp))
            op = random.random()
            if op < 0.3 and len(hyp) > 3: del hyp[i]
            elif op < 0.6: hyp[i] = random.choice(words)
            else:
                j = random.randrange(len(hyp)); hyp[i], hyp[j] = hyp[j], hyp[i]
        r.write(ref + "\n")
        h.write(" ".join(hyp).capitalize() + random.choice(punct) + "\n")
PYEOF
best() { sort -n | head -1; }
seconds() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["seconds"])' "$1"; }
ours=$(for i in 1 2 3; do
  "$BIN" eval bleu --hyp "$DIR/hyp.txt" --ref "$DIR/ref.txt" --json > "$DIR/ours.json"
  seconds "$DIR/ours.json"; done | best)
base=$(for i in 1 2 3; do
  "$PY" "$ROOT/bench/eval/bleu_reference.py" "$DIR/hyp.txt" "$DIR/ref.txt" > "$DIR/ref.json"
  seconds "$DIR/ref.json"; done | best)
"$PY" - "$DIR" "$ours" "$base" <<'PYEOF'
import json, sys
d, ours, base = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
a = json.load(open(f"{d}/ours.json"))["bleu"]
b = json.load(open(f"{d}/ref.json"))["bleu"]
print(f"BLEU shardlm {a:.6f}  python {b:.6f}  (difference {abs(a - b):.2e})")
print(f"scoring time (tokenize + count + score, files already read), best of 3: "
      f"shardlm {ours * 1000:.0f} ms  python {base * 1000:.0f} ms  ratio {base / ours:.1f}x")
assert abs(a - b) < 1e-9, "scores differ"
PYEOF
