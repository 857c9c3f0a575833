#!/usr/bin/env python3
"""Runs the documentation like code.

Tutorials mark the shell blocks a reader runs with the info string `bash run`;
the block that follows one, when its info string is `text expect`, lists lines
that the output (stdout and stderr) must contain, one per line ("..." lines are
skipped). Every runnable block of a page runs in order, in one fresh working
directory per page, with `bash -eo pipefail`; the environment gives:

  SHARDLM   the built binary          REPO   the repository root
  QUICK     1 in quick mode (CI)      STEPS  training steps (quick: few)

Pages may use ${STEPS} and ${QUICK:-} so that the commands a reader copies
stay complete and the test stays short.

Also checks that every relative link between Markdown pages (README.md,
docs/**/*.md, folder READMEs) resolves to a file and, with #anchor, a heading.

  scripts/doc_tests.py [--quick] [--only NAME] [--keep] [--links-only]
Exit status 0 when everything passed; prints one line per block and a summary.
"""
import argparse
import os
import re
import shutil
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
    """[(line, script, expected lines)] of a page."""
    bs, out = blocks(path.read_text()), []
    for k, (info, body, line) in enumerate(bs):
        if info.split()[:2] != ["bash", "run"]:
            continue
        expect = []
        if k + 1 < len(bs) and bs[k + 1][0].split()[:2] == ["text", "expect"]:
            expect = [e.strip() for e in bs[k + 1][1].splitlines()
                      if e.strip() and e.strip() != "..."]
        out.append((line, body, expect))
    return out


def run_page(path, env, keep, timeout):
    steps = runnable(path)
    if not steps:
        return 0, 0
    work = Path(tempfile.mkdtemp(prefix=f"shardlm_doc_{path.stem}_"))
    failed = 0
    for line, script, expect in steps:
        t0 = time.time()
        p = subprocess.run(["bash", "-eo", "pipefail", "-c", script], cwd=work, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           errors="replace", timeout=timeout)
        missing = [e for e in expect if e not in p.stdout]
        ok = p.returncode == 0 and not missing
        where = f"{path.relative_to(ROOT)}:{line}"
        print(f"{'ok  ' if ok else 'FAIL'} {where} ({time.time() - t0:.1f} s)", flush=True)
        if not ok:
            failed += 1
            print(f"  exit status {p.returncode}; missing from the output: {missing}")
            print("  ---- output (last 40 lines) ----")
            for l in p.stdout.splitlines()[-40:]:
                print("  | " + l)
            break  # later blocks build on this one
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
    a = ap.parse_args()
    broken = check_links()
    if a.links_only:
        return 1 if broken else 0
    binary = Path(a.build) / "launcher" / "shardlm"
    if not binary.exists():
        print(f"doc_tests: {binary} is not built (./shardlm.sh build)")
        return 1
    env = dict(os.environ, SHARDLM=str(binary), REPO=str(ROOT),
               QUICK="1" if a.quick else "", STEPS="20" if a.quick else "300",
               OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    env["PATH"] = f"{binary.parent}:{env['PATH']}"
    total = failed = 0
    for page in sorted(ROOT.glob("docs/tutorials/*.md")):
        if a.only and a.only not in page.name:
            continue
        n, f = run_page(page, env, a.keep, a.timeout)
        total, failed = total + n, failed + f
    print(f"doc blocks: {total} run, {failed} failed; {broken} broken links")
    return 1 if failed or broken else 0


if __name__ == "__main__":
    sys.exit(main())
