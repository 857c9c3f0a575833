#!/usr/bin/python3
"""shardlm's GPT against the same model in PyTorch Python: forward + backward of the
CPU benchmark model (4 layers, 4 heads, width 256, T=128, batch 8, vocab 4096),
same machine, same run, same threads, alternating rounds so that load changes hit
both sides alike.

  /usr/bin/python3 bench/model/side_by_side.py --bench build/bench/model/bench_model \\
      [--threads 2] [--rounds 5] [--bf16]

The baseline is tests/model/golden/gpt_reference.py (a nanoGPT-style model: nn.Linear
on (B, T, C), q @ k^T, masked_fill with a causal mask, F.softmax) with the same shapes.
Prints one Markdown row for bench/RESULTS.md.
"""
import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "model", "golden"))


def _arg(name, default):
    for i, a in enumerate(sys.argv):
        if a == name and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return default


# Same threads on both sides, also for OpenBLAS's own pool, and the same OpenMP wait
# policy (libgomp and OpenBLAS read these when they load, so before torch is
# imported); the C++ side gets the same variables.
THREADS_ENV = {"OMP_NUM_THREADS": _arg("--threads", "2"),
               "OPENBLAS_NUM_THREADS": _arg("--threads", "2")}
if _arg("--wait-policy", ""):
    THREADS_ENV["OMP_WAIT_POLICY"] = _arg("--wait-policy", "")
os.environ.update(THREADS_ENV)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import gpt_reference as ref  # noqa: E402

B, T, V = 8, 128, 4096


def cpu_model():
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("Model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def python_round(model, ids, targets, steps, bf16):
    times, cpu = [], []
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.thread_time()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(ids)
            loss = F.cross_entropy(logits.reshape(-1, V).float(), targets.reshape(-1))
        loss.backward()
        model.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
    return statistics.median(times), statistics.median(cpu)


def cpp_round(binary, threads, bf16, min_time):
    env = dict(os.environ, **THREADS_ENV)
    out = subprocess.run([binary, f"--benchmark_filter=^BM_ForwardBackward/{1 if bf16 else 0}$",
                          f"--benchmark_min_time={min_time}", "--benchmark_format=json"],
                         env=env, capture_output=True, text=True, check=True).stdout
    bench = json.loads(out)["benchmarks"][0]
    scale = {"ms": 1e-3, "us": 1e-6, "ns": 1e-9, "s": 1.0}[bench["time_unit"]]
    return bench["real_time"] * scale, bench["cpu_time"] * scale


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", default=os.path.join(ROOT, "build", "bench", "model", "bench_model"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=8, help="Python steps per round")
    ap.add_argument("--min-time", type=float, default=3.0, help="C++ seconds per round")
    ap.add_argument("--bf16", action="store_true", help="CPU autocast to bfloat16 on both sides")
    ap.add_argument("--wait-policy", default="", help="OMP_WAIT_POLICY for both sides (e.g. passive)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = ref.make_config(vocab_size=V, context_length=T, n_layer=4, n_head=4, d_model=256)
    model = ref.GPT(cfg).train()
    ids = torch.randint(0, V, (B, T))
    targets = torch.randint(0, V, (B, T))
    python_round(model, ids, targets, 2, args.bf16)  # warm-up

    ours, base, ours_cpu, base_cpu = [], [], [], []
    for r in range(args.rounds):
        o, oc = cpp_round(args.bench, args.threads, args.bf16, args.min_time)
        b, bc = python_round(model, ids, targets, args.steps, args.bf16)
        ours.append(o)
        base.append(b)
        ours_cpu.append(oc)
        base_cpu.append(bc)
        print(f"round {r}: shardlm {o * 1e3:.1f} ms (main thread cpu {oc * 1e3:.1f})  "
              f"pytorch {b * 1e3:.1f} ms (cpu {bc * 1e3:.1f})", file=sys.stderr)
    o, b = statistics.median(ours), statistics.median(base)
    oc, bc = statistics.median(ours_cpu), statistics.median(base_cpu)
    load = os.getloadavg()[0]
    policy = f", OMP_WAIT_POLICY={args.wait_policy}" if args.wait_policy else ""
    what = ("forward+backward, benchmark model, " + ("autocast bf16" if args.bf16 else "fp32") +
            f", {args.threads} threads{policy} (median of {args.rounds} alternating rounds; "
            f"load {load:.1f})")
    cmd = f"/usr/bin/python3 bench/model/side_by_side.py --threads {args.threads}" + (
        " --bf16" if args.bf16 else "") + (f" --wait-policy {args.wait_policy}" if policy else "")
    print(f"| {datetime.date.today()} | {cpu_model()} | {what} | `{cmd}` | "
          f"{o * 1e3:.1f} ms/step (main-thread CPU {oc * 1e3:.0f} ms) | PyTorch {torch.__version__} "
          f"Python: {b * 1e3:.1f} ms/step (CPU {bc * 1e3:.0f} ms) | {b / o:.2f}x |")


if __name__ == "__main__":
    main()
