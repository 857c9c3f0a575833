#!/usr/bin/env python3
"""A plain-Python corpus BLEU with sacrebleu 2.x's defaults (13a tokenizer,
n = 4, exp smoothing), written here as the side-by-side baseline of
`shardlm eval bleu` (bench/eval/bleu_compare.sh). It follows sacrebleu's
documented behaviour; no sacrebleu code is used.

Usage: bleu_reference.py HYP REF [REF...]   -> prints {"bleu": ..., "seconds": ...}
"""
import json
import math
import re
import sys
import time
from collections import Counter

_RULES = [
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),
]


def tok13a(line):
    line = line.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in line:
        line = (line.replace("&quot;", '"').replace("&amp;", "&")
                .replace("&lt;", "<").replace("&gt;", ">"))
    line = f" {line} "
    for rx, repl in _RULES:
        line = rx.sub(repl, line)
    return line.split()


def ngrams(toks, n_max=4):
    c = Counter()
    for n in range(1, n_max + 1):
        for i in range(len(toks) - n + 1):
            c[tuple(toks[i:i + n])] += 1
    return c


def corpus_bleu(hyps, refs_per_hyp):
    correct, total = [0] * 4, [0] * 4
    sys_len = ref_len = 0
    for hyp, refs in zip(hyps, refs_per_hyp):
        h = tok13a(hyp)
        best_diff, best_len, ref_max = None, None, Counter()
        for r in refs:
            rt = tok13a(r)
            d = abs(len(h) - len(rt))
            if best_diff is None or d < best_diff or (d == best_diff and len(rt) < best_len):
                best_diff, best_len = d, len(rt)
            for g, k in ngrams(rt).items():
                ref_max[g] = max(ref_max[g], k)
        sys_len += len(h)
        ref_len += best_len
        for g, k in ngrams(h).items():
            total[len(g) - 1] += k
            correct[len(g) - 1] += min(k, ref_max.get(g, 0))
    bp = 1.0 if sys_len >= ref_len else (math.exp(1 - ref_len / sys_len) if sys_len else 0.0)
    if not any(correct):
        return 0.0
    prec, smooth = [], 1.0
    for n in range(4):
        if total[n] == 0:
            break
        if correct[n] == 0:
            smooth *= 2
            prec.append(100.0 / (smooth * total[n]))
        else:
            prec.append(100.0 * correct[n] / total[n])
    prec += [0.0] * (4 - len(prec))
    return bp * math.exp(sum(math.log(p) if p > 0 else -9999999999 for p in prec) / 4)


def main():
    hyps = open(sys.argv[1], encoding="utf-8").read().split("\n")[:-1]
    streams = [open(f, encoding="utf-8").read().split("\n")[:-1] for f in sys.argv[2:]]
    refs = list(zip(*streams))
    t0 = time.perf_counter()
    score = corpus_bleu(hyps, refs)
    print(json.dumps({"bleu": score, "seconds": time.perf_counter() - t0}))


if __name__ == "__main__":
    main()
