#!/usr/bin/env python3
"""Runs the documentation like code.

Tutorials mark the shell blocks a reader runs with the info string `bash run`
(`bash run error`: the block must fail, for pages that show an error message);
the block that follows one, when its info string is `text expect`, shows the
output a reader sees, and the output (stdout and stderr) must contain each of
its lines, in any order, with these allowances, so that a page can show the
output of a full run while the test makes a short one:
  - every number matches any number (4.8123, 21.4k, 300, 1e-3, 12:05);
  - every run of 8 or more hex digits matches any (hashes, tokens);
  - runs of blanks match any blanks (tables whose widths change);
  - "…" matches anything; a line that is only "..." is skipped.
Every runnable block of a page runs in order, in one fresh working directory
per page, with `bash -eo pipefail`, in a process group of its own that is
killed when the block ends (servers a block forgot). The environment gives:

  SHARDLM   the built binary (also first on PATH as `shardlm`)
  REPO      the repository root
  QUICK     1 in quick mode (CI), else empty
  STEPS     training steps: 20 quick, 300 otherwise
  CORPUS_MB megabytes of the English corpus a page uses: 1 quick, 10 otherwise

and, as ./shardlm.sh test does, OMP_NUM_THREADS=1, OMP_WAIT_POLICY=PASSIVE and
OpenMPI's settings for oversubscription and (as root) running as root.
Pages use ${STEPS}, ${CORPUS_MB} and ${QUICK:-} so that the commands a reader
copies stay complete and the test stays short.

Also checks that every relative link between Markdown pages (README.md,
docs/**/*.md, folder READMEs) resolves to a file and, with #anchor, a heading.

  scripts/doc_tests.py [--quick] [--only NAME] [--keep] [--outputs DIR [--no-expect]] [--links-only]
Exit status 0 when everything passed; prints one line per block, the time of
each page and a summary.
"""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^(```+)\s*([^`]*)$")


def blocks(text):
    """(info, body, line) of every fenced block."""
    out, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, info, start = m.group(1), m.group(2).strip(), i + 1
        j = i + 1
        while j < len(lines) and not lines[j].startswith(fence):
            j += 1
        out.append((info, "\n".join(lines[i + 1:j]), start))
        i = j + 1
    return out


def runnable(path):
    """[(line, script, expected lines, must fail)] of a page."""
    bs, out = blocks(path.read_text()), []
    for k, (info, body, line) in enumerate(bs):
        words = info.split()
        if words[:2] != ["bash", "run"]:
            continue
        expect = []
        if k + 1 < len(bs) and bs[k + 1][0].split()[:2] == ["text", "expect"]:
            expect = [e.strip() for e in bs[k + 1][1].splitlines()
                      if e.strip() and e.strip() != "..."]
        out.append((line, body, expect, words[2:3] == ["error"]))
    return out


NUMBER = r"[-+]?\d[\d.,:]*(?:[eE][-+]?\d+)?[kMGT]?"
HEX = re.compile(r"(?<![0-9A-Za-z])[0-9a-f]{8,}(?![0-9A-Za-z])")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def pattern(expected):
    """The regex an expected line stands for (see the module's doc)."""
    out, pos = [], 0
    token = re.compile(r"(?P<hex>(?<![0-9A-Za-z])[0-9a-f]{8,}(?![0-9A-Za-z]))"
                       r"|(?P<num>\d[\d.,:]*(?:[eE][-+]?\d+)?[kMGT]?)"
                       r"|(?P<any>…)|(?P<blank>\s+)")
    for m in token.finditer(expected):
        out.append(re.escape(expected[pos:m.start()]))
        if m.group("hex"):
            out.append(r"[0-9a-f]+")
        elif m.group("num"):
            out.append(NUMBER)
        elif m.group("any"):
            out.append(r".*")
        else:
            out.append(r"\s+")
        pos = m.end()
    out.append(re.escape(expected[pos:]))
    return re.compile("".join(out))


def output_lines(text):
    """The lines a reader sees: escapes removed, a redrawn line (\\r) split."""
    text = ANSI.sub("", text)
    return [l for raw in text.splitlines() for l in raw.split("\r")]


def missing_lines(expect, output):
    lines = output_lines(output)
    return [e for e in expect if not any(pattern(e).search(l) for l in lines)]


def run_page(path, env, keep, timeout, outputs, check_expect=True):
    steps = runnable(path)
    if not steps:
        return 0, 0
    work = Path(tempfile.mkdtemp(prefix=f"shardlm_doc_{path.stem}_"))
    failed, t_page = 0, time.time()
    for line, script, expect, must_fail in steps:
        t0 = time.time()
        p = subprocess.Popen(["bash", "-eo", "pipefail", "-c", script], cwd=work, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             errors="replace", start_new_session=True)
        try:
            out, _ = p.communicate(timeout=timeout)
            rc = p.returncode
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            out, _ = p.communicate()
            rc, out = -1, out + f"\n[doc_tests: timed out after {timeout} s]"
        try:  # whatever the block left running (a server in the background)
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if outputs:
            Path(outputs).mkdir(parents=True, exist_ok=True)
            (Path(outputs) / f"{path.stem}-{line}.txt").write_text(
                "\n".join(output_lines(out)) + "\n")
        missing = missing_lines(expect, out) if check_expect else []
        ok = (rc != 0 if must_fail else rc == 0) and not missing
        where = f"{path.relative_to(ROOT)}:{line}"
        print(f"{'ok  ' if ok else 'FAIL'} {where} ({time.time() - t0:.1f} s)", flush=True)
        if not ok:
            failed += 1
            want = "a failure" if must_fail else "0"
            print(f"  exit status {rc} (expected {want}); missing from the output: {missing}")
            print("  ---- output (last 40 lines) ----")
            for l in output_lines(out)[-40:]:
                print("  | " + l)
            break  # later blocks build on this one
    print(f"     {path.relative_to(ROOT)}: {time.time() - t_page:.1f} s", flush=True)
    if keep or failed:
        print(f"  work directory kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return len(steps), failed


def slug(heading):
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def check_links():
    pages = [ROOT / "README.md"] + sorted(ROOT.glob("docs/**/*.md")) + sorted(
        p for p in ROOT.glob("*/README.md") if "node_modules" not in p.parts)
    pages += sorted(p for p in ROOT.glob("*/*/README.md") if "node_modules" not in p.parts)
    bad = []
    link = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
    for page in pages:
        text = page.read_text()
        in_code = False
        for n, l in enumerate(text.splitlines(), 1):
            if l.startswith("```"):
                in_code = not in_code
            if in_code:
                continue
            for target in link.findall(l):
                if re.match(r"^[a-z]+://", target) or target.startswith("mailto:"):
                    continue
                file, _, anchor = target.partition("#")
                dest = page if not file else (page.parent / file).resolve()
                if not dest.exists():
                    bad.append(f"{page.relative_to(ROOT)}:{n}: {target} (no such file)")
                    continue
                if anchor and dest.suffix == ".md":
                    heads = {slug(h) for h in re.findall(r"^#+\s+(.*)$", dest.read_text(), re.M)}
                    if anchor not in heads:
                        bad.append(f"{page.relative_to(ROOT)}:{n}: {target} (no heading #{anchor})")
    for b in bad:
        print("broken link: " + b)
    print(f"links: {len(pages)} pages, {len(bad)} broken")
    return len(bad)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="CI mode: few training steps")
    ap.add_argument("--only", help="run only pages whose file name contains this")
    ap.add_argument("--keep", action="store_true", help="keep the work directories")
    ap.add_argument("--links-only", action="store_true")
    ap.add_argument("--build", default=os.environ.get("SHARDLM_BUILD", str(ROOT / "build")))
    ap.add_argument("--timeout", type=int, default=900, help="seconds per block")
    ap.add_argument("--outputs", help="write each block's output to DIR/PAGE-LINE.txt")
    ap.add_argument("--no-expect", action="store_true",
                    help="check exit statuses only (with --outputs: to write a page's outputs)")
    a = ap.parse_args()
    broken = check_links()
    if a.links_only:
        return 1 if broken else 0
    binary = Path(a.build) / "launcher" / "shardlm"
    if not binary.exists():
        print(f"doc_tests: {binary} is not built (./shardlm.sh build)")
        return 1
    # The pages show what a reader's clean shell gives: `shardlm launch` forwards
    # every SHARDLM_*, NCCL_* and SLURM_* variable (and CUDA_VISIBLE_DEVICES) to
    # the ranks and prints them in its mpirun line, so one set in the caller's
    # shell (SHARDLM_JOBS for the build, say) would change the pages' output.
    forwarded = ("SHARDLM_", "NCCL_", "SLURM_", "CUDA_VISIBLE_DEVICES")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(forwarded)}
    env = dict(clean, SHARDLM=str(binary), REPO=str(ROOT),
               QUICK="1" if a.quick else "", STEPS="20" if a.quick else "300",
               CORPUS_MB="1" if a.quick else "10")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # what shardlm would restart itself with
    env.setdefault("OMPI_MCA_rmaps_base_oversubscribe", "1")
    if os.geteuid() == 0:
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    env["PATH"] = f"{binary.parent}:{env['PATH']}"
    total = failed = 0
    t0 = time.time()
    for page in sorted(ROOT.glob("docs/tutorials/*.md")):
        if a.only and a.only not in page.name:
            continue
        n, f = run_page(page, env, a.keep, a.timeout, a.outputs, not a.no_expect)
        total, failed = total + n, failed + f
    print(f"doc blocks: {total} run, {failed} failed, in {time.time() - t0:.0f} s; "
          f"{broken} broken links")
    return 1 if failed or broken else 0


if __name__ == "__main__":
    sys.exit(main())
