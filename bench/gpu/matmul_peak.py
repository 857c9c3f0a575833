#!/usr/bin/env python3
"""The card's matrix-multiply rate, measured in the run that reports MFU: a
square product (default 8192^3 in bf16) through torch.matmul, 3 warm-up and
20 timed products (CUDA events on a GPU), median. Random data: zeros run
faster on Hopper. Prints one JSON line {"tflops": ..., ...}.

  python3 matmul_peak.py --device cuda --size 8192 --dtype bf16
"""
import argparse
import json
import statistics
import time

import torch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--size", type=int, default=8192)
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"])
    ap.add_argument("--reps", type=int, default=20)
    a = ap.parse_args()
    dt = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[a.dtype]
    dev = torch.device(a.device)
    n = a.size
    x = torch.randn(n, n, device=dev, dtype=dt)
    y = torch.randn(n, n, device=dev, dtype=dt)
    cuda = dev.type == "cuda"
    times = []
    for i in range(3 + a.reps):
        if cuda:
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            torch.matmul(x, y)
            e.record()
            e.synchronize()
            dt_s = s.elapsed_time(e) / 1e3
        else:
            t0 = time.perf_counter()
            torch.matmul(x, y)
            dt_s = time.perf_counter() - t0
        if i >= 3:
            times.append(dt_s)
    med = statistics.median(times)
    print(json.dumps({"tflops": 2 * n ** 3 / med / 1e12, "size": n, "dtype": a.dtype,
                      "device": str(dev), "seconds": med,
                      "name": torch.cuda.get_device_name(dev) if cuda else "cpu"}))


if __name__ == "__main__":
    main()
