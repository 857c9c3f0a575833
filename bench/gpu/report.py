#!/usr/bin/env python3
"""Reads what scripts/gpu_check.sh produced and judges it; standard library only.

  report.py compare RUN_A RUN_B --rel 1e-3 --steps N   losses of steps [0, N) within a relative tolerance
  report.py bitwise RUN_A RUN_B --from S --to E        losses of steps [S, E) bit for bit
  report.py falls RUN                                   the loss fell (mean of the last 3 < first 3)
  report.py bench --dir OUT [model args] --json FILE    rows of the results table from the benchmark JSONs

A run's losses are the `step` messages of RUN/metrics/rank-0.jsonl (a resumed
run appends to it). compare/bitwise/falls print one line and exit 0 when it holds.

MFU (model FLOPs utilisation) counts 6 N + 12 L T d FLOPs per token for a
training step (forward and backward; PaLM, Chowdhery et al. 2022, appendix B),
N the parameters without the position embedding, and divides the achieved
FLOP/s by the card's bf16 matmul rate measured in the same run
(bench/gpu/matmul_peak.py).
"""
import argparse
import json
import os
import sys


def losses(run):
    path = os.path.join(run, "metrics", "rank-0.jsonl")
    out = {}
    with open(path) as f:
        for line in f:
            try:
                m = json.loads(line)
            except ValueError:
                continue
            if m.get("type") == "step" and m.get("loss") is not None:
                out[int(m["step"])] = float(m["loss"])
    if not out:
        raise SystemExit(f"{path}: no step messages")
    return out


def cmd_compare(a):
    x, y = losses(a.run_a), losses(a.run_b)
    steps = [s for s in range(a.steps) if s in x and s in y]
    if len(steps) < a.steps:
        print(f"only {len(steps)} of {a.steps} steps in both runs")
        return 1
    worst, at = 0.0, 0
    for s in steps:
        r = abs(x[s] - y[s]) / max(abs(y[s]), 1e-30)
        if r > worst:
            worst, at = r, s
    print(f"max rel diff {worst:.2e} (step {at}) over {len(steps)} steps; "
          f"loss {y[steps[0]]:.4f} -> {y[steps[-1]]:.4f}")
    return 0 if worst <= a.rel else 1


def cmd_bitwise(a):
    x, y = losses(a.run_a), losses(a.run_b)
    steps = list(range(a.from_step, a.to))
    missing = [s for s in steps if s not in x or s not in y]
    if missing:
        print(f"steps {missing[:5]} missing")
        return 1
    diff = [s for s in steps if x[s] != y[s]]
    if diff:
        worst = max(abs(x[s] - y[s]) / max(abs(y[s]), 1e-30) for s in diff)
        print(f"{len(diff)} of {len(steps)} steps differ (first {diff[0]}, max rel {worst:.2e})")
        return 1
    print(f"steps {a.from_step}..{a.to - 1} bitwise equal")
    return 0


def cmd_falls(a):
    x = losses(a.run)
    v = [x[s] for s in sorted(x)]
    k = min(3, len(v) // 2) or 1
    first, last = sum(v[:k]) / k, sum(v[-k:]) / k
    print(f"loss {first:.4f} -> {last:.4f} over {len(v)} steps")
    return 0 if last < first else 1


def read_json(path):
    try:
        with open(path) as f:
            lines = [l for l in f.read().splitlines() if l.strip().startswith("{")]
        return json.loads(lines[-1]) if lines else None
    except (OSError, ValueError):
        return None


def flops_per_token(layers, width, seq, vocab):
    # GPT-2 block with biases: qkv 3d^2+3d, proj d^2+d, fc 4d^2+4d, fc_proj 4d^2+d, 2 LN 4d
    n = layers * (12 * width * width + 13 * width) + vocab * width + 2 * width
    return 6 * n + 12 * layers * seq * width


def cmd_bench(a):
    get = lambda name: read_json(os.path.join(a.dir, name + ".json"))
    ours, ckpt, eager, comp, mm = get("ours"), get("ours_ckpt"), get("eager"), get("compile"), get("matmul")
    fpt = flops_per_token(a.layers, a.width, a.seq, a.vocab)
    peak = mm.get("tflops") if mm else None
    what = f"GPT-2 {a.layers}L/{a.width}, T={a.seq}, B={a.batch}, {a.dtype}, {a.device}"
    rows, out = [], {"model": what, "flops_per_token": fpt, "matmul": mm}

    def tps(j):
        return j.get("tokens_per_s") if j else None

    def mfu(j):
        t = tps(j)
        return t * fpt / (peak * 1e12) if (t and peak) else None

    def fmt(x, spec):
        return format(x, spec) if x is not None else "n/a"

    def row(check, verdict, detail):
        rows.append(f"{check}|{verdict}|{detail}")

    row(f"{a.dtype} matmul peak ({a.device})", "info", f"{fmt(peak, '.3g')} TFLOP/s" if mm else "not measured")
    for name, j in (("shardlm", ours), ("shardlm + activation checkpointing", ckpt),
                    ("PyTorch eager, fused AdamW", eager), ("PyTorch torch.compile", comp)):
        if j is None and name != "shardlm":
            if name.startswith("shardlm +") or name.endswith("compile"):
                continue
        out[name] = j
        detail = "not measured" if j is None else (
            f"{fmt(tps(j), ',.0f')} tokens/s, {fmt(j.get('step_s', 0) * 1e3, '.1f')} ms/step, "
            f"MFU {fmt(mfu(j) and 100 * mfu(j), '.1f')}%, peak allocated "
            + (f"{j['peak_bytes'] / 2**30:.2f} GiB" if j.get("peak_bytes") else "n/a"))
        row(f"train step {what}: {name}", "info" if j else "FAIL", detail)
    if ours and eager and tps(ours) and tps(eager):
        r = tps(ours) / tps(eager)
        row("shardlm / PyTorch eager (goal >= 1)", "PASS" if r >= 1 else "below", f"{r:.2f}x")
        out["ratio_eager"] = r
    if ours and comp and tps(comp):
        out["ratio_compile"] = tps(ours) / tps(comp)
        row("shardlm / torch.compile", "info", f"{out['ratio_compile']:.2f}x")
    if ours and eager and ours.get("peak_bytes") and eager.get("peak_bytes"):
        out["memory_ratio"] = ours["peak_bytes"] / eager["peak_bytes"]
        row("peak allocated, shardlm / PyTorch eager", "info", f"{out['memory_ratio']:.2f}x")
    print("\n".join(rows))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("compare")
    c.add_argument("run_a")
    c.add_argument("run_b")
    c.add_argument("--rel", type=float, required=True)
    c.add_argument("--steps", type=int, required=True)
    b = sub.add_parser("bitwise")
    b.add_argument("run_a")
    b.add_argument("run_b")
    b.add_argument("--from", dest="from_step", type=int, required=True)
    b.add_argument("--to", type=int, required=True)
    f = sub.add_parser("falls")
    f.add_argument("run")
    r = sub.add_parser("bench")
    r.add_argument("--dir", required=True)
    r.add_argument("--json")
    for k, v in (("layers", 12), ("heads", 12), ("width", 768), ("seq", 1024), ("vocab", 50304),
                 ("batch", 16), ("steps", 10), ("warmup", 3)):
        r.add_argument("--" + k, type=int, default=v)
    r.add_argument("--device", default="cuda")
    r.add_argument("--dtype", default="bf16")
    a = ap.parse_args()
    try:
        return {"compare": cmd_compare, "bitwise": cmd_bitwise, "falls": cmd_falls,
                "bench": cmd_bench}[a.cmd](a)
    except (OSError, SystemExit) as e:
        print(e)
        return 1


if __name__ == "__main__":
    sys.exit(main())
