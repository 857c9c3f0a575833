#!/usr/bin/python3
"""Draws the curves of docs/hyperparameters.md from the runs of
scripts/hparam_sweep.sh and prints the tables the page shows.

  scripts/hparam_plot.py OUT_OF_THE_SWEEP FIGURE_DIR

Reads every OUT/runs/NAME/metrics/rank-*.jsonl (the trainer's step and
validation messages, docs/monitor-protocol.md) and writes small PNG files
(matplotlib, Agg) into FIGURE_DIR.
"""
import json
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

plt.rcParams.update({"figure.dpi": 80, "font.size": 9, "axes.grid": True, "grid.alpha": 0.3,
                     "savefig.bbox": "tight"})


def read_run(run_dir):
    """{'steps': [step messages of rank 0], 'val': [...], 'ranks': {r: [steps]}}"""
    out = {"steps": [], "val": [], "ranks": {}}
    for f in sorted((run_dir / "metrics").glob("rank-*.jsonl")):
        rank = int(f.stem.split("-")[1])
        for line in f.read_text().splitlines():
            m = json.loads(line)
            if m.get("type") == "step":
                out["ranks"].setdefault(rank, []).append(m)
                if rank == 0:
                    out["steps"].append(m)
            elif m.get("type") == "validation" and rank == 0:
                out["val"].append(m)
    return out


def ema(values, beta=0.9):
    """Debiased exponential moving average (the dashboard's smoothing)."""
    out, avg = [], 0.0
    for i, v in enumerate(values, 1):
        avg = beta * avg + (1 - beta) * v
        out.append(avg / (1 - beta ** i))
    return out


def summary(name, run):
    steps = run["steps"]
    last = [s["loss"] for s in steps[-20:]]
    times = [s["time"]["total"] for s in steps[1:]] or [steps[0]["time"]["total"]]
    extra = [s.get("extra", {}) for s in steps]
    return {
        "name": name,
        "train": statistics.mean(last) if last else float("nan"),
        "val": run["val"][-1]["loss"] if run["val"] else float("nan"),
        "s_per_step": statistics.median(times),
        "rss_mb": max(s.get("mem", {}).get("host_rss", 0) for s in steps) / 2**20,
        "state_mb": max(e.get("model_state_bytes", 0) for e in extra) / 2**20,
        "offload_mb": max(e.get("offloaded_bytes", 0) for e in extra) / 2**20,
        "peak_mb": max(e.get("model_state_peak_bytes", 0) for e in extra) / 2**20,
        # steady state: the first step includes the start-up broadcast
        "comm_mb": statistics.median(e.get("comm_wire_bytes", 0) for e in extra[1:] or extra) / 2**20,
    }


def curves(ax, runs, names, labels, key="loss", smooth=True, x="step"):
    for n, lab in zip(names, labels):
        s = runs[n]["steps"]
        ys = [m[key] for m in s if key in m]
        xs = [m["step"] + 1 for m in s if key in m]
        if x == "tokens":
            xs = [m["tokens"] * len(runs[n]["ranks"]) / 1e6 for m in s if key in m]
        ax.plot(xs, ema(ys) if smooth else ys, label=lab, lw=1.2)
    ax.set_xlabel("tokens seen (millions)" if x == "tokens" else "step")
    ax.set_ylabel({"loss": "train loss (smoothed)", "grad_norm": "gradient norm (before clipping)",
                   "lr": "learning rate"}.get(key, key))
    ax.legend(fontsize=8)


def save(fig, out, name):
    path = out / f"{name}.png"
    fig.savefig(path)
    plt.close(fig)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)")


def main():
    sweep, figs = Path(sys.argv[1]), Path(sys.argv[2])
    figs.mkdir(parents=True, exist_ok=True)
    runs = {p.name: read_run(p) for p in sorted((sweep / "runs").iterdir()) if p.is_dir()}
    runs = {k: v for k, v in runs.items() if v["steps"]}
    have = lambda *ns: all(n in runs for n in ns)  # noqa: E731

    # Each figure draws the runs of its group that exist (ONLY= runs a subset).
    lrs = [lr for lr in ["1e-4", "3e-4", "1e-3", "3e-3", "1e-2"] if have(f"lr-{lr}")]
    if len(lrs) >= 2:
        fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
        curves(a, runs, [f"lr-{lr}" for lr in lrs], [f"lr {lr}" for lr in lrs])
        a.set_ylim(top=8)
        ok = [lr for lr in lrs if runs[f"lr-{lr}"]["val"]]  # a diverged run has none
        b.plot([float(x) for x in ok], [runs[f"lr-{lr}"]["val"][-1]["loss"] for lr in ok], "o-")
        b.set_xscale("log")
        b.set_xlabel("optimizer.lr")
        b.set_ylabel("final validation loss")
        save(fig, figs, "lr")

    def loss_and_grad_norm(figure, named):
        """Loss (left) and gradient norm (right) of the runs of `named` that exist."""
        pairs = [(n, lab) for n, lab in named if have(n)]
        if len(pairs) < 2:
            return
        fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
        names, labels = [p[0] for p in pairs], [p[1] for p in pairs]
        curves(a, runs, names, labels)
        curves(b, runs, names, labels, key="grad_norm", smooth=False)
        b.set_yscale("log")
        save(fig, figs, figure)

    loss_and_grad_norm("warmup", [("warmup-0-lr-1e-2", "no warmup"), ("lr-1e-2", "warmup 20"),
                                  ("warmup-100-lr-1e-2", "warmup 100")])
    loss_and_grad_norm("clip", [("clip-0-lr-1e-2", "no clipping"), ("lr-1e-2", "clip 1.0"),
                                ("clip-0.25-lr-1e-2", "clip 0.25")])

    pairs = [(n, lab) for n, lab in [("batch-4", "batch 4"), ("lr-1e-3", "batch 16"),
                                     ("batch-64", "batch 64"),
                                     ("batch-4x4", "batch 4 x accumulation 4")] if have(n)]
    if len(pairs) >= 3:
        fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
        names, labels = [p[0] for p in pairs], [p[1] for p in pairs]
        curves(a, runs, names, labels)
        curves(b, runs, names, labels, x="tokens")
        for ax in (a, b):
            ax.set_ylim(top=8)
        save(fig, figs, "batch")

    if have("wd-0", "lr-1e-3", "wd-1.0"):
        fig, a = plt.subplots(1, 1, figsize=(4.5, 3.2))
        for n, lab in zip(["wd-0", "lr-1e-3", "wd-1.0"], ["weight decay 0", "0.1", "1.0"]):
            v = runs[n]["val"]
            a.plot([m["step"] + 1 for m in v], [m["loss"] for m in v], "o-", label=lab)
        a.set_xlabel("step")
        a.set_ylabel("validation loss")
        a.legend(fontsize=8)
        save(fig, figs, "weight_decay")

    if have("lr-1e-3", "bf16"):
        fig, a = plt.subplots(1, 1, figsize=(4.5, 3.2))
        curves(a, runs, ["lr-1e-3", "bf16"], ["fp32", "bf16 autocast"])
        a.set_ylim(top=8)
        save(fig, figs, "precision")

    zero = ["zero-0", "zero-1", "zero-2", "zero-3", "zero-3-offload", "zero-3-stream"]
    if have(*zero):
        fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
        s = [summary(n, runs[n]) for n in zero]
        labels = ["0", "1", "2", "3", "3 +\noffload", "3 +\nstreaming"]
        xs = range(len(zero))
        a.bar([x - 0.2 for x in xs], [r["state_mb"] for r in s], 0.4, label="on the device")
        a.bar([x + 0.2 for x in xs], [r["offload_mb"] for r in s], 0.4, label="offloaded to the host")
        a.set_xticks(list(xs), labels)
        a.set_xlabel("parallel.zero_stage")
        a.set_ylabel("model states per rank (MiB)")
        a.legend(fontsize=8)
        b.bar(list(xs), [r["comm_mb"] for r in s])
        b.set_xticks(list(xs), labels)
        b.set_xlabel("parallel.zero_stage")
        b.set_ylabel("sent per rank and step (MiB)")
        save(fig, figs, "zero")

    print("\n| run | train loss (last 20) | val loss | s/step | peak RSS MiB | model states MiB | "
          "offloaded MiB | sent MiB/step |")
    print("|---|---|---|---|---|---|---|---|")
    for n in runs:
        r = summary(n, runs[n])
        print(f"| {n} | {r['train']:.3f} | {r['val']:.3f} | {r['s_per_step']:.3f} | "
              f"{r['rss_mb']:.0f} | {r['state_mb']:.2f} | {r['offload_mb']:.2f} | {r['comm_mb']:.2f} |")


if __name__ == "__main__":
    main()
