#!/usr/bin/env bash
# shardlm's one entry point for people and CI:
#   ./shardlm.sh setup            install every dependency (Debian packages, npm)
#   ./shardlm.sh build [--debug|--asan] [--target T]...
#   ./shardlm.sh test [--quick|--asan] [-L label] [-R regex]   setup + build + every test tier
#   ./shardlm.sh fuzz [T[,T..]|all] [SECONDS]  libFuzzer targets (fuzz/README.md), SECONDS each
#                                  (SHARDLM_FUZZ_JOBS=N: N targets at once)
#   ./shardlm.sh demo             setup + build + prepare + train on 2 ranks + generate
#   ./shardlm.sh docs             the API reference (doxygen) into build/docs/html
#   ./shardlm.sh format [--check] clang-format (and the dashboard's prettier/eslint)
#   ./shardlm.sh run ARGS...      the built `shardlm` binary with ARGS
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"

log() { printf '\033[1;34m[shardlm]\033[0m %s\n' "$*"; }
die() { printf '\033[1;31m[shardlm] error:\033[0m %s\n' "$*" >&2; exit 1; }

# ---- setup ----------------------------------------------------------------------
DEB_PACKAGES=(
  # build tools
  cmake ninja-build ccache g++ pkg-config git ca-certificates
  # LibTorch (CPU) and an optimised BLAS for it (else the reference BLAS: ~10x slower)
  libtorch-dev libopenblas0-pthread
  # MPI, HDF5, Boost (Asio, Beast), JSON, TOML, CLI, fmt, regex, Unicode
  libopenmpi-dev openmpi-bin libhdf5-dev libboost-dev libboost-system-dev
  nlohmann-json3-dev libtomlplusplus-dev libcli11-dev libfmt-dev libpcre2-dev
  libutf8proc-dev zlib1g-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev python3-torch python3-numpy
  # tokenizer and data/: xxHash (piece cache, stable digest; document keys for
  # dedup and split, shard checksums); a real English corpus for its
  # tests and benchmarks (bench/tokenizer/make_corpus.sh) and spm_train as the
  # training baseline (the apt-get below installs without recommends)
  libxxhash-dev bible-kjv fortunes-min python3.11-doc sentencepiece
  # the dashboard's browser test (tests/dashboard) drives it through playwright-core
  chromium
  # the Rate tab's votes (monitor/ratings_store.h) and the browser test's look at them
  libsqlite3-dev sqlite3
  # launch: a real one-node SLURM cluster for the requeue/resume test
  # (tests/slurm/cluster.sh); brings slurmctld, slurmd, slurm-client, the basic
  # plugins (mpi_pmix among them) and liblua5.1, ~13 MB installed
  slurm-wlm munge
  # compress: `shardlm export --format onnx` writes the protobuf with libonnx-dev's
  # classes (LibTorch links the same libonnx_proto); python3-onnx runs
  # onnx.checker on the result in tests/compress (onnx_check.py)
  libonnx-dev libprotobuf-dev python3-onnx
  # the demo's request to `shardlm serve`
  curl
  # the API reference (./shardlm.sh docs) and the formatting check of the tree
  doxygen clang-format
  # fuzz/: libFuzzer and the sanitizer runtimes come with Debian's clang 14
  clang libclang-rt-14-dev
  # the tutorials (docs/tutorials, run by ctest docs.tutorials) read JSON with jq;
  # scripts/hparam_plot.py draws the hyperparameter guide's curves with matplotlib
  jq python3-matplotlib
)
SETUP_EXTRA=${SETUP_EXTRA:-}

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

cmd_setup() {
  local missing=()
  for p in "${DEB_PACKAGES[@]}" $SETUP_EXTRA; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${#missing[@]} Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    log "Debian packages: all present"
  fi
  if [ -f monitor/dashboard/package-lock.json ]; then
    if [ ! -d monitor/dashboard/node_modules ] || [ monitor/dashboard/package-lock.json -nt monitor/dashboard/node_modules ]; then
      log "installing dashboard packages (npm ci)"
      (cd monitor/dashboard && npm ci --no-audit --no-fund --loglevel=error)
    fi
  fi
  # the OpenAI SDK test of `shardlm serve` (tests/serve/sdk, ctest serve.sdk)
  if [ -f tests/serve/sdk/package-lock.json ]; then
    if [ ! -d tests/serve/sdk/node_modules ] || [ tests/serve/sdk/package-lock.json -nt tests/serve/sdk/node_modules ]; then
      log "installing the serve SDK test's packages (npm ci)"
      (cd tests/serve/sdk && npm ci --no-audit --no-fund --loglevel=error)
    fi
  fi
  if [ -x scripts/fetch_reference.sh ]; then scripts/fetch_reference.sh; fi
}

# ---- build ----------------------------------------------------------------------
BUILD_DIR=build
# The machine's cores: GNU nproc follows OMP_NUM_THREADS (often 1 in an MPI
# user's shell, which would make every build single-job).
cores() { env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc; }

cmd_build() {
  local type=Release extra=() targets=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --debug) type=Debug; BUILD_DIR=build-debug ;;
      # benchmarks measure nothing under ASan: the sanitizer build leaves them out.
      # -g1 keeps the line tables a report's stack needs and skips the full debug
      # information that costs LibTorch translation units compile and link time.
      --asan) type=RelWithDebInfo; BUILD_DIR=build-asan
              extra+=(-DSHARDLM_ASAN=ON -DSHARDLM_BUILD_BENCH=OFF
                      "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O2 -g1 -DNDEBUG"
                      "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O2 -g1 -DNDEBUG") ;;
      --target) [ $# -ge 2 ] || die "build: --target needs a target name"; targets+=(--target "$2"); shift ;;
      *) die "build: unknown option $1" ;;
    esac
    shift
  done
  export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
  export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/ccache} CCACHE_BASEDIR=${CCACHE_BASEDIR:-$ROOT}
  if [ ! -f "$BUILD_DIR/build.ninja" ]; then
    cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=$type "${extra[@]}"
  fi
  local jobs=${SHARDLM_JOBS:-$(cores)}
  log "building ${targets[*]:-everything} in $BUILD_DIR ($type, $jobs jobs)"
  cmake --build "$BUILD_DIR" -j "$jobs" "${targets[@]}"
  if [ -f monitor/dashboard/package.json ] && [ -d monitor/dashboard/node_modules ]; then
    (cd monitor/dashboard && npm run --silent build)
  fi
}

# ---- test -----------------------------------------------------------------------
cmd_test() {
  local ctest_args=() build_args=() asan=0
  while [ $# -gt 0 ]; do
    case "$1" in
      --quick) ctest_args+=(-L unit) ;;
      --asan) asan=1; build_args+=(--asan) ;;
      -L|-R|-E|-LE) ctest_args+=("$1" "$2"); shift ;;
      *) die "test: unknown option $1" ;;
    esac
    shift
  done
  cmd_setup
  cmd_build "${build_args[@]}"
  local reports_dir="$ROOT/$BUILD_DIR/sanitizer-reports"
  if [ "$asan" -eq 1 ]; then rm -rf "$reports_dir"; mkdir -p "$reports_dir"; sanitizer_env "$reports_dir"; fi
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
  export OMPI_MCA_rmaps_base_oversubscribe=${OMPI_MCA_rmaps_base_oversubscribe:-1}
  if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
  log "running tests"
  local rc=0 out="$BUILD_DIR/ctest-output.log"
  (cd "$BUILD_DIR" && ctest --output-on-failure -j "${SHARDLM_TEST_JOBS:-2}" "${ctest_args[@]}") 2>&1 | tee "$out" || true
  local total passed failed skipped
  total=$(sed -n 's/.*tests failed out of \([0-9]*\).*/\1/p' "$out" | tail -1)
  failed=$(sed -n 's/.* \([0-9]*\) tests failed out of.*/\1/p' "$out" | tail -1)
  skipped=$(grep -c '\*\*\*Skipped\|Not Run' "$out" || true)
  total=${total:-0}; failed=${failed:-1}; skipped=${skipped:-0}
  passed=$((total - failed - skipped))
  [ "$failed" -eq 0 ] && [ "$total" -gt 0 ] || rc=1
  if [ "$asan" -eq 1 ]; then
    # Any sanitizer report fails the run, also one from a test that passed
    # (a child process, an MPI rank whose report did not change the exit code).
    local reports
    reports=$(find "$reports_dir" -type f | wc -l)
    if [ "$reports" -gt 0 ]; then
      log "sanitizer reports: $reports files in $reports_dir; the first:"
      head -40 "$(find "$reports_dir" -type f | head -1)"
      rc=1; failed=$((failed + 1))
    else
      log "sanitizers: no report (ASan, UBSan, LeakSanitizer)"
    fi
  fi
  # Every fuzz target: its seeds and crash inputs, then a few seconds of
  # mutations, in the clang ASan+UBSan build (build-fuzz/, a second build of the
  # libraries): the short sanitizer tier of the test run. On by default (each
  # target ran 10 minutes clean from its seeds: docs/hardening.md);
  # SHARDLM_FUZZ_SMOKE=0 turns it off. The seeds and crash inputs also replay
  # through every target in the ordinary build (ctest fuzz.seeds,
  # fuzz.regressions).
  local smoke=${SHARDLM_FUZZ_SMOKE:-1}
  if [ ${#ctest_args[@]} -eq 0 ] && [ "$asan" -eq 0 ]; then
    if [ "$smoke" = 1 ]; then
      if fuzz_smoke; then passed=$((passed + 1)); else failed=$((failed + 1)); rc=1; fi
    else
      log "fuzz smoke: SKIPPED (SHARDLM_FUZZ_SMOKE=0)"
      skipped=$((skipped + 1))
    fi
  fi
  if [ -f monitor/dashboard/package.json ] && [ -d monitor/dashboard/node_modules ] && [ ${#ctest_args[@]} -eq 0 ] && [ "$asan" -eq 0 ]; then
    local vout="$BUILD_DIR/vitest-output.log" vp vf
    (cd monitor/dashboard && NO_COLOR=1 npx vitest run --reporter=default) 2>&1 | tee "$vout" || true
    # CI may force colour on: strip ANSI escapes before reading the counts
    local vplain
    vplain=$(sed 's/\x1b\[[0-9;]*m//g' "$vout")
    vp=$(sed -n 's/^ *Tests .*[^0-9]\([0-9][0-9]*\) passed.*/\1/p' <<<"$vplain" | tail -1)
    vf=$(sed -n 's/^ *Tests *\([0-9][0-9]*\) failed.*/\1/p' <<<"$vplain" | tail -1)
    [ -n "$vp$vf" ] || vf=1
    passed=$((passed + ${vp:-0})); failed=$((failed + ${vf:-0}))
    [ "${vf:-0}" -eq 0 ] || rc=1
  fi
  echo
  echo "shardlm test summary: ${passed} passed, ${failed} failed, ${skipped} skipped (ctest entries + fuzz smoke + vitest tests)"
  return $rc
}

# ---- docs and formatting ------------------------------------------------------------
cmd_docs() {
  command -v doxygen >/dev/null || cmd_setup
  scripts/check_docs.sh "$@"
}

cmd_format() {
  if [ "${1:-}" = "--check" ]; then scripts/check_format.sh; else scripts/check_format.sh --fix; fi
}

# ---- sanitizers and fuzzing -----------------------------------------------------
# ASan + UBSan + LeakSanitizer settings for `test --asan` and the fuzzers. MPI
# ranks inherit them from mpiexec. tests/sanitizers/*.supp lists what is
# suppressed and why (third-party libraries only).
# With a directory, reports go to files there (DIR/asan.PID, DIR/ubsan.PID), so
# that one from a passing test, a child process or an MPI rank is still seen.
sanitizer_env() {
  local logs=${1:-}
  export ASAN_OPTIONS="detect_leaks=1:detect_stack_use_after_return=0${logs:+:log_path=$logs/asan}"
  export LSAN_OPTIONS="suppressions=$ROOT/tests/sanitizers/lsan.supp:print_suppressions=0"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:suppressions=$ROOT/tests/sanitizers/ubsan.supp${logs:+:log_path=$logs/ubsan}"
}

FUZZ_DIR=build-fuzz
fuzz_targets() { sed -n '/^set(SHARDLM_FUZZ_TARGETS/,/)/p' fuzz/CMakeLists.txt | tr -d '()' | sed 's/set//; s/SHARDLM_FUZZ_TARGETS//' | xargs; }
fuzz_build() {
  command -v clang++ >/dev/null || die "fuzz: clang++ is missing (./shardlm.sh setup installs clang)"
  export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
  export CCACHE_DIR=${CCACHE_DIR:-$HOME/.cache/ccache} CCACHE_BASEDIR=${CCACHE_BASEDIR:-$ROOT}
  if [ ! -f "$FUZZ_DIR/build.ninja" ]; then
    CC=clang CXX=clang++ cmake -S . -B "$FUZZ_DIR" -G Ninja -DSHARDLM_FUZZ=ON \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only" \
      -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only" -DSHARDLM_BUILD_TESTS=OFF -DSHARDLM_BUILD_BENCH=OFF >/dev/null
  fi
  log "building the fuzz targets in $FUZZ_DIR (clang, libFuzzer, ASan+UBSan)"
  cmake --build "$FUZZ_DIR" --target shardlm_fuzzers -j "${SHARDLM_JOBS:-$(cores)}"
}

# fuzz_run TARGET SECONDS [libFuzzer flags...]: seeds (regenerated) + the
# target's growing corpus + its crash inputs under tests/fuzz/crashes/; a new
# crash is saved to build-fuzz/fuzz/crashes/. Prints "fuzz TARGET: ..." with
# executions, coverage and features; returns non-zero on a finding.
fuzz_run() {
  local t=$1 secs=$2; shift 2
  local bin="$FUZZ_DIR/fuzz/fuzz_$t" seeds="$FUZZ_DIR/fuzz/seeds/$t" corpus="$FUZZ_DIR/fuzz/corpus/$t"
  local found="$FUZZ_DIR/fuzz/crashes" logf="$FUZZ_DIR/fuzz/logs/$t.log" dict=()
  [ -x "$bin" ] || die "fuzz: no target '$t' (targets: $(fuzz_targets))"
  mkdir -p "$corpus" "$found" "$(dirname "$logf")"
  [ -f "fuzz/dict/$t.dict" ] && dict=(-dict="fuzz/dict/$t.dict")
  local inputs=("$corpus" "$seeds")
  [ -d "tests/fuzz/crashes/$t" ] && inputs+=("tests/fuzz/crashes/$t")
  sanitizer_env
  local rc=0
  SHARDLM_REFERENCE_DIR="$ROOT/.cache/reference/node_modules" "$bin" "${dict[@]}" \
    -max_total_time="$secs" -timeout=20 -rss_limit_mb=3072 -malloc_limit_mb=2048 \
    -artifact_prefix="$found/$t-" -print_final_stats=1 "$@" "${inputs[@]}" > "$logf" 2>&1 || rc=$?
  local execs cov ft
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logf" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$logf" | tail -1 | cut -d' ' -f2)
  ft=$(grep -o 'ft: [0-9]*' "$logf" | tail -1 | cut -d' ' -f2)
  if [ "$rc" -ne 0 ]; then
    printf 'fuzz %-20s FAILED after %s runs (log %s):\n' "$t" "${execs:-?}" "$logf"
    grep -m 1 -A 12 "ERROR: \|runtime error:\|oracle failed\|uncaught exception\|deadly signal" "$logf" || tail -20 "$logf"
    ls -t "$found/$t-"* 2>/dev/null | head -1 | sed 's/^/  input saved: /'
    return 1
  fi
  printf 'fuzz %-20s ok: %s s, %s executions, coverage %s edges, %s features, corpus %s files\n' \
    "$t" "$secs" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$(find "$corpus" -type f | wc -l)"
}

# The seed writer starts MPI (its checkpoints are written through a
# communicator), and Open MPI leaves allocations behind in components it has
# already unloaded, which LeakSanitizer cannot attribute or suppress: leak
# checking is off for this one tool (the fuzz targets keep it).
fuzz_seeds() {
  rm -rf "$FUZZ_DIR/fuzz/seeds"
  ASAN_OPTIONS=detect_leaks=0 OMPI_MCA_plm=isolated "$FUZZ_DIR/fuzz/fuzz_make_seeds" "$FUZZ_DIR/fuzz/seeds" "$ROOT" >/dev/null ||
    die "fuzz: writing the seed corpora failed"
}

cmd_fuzz() {
  local which=${1:-all} secs=${2:-60} failed=0
  shift $(( $# > 2 ? 2 : $# )) || true
  cmd_setup >/dev/null
  fuzz_build
  fuzz_seeds
  local targets
  IFS=, read -r -a targets <<<"$which"  # one target, a comma-separated list, or all
  [ "$which" = all ] && read -r -a targets <<<"$(fuzz_targets)"
  # SHARDLM_FUZZ_JOBS=N fuzzes N targets at once (one core each)
  local jobs=${SHARDLM_FUZZ_JOBS:-1} pids=()
  for t in "${targets[@]}"; do
    if [ "$jobs" -le 1 ]; then
      fuzz_run "$t" "$secs" "$@" || failed=1
      continue
    fi
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 1; done
    fuzz_run "$t" "$secs" "$@" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || failed=1; done
  return $failed
}

# The smoke run of `./shardlm.sh test`: every target replays its seeds and
# crash inputs, then mutates for SHARDLM_FUZZ_SMOKE_S / (number of targets)
# seconds (30 s in all by default), one target at a time.
fuzz_smoke() {
  local targets total=${SHARDLM_FUZZ_SMOKE_S:-30} failed=0
  command -v clang++ >/dev/null || { log "fuzz smoke: no clang++, not run"; return 1; }
  read -r -a targets <<<"$(fuzz_targets)"
  local each=$(( total / ${#targets[@]} ))
  [ "$each" -ge 1 ] || each=1
  fuzz_build > "$BUILD_DIR/fuzz-build.log" 2>&1 || { tail -30 "$BUILD_DIR/fuzz-build.log"; return 1; }
  fuzz_seeds
  log "fuzz smoke: ${#targets[@]} targets, ${each} s of mutations each"
  # a fixed seed: a finding here replays with the same command
  for t in "${targets[@]}"; do fuzz_run "$t" "$each" -seed=1 || failed=1; done
  return $failed
}

# ---- demo -----------------------------------------------------------------------
cmd_demo() {
  cmd_setup
  # only the binary the demo runs: the tests and benchmarks are built by
  # `./shardlm.sh test` (on a fresh clone this halves the wait for the first step)
  cmd_build --target shardlm
  export OMPI_MCA_rmaps_base_oversubscribe=${OMPI_MCA_rmaps_base_oversubscribe:-1}
  if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
  local bin="$BUILD_DIR/launcher/shardlm" run=runs/demo corpus=.cache/corpus/english.txt
  log "shardlm info on 2 MPI ranks"
  mpirun -n 2 "$bin" info
  log "corpus: ~10 MB of English from Debian packages (bible-kjv, fortunes, Python's docs)"
  bench/tokenizer/make_corpus.sh
  mkdir -p "$run"
  if [ ! -s "$run/tokenizer.json" ]; then
    log "training a 4096-token BPE tokenizer"
    "$bin" tokenizer train --input "$corpus" --vocab-size 4096 --out "$run/tokenizer.json"
  fi
  log "preparing the corpus into HDF5 shards"
  "$bin" prepare --input "$corpus" --output "$run/data" --tokenizer "$run/tokenizer.json" \
    'prepare.txt_documents="line"' prepare.val_fraction=0.01
  log "training on 2 MPI ranks (ZeRO-2); dashboard live at http://127.0.0.1:8765/ (control token: $run/monitor.token)"
  local resume=()
  [ -f "$run/checkpoints/latest" ] && resume=(--resume latest)
  mpirun -n 2 "$bin" train --config configs/demo.toml "${resume[@]}" "$@"
  log "exporting the trained model to $run/model"
  "$bin" export --ckpt "$run" --out "$run/model" --tokenizer "$run/tokenizer.json"
  if "$bin" generate --help >/dev/null 2>&1; then
    log "generating continuations"
    for prompt in "In the beginning" "And the LORD said unto Moses" "The quick brown fox"; do
      "$bin" generate --model "$run/model" --prompt "$prompt" --strategy sample --temperature 0.8 \
        --top-p 0.95 --max-new-tokens 48 --seed 1
      echo
    done
  fi
  log "evaluating: validation perplexity, multiple choice, facts, continuations (configs/eval/suite.toml)"
  "$bin" eval run --model "$run/model" --suite configs/eval/suite.toml \
    --set 'suite.tasks=["val_ppl","choice","facts","continue"]'
  log "quantising to INT8 and comparing with the fp32 model ($run/compare.md)"
  "$bin" compress quantize --model "$run/model" --out "$run/model-int8" --method int8
  "$bin" eval compare --models "$run/model,$run/model-int8" --labels fp32,int8 \
    --suite configs/eval/suite.toml --set 'suite.tasks=["val_ppl","choice"]' --out "$run/compare.md"
  sed -n '/^## val_ppl/,/^## choice/p' "$run/compare.md" | sed '$d'
  log "serving the model over HTTP (OpenAI-style /v1/completions) for one request"
  "$bin" serve --model "$run/model" --port 0 > "$run/serve.log" 2>&1 &
  local spid=$! url=
  for _ in $(seq 100); do
    url=$(sed -n 's/.* listening on \(http[^ ]*\).*/\1/p' "$run/serve.log")
    [ -n "$url" ] && break
    sleep 0.2
  done
  if [ -n "$url" ]; then
    curl -sS "$url/v1/completions" -H 'Content-Type: application/json' \
      -d '{"prompt": "And God said", "max_tokens": 32, "temperature": 0}'
    echo
  else
    cat "$run/serve.log"
  fi
  kill -TERM "$spid" 2>/dev/null || true
  wait "$spid" 2>/dev/null || true
  log "done. Replay the run in the dashboard: $bin monitor --run-dir $run --port 8765"
}

cmd=${1:-help}
shift || true
case "$cmd" in
  setup) cmd_setup "$@" ;;
  build) cmd_build "$@" ;;
  test) cmd_test "$@" ;;
  demo) cmd_demo "$@" ;;
  docs) cmd_docs "$@" ;;
  format) cmd_format "$@" ;;
  fuzz) cmd_fuzz "$@" ;;
  run) exec "$BUILD_DIR/launcher/shardlm" "$@" ;;
  help|-h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) die "unknown command '$cmd' (setup, build, test, fuzz, demo, docs, format, run)" ;;
esac
