#!/usr/bin/env bash
# Makes the folder that travels with a call to the lent GPU machine (the
# `run` tool's carry: .gpu), for scripts/gpu_check.sh:
#   .gpu/debs/*.deb   Debian 12 packages that the GPU image (Ubuntu, PyTorch's
#                     CUDA build, no MPI/HDF5/Boost) may lack: the build
#                     dependencies of the targets gpu_check.sh builds, plus the
#                     shared libraries those need at run time (the closure of
#                     their ELF NEEDED entries, computed here with readelf).
#                     gpu_check.sh unpacks only what the image does not have.
#   .gpu/fixture/     the trainer's data fixture (tokenizer.json and the HDF5
#                     shards of tests/runtime/make_fixture.sh), when --shardlm
#                     or --fixture is given: the GPU image has no corpus.
#   .gpu/MANIFEST     package, version, bytes; why each root package is there.
# Everything must fit in the call's 64 MiB together with the working tree:
# the script prints the size and fails above --limit-mib (default 56).
#
# Usage: scripts/gpu_carry.sh [--out DIR] [--shardlm BIN | --fixture DIR] [--limit-mib N]
# Needs apt-get's package lists (apt-get update) and this machine's dpkg
# database, which maps a missing soname to its package.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUTDIR="$ROOT/.gpu"
SHARDLM=""
FIXTURE=""
LIMIT_MIB=56
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUTDIR=$2; shift ;;
    --shardlm) SHARDLM=$2; shift ;;
    --fixture) FIXTURE=$2; shift ;;
    --limit-mib) LIMIT_MIB=$2; shift ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu_carry: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
log() { echo "[gpu_carry] $*"; }

# ---- what the GPU build needs ---------------------------------------------------------
# Root packages, each for a find_package/pkg_check_modules of CMakeLists.txt
# or a tool gpu_check.sh runs. Headers-only libraries travel the same way.
ROOTS=(
  libopenmpi-dev openmpi-bin openmpi-common  # MPI (find_package(MPI)), mpirun for 2-rank runs
  libhdf5-dev hdf5-helpers                   # HDF5 (h5cc drives FindHDF5), data shards, checkpoints
  libssl-dev libcurl4-openssl-dev libaec-dev zlib1g-dev  # libraries on h5cc's link line
  libpcre2-dev libutf8proc-dev libxxhash-dev # tokenizer, data, ckpt (pkg-config)
  libfmt-dev libtomlplusplus-dev libcli11-dev nlohmann-json3-dev  # header-only
  libboost1.74-dev                           # Beast/Asio headers (monitor, serve)
  libgtest-dev libgmock-dev libbenchmark-dev # tests and bench_train_step's build
)
# Libraries the image is built on: never carried (mixing glibc or libstdc++
# versions breaks every program).
BASE_PKGS=(libc6 libstdc++6 libgcc-s1)
# Only Open MPI's optional transport plugins (InfiniBand, OFI, UCX, PSM) need
# these; a plugin whose library is missing is not loaded (gpu_check.sh selects
# the shared-memory and TCP transports), so they stay home.
OPTIONAL_PKGS=(libfabric1 libucx0 libpsm2-2 libpsm-infinipath1 libibverbs1 librdmacm1
  libnl-3-200 libnl-route-3-200 libxnvctrl0 libgfortran5 libopenmpi3-fortran)

contains() { local x=$1; shift; for y in "$@"; do [ "$x" = "$y" ] && return 0; done; return 1; }

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
DEBS="$WORK/debs"
mkdir -p "$DEBS" "$WORK/x"

download() {  # download <pkg>...: into $DEBS, retrying once after apt-get update
  (cd "$DEBS" && apt-get download -q "$@" >/dev/null 2>"$WORK/apt.err") && return 0
  if [ "$(id -u)" -eq 0 ]; then
    log "apt-get download failed; refreshing the package lists once"
    apt-get update -qq >/dev/null 2>&1 || true
    (cd "$DEBS" && apt-get download -q "$@" >/dev/null 2>"$WORK/apt.err") && return 0
  fi
  cat "$WORK/apt.err" >&2
  echo "gpu_carry: cannot download $* (apt-get update first?)" >&2
  exit 1
}

# sonames provided by the base packages (never looked for in the closure)
declare -A BASE_SONAMES=()
while read -r f; do BASE_SONAMES[$(basename "$f")]=1; done < <(dpkg -L "${BASE_PKGS[@]}" 2>/dev/null |
  grep -E '/lib[^/]*\.so(\.[0-9]+)*$')
BASE_SONAMES[ld-linux-x86-64.so.2]=1
BASE_SONAMES[linux-vdso.so.1]=1

# ---- the closure --------------------------------------------------------------------------
declare -A HAVE=()  # packages downloaded
queue=("${ROOTS[@]}")
round=0
while [ ${#queue[@]} -gt 0 ]; do
  round=$((round + 1))
  download "${queue[@]}"
  for p in "${queue[@]}"; do HAVE[$p]=1; done
  # unpack everything downloaded so far, then find what the ELF files need
  for d in "$DEBS"/*.deb; do
    stamp="$WORK/x/.$(basename "$d")"
    [ -e "$stamp" ] || { dpkg-deb -x "$d" "$WORK/x"; touch "$stamp"; }
  done
  # A library is provided when its file is there; a symbolic link counts only
  # when it resolves inside the unpacked tree. A dev package's dangling
  # libfoo.so -> libfoo.so.N.M names its runtime library: that is needed too.
  declare -A provided=() missing=()
  while read -r f; do provided[$(basename "$f")]=1; done < <(find "$WORK/x" -path "$WORK/x/usr/include" -prune -o -type f -name '*.so*' -print)
  while read -r l; do
    t=$(readlink "$l")
    case "$t" in /*) abs="$WORK/x$t" ;; *) abs="$(dirname "$l")/$t" ;; esac
    if [ -e "$abs" ] && [[ "$(readlink -f "$abs")" == "$WORK/x"* ]]; then
      provided[$(basename "$l")]=1
    else  # the path the target has once installed
      missing[$(realpath -m "${abs#"$WORK/x"}")]=1
    fi
  done < <(find "$WORK/x" -path "$WORK/x/usr/include" -prune -o -type l -name '*.so*' -print)
  while read -r so; do
    [ -n "${provided[$so]:-}${BASE_SONAMES[$so]:-}" ] || missing[$so]=1
  done < <(find "$WORK/x" -path "$WORK/x/usr/include" -prune -o -type f \( -name '*.so*' -o -path '*/bin/*' \) -exec readelf -d {} + 2>/dev/null |
           sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort -u)
  # missing sonames and link targets -> local paths -> their packages (one dpkg -S)
  ldconfig -p >"$WORK/ldconfig.txt"
  : >"$WORK/paths"
  for so in "${!missing[@]}"; do
    case "$so" in
      /*) path=$so ;;  # a dangling link's target
      *) path=$(awk -v s="$so" '$1 == s && /x86-64/ {print $NF}' "$WORK/ldconfig.txt" | head -1) ;;
    esac
    [ -n "$path" ] || { echo "gpu_carry: no local library provides $so (needed by a carried package)" >&2; exit 1; }
    real=$(readlink -f "$path")
    # dpkg knows the path the package ships (/lib or /usr/lib on Debian 12)
    printf '%s\n%s\n%s\n' "$real" "${real#/usr}" "$path" >>"$WORK/paths"
  done
  queue=()
  if [ -s "$WORK/paths" ]; then
    declare -A owner=()
    while IFS= read -r line; do
      owner[${line#*: }]=${line%%:*}
    done < <(sort -u "$WORK/paths" | xargs dpkg -S 2>/dev/null | sed 's/:[a-z0-9]*: /: /')
    for so in "${!missing[@]}"; do
      case "$so" in /*) path=$so ;; *) path=$(awk -v s="$so" '$1 == s && /x86-64/ {print $NF}' "$WORK/ldconfig.txt" | head -1) ;; esac
      real=$(readlink -f "$path")
      pkg=${owner[$real]:-${owner[${real#/usr}]:-${owner[$path]:-}}}
      if [ -z "$pkg" ]; then
        case "$so" in
          /*) log "warning: nothing here provides $so (a dev package's link to it stays dangling)"; continue ;;
          *) echo "gpu_carry: no package owns $path ($so)" >&2; exit 1 ;;
        esac
      fi
      if contains "$pkg" "${BASE_PKGS[@]}" "${OPTIONAL_PKGS[@]}" || [ -n "${HAVE[$pkg]:-}" ]; then continue; fi
      contains "$pkg" "${queue[@]}" || queue+=("$pkg")
    done
    unset owner
  fi
  unset provided missing
  [ ${#queue[@]} -eq 0 ] || log "round $round: the carried libraries also need ${queue[*]}"
  [ $round -lt 10 ] || { echo "gpu_carry: the closure does not converge" >&2; exit 1; }
done

# ---- the folder -------------------------------------------------------------------------------
rm -rf "$OUTDIR/debs"
mkdir -p "$OUTDIR/debs"
cp "$DEBS"/*.deb "$OUTDIR/debs/"
{
  echo "# scripts/gpu_carry.sh on $(date -u +%Y-%m-%dT%H:%MZ), $(grep PRETTY_NAME /etc/os-release | cut -d= -f2)"
  echo "# roots: ${ROOTS[*]}"
  for d in "$OUTDIR"/debs/*.deb; do
    printf '%s %s %s\n' "$(dpkg-deb -f "$d" Package)" "$(dpkg-deb -f "$d" Version)" "$(stat -c %s "$d")"
  done
} >"$OUTDIR/MANIFEST"

if [ -n "$SHARDLM" ] && [ -z "$FIXTURE" ]; then
  FIXTURE="$WORK/fixture"
  "$ROOT/tests/runtime/make_fixture.sh" "$SHARDLM" "$FIXTURE" >/dev/null
fi
if [ -n "$FIXTURE" ]; then
  [ -s "$FIXTURE/tokenizer.json" ] && [ -s "$FIXTURE/data/manifest.json" ] ||
    { echo "gpu_carry: $FIXTURE is not a data fixture (tokenizer.json, data/manifest.json)" >&2; exit 1; }
  rm -rf "$OUTDIR/fixture"
  mkdir -p "$OUTDIR/fixture"
  cp "$FIXTURE/tokenizer.json" "$OUTDIR/fixture/"
  cp -r "$FIXTURE/data" "$OUTDIR/fixture/data"
  rm -rf "$OUTDIR/fixture/data/cache"  # prepare's cache: the loader reads the shards only
fi

# ---- size: the carry and the working tree travel together (64 MiB) ----------------------------
carry=$(du -sb "$OUTDIR" | cut -f1)
tree=$(cd "$ROOT" && git ls-files -z --cached --others --exclude-standard | xargs -0 stat -c %s 2>/dev/null |
  awk '{s += $1} END {print s + 0}')
total=$((carry + tree))
mib() { awk -v b="$1" 'BEGIN {printf "%.1f", b / 1048576}'; }
log "$(ls "$OUTDIR"/debs | wc -l) packages, fixture: $([ -d "$OUTDIR/fixture" ] && echo yes || echo no)"
log "size: carry $(mib "$carry") MiB + working tree $(mib "$tree") MiB = $(mib "$total") MiB (limit $LIMIT_MIB MiB)"
if [ "$total" -gt $((LIMIT_MIB * 1048576)) ]; then
  echo "gpu_carry: $(mib "$total") MiB is over the limit of $LIMIT_MIB MiB" >&2
  exit 1
fi
