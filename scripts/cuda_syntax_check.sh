#!/usr/bin/env bash
# Compiles the code that only a CUDA build sees (#ifdef SHARDLM_WITH_CUDA) on
# this CPU machine, as far as a syntax check goes: every source that mentions
# SHARDLM_WITH_CUDA, with its own flags from <build>/compile_commands.json (a
# unity batch's flags for a source compiled in one)
# plus -DSHARDLM_WITH_CUDA -DSHARDLM_WITH_NCCL, CUDA's headers and LibTorch's
# c10/cuda headers (Debian ships them; its one generated header,
# cuda_cmake_macros.h, is stood in for). A compile error here would break the
# build on the GPU machine, where device time is scarce. Code behind
# TORCH_VERSION_MAJOR >= 2 is not seen (Debian's LibTorch is 1.13).
# Usage: scripts/cuda_syntax_check.sh <build dir> [cuda include dir]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD=$(cd "${1:?build dir}" && pwd)
CUDA_INC=${2:-/usr/local/cuda/include}
[ -f "$CUDA_INC/cuda_runtime.h" ] || { echo "SKIPPED: no CUDA headers in $CUDA_INC"; exit 0; }
[ -f "$BUILD/compile_commands.json" ] || { echo "no $BUILD/compile_commands.json"; exit 1; }
STUB=$(mktemp -d)
trap 'rm -rf "$STUB"' EXIT
mkdir -p "$STUB/c10/cuda/impl"
printf '#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n' >"$STUB/c10/cuda/impl/cuda_cmake_macros.h"
mapfile -t files < <(cd "$ROOT" && grep -rl 'SHARDLM_WITH_CUDA' --include='*.cpp' core data model parallel runtime launcher tests bench 2>/dev/null | sort)
echo "checking ${#files[@]} sources: ${files[*]}"
python3 - "$BUILD/compile_commands.json" "$ROOT" "$STUB" "$CUDA_INC" "${files[@]}" <<'PY'
import json, shlex, subprocess, sys, os
db, root, stub, cuda_inc, files = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]
entries = {os.path.realpath(e["file"]): e for e in json.load(open(db))}
# Unity builds (SHARDLM_UNITY) compile a batch file that #includes the sources:
# a source there is checked alone, with its batch's flags.
# The batches that hold one of them are checked too: a name that CUDA code
# defines twice in one library only clashes there.
wanted = {os.path.realpath(os.path.join(root, f)) for f in files}
batches = []
for path, e in list(entries.items()):
    if "/Unity/" in path:
        held = []
        for line in open(path):
            if line.startswith("#include \""):
                held.append(line.split('"')[1])
                entries.setdefault(os.path.realpath(held[-1]), dict(e, file=held[-1]))
        if wanted & {os.path.realpath(h) for h in held}:
            batches.append(path)
files = files + batches
bad = 0
for f in files:
    e = entries.get(os.path.realpath(os.path.join(root, f)))
    if e is None:
        print(f"{f}: not in compile_commands.json"); bad += 1; continue
    args = shlex.split(e["command"]) if "command" in e else list(e["arguments"])
    out, skip = [], False
    for a in args:  # drop the output, the compile step, ccache and the precompiled header
        if skip: skip = False; continue
        if a in ("-o", "-include", "-MF", "-MT"): skip = True; continue
        if a in ("-c", "-MD", "-MMD", "-Winvalid-pch") or a.endswith("ccache"): continue
        out.append(a)
    out = [out[0], "-fsyntax-only", "-DSHARDLM_WITH_CUDA", "-DSHARDLM_WITH_NCCL",
           f"-I{stub}", f"-I{cuda_inc}"] + out[1:-1] + [e["file"]]
    r = subprocess.run(out, cwd=e["directory"], capture_output=True, text=True)
    print(f"{f}: {'ok' if r.returncode == 0 else 'ERROR'}", flush=True)
    if r.returncode:
        bad += 1
        print(r.stderr[-4000:])
sys.exit(1 if bad else 0)
PY
