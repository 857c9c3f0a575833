#!/usr/bin/env bash
# The disk fills (ctest faults.disk_full): a small tmpfs mounted in a private
# mount namespace (`unshare --mount` as root, `unshare --map-root-user --mount`
# otherwise), filled by a filler file up to a few KB, under four writers of
# the real `shardlm` binary. Each must fail with an error that says the disk
# is full and names the file, and leave what was saved before intact, byte for
# byte (and still readable):
#   tokenizer  `tokenizer train --out` over an existing tokenizer
#   ratings    `eval rate` appending to an existing ratings.jsonl
#   prepare    `prepare` of a changed corpus over an existing dataset
#   run config `train --resume` with no room for the run's config.toml
#   checkpoint `train --resume` whose next checkpoint does not fit
#   tests/faults/disk_full.sh path/to/shardlm FIXTURE_DIR
SHARDLM=$(realpath "$1")
FIXTURE=$(realpath "$2")
if [ -z "${SHARDLM_IN_MOUNT_NS:-}" ]; then
  ns=(unshare --mount --propagation private)
  [ "$(id -u)" -eq 0 ] || ns=(unshare --map-root-user --mount --propagation private)
  if ! "${ns[@]}" true 2>/dev/null; then
    echo "FAIL: cannot create a mount namespace here (${ns[*]}); this test needs root or unprivileged user namespaces" >&2
    exit 1
  fi
  SHARDLM_IN_MOUNT_NS=1 exec "${ns[@]}" bash "$0" "$@"
fi
source "$(dirname "$0")/lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
[ -f "$FIXTURE/data/manifest.json" ] || fail "no prepared fixture in $FIXTURE (tests/runtime/make_fixture.sh)"

DISK=$TMP/disk
mkdir -p "$DISK"
mount -t tmpfs -o size=16m tmpfs "$DISK" || fail "cannot mount a tmpfs in the mount namespace"
trap 'umount "$DISK" 2>/dev/null || true; cleanup' EXIT
# fill KB: leaves about KB kilobytes free on the tmpfs; unfill: frees it again.
fill() {
  rm -f "$DISK/filler"
  dd if=/dev/zero of="$DISK/filler" bs=64k status=none 2>/dev/null || true
  local size
  size=$(stat -c %s "$DISK/filler")
  truncate -s $((size > $1 * 1024 ? size - $1 * 1024 : 0)) "$DISK/filler"
}
unfill() { rm -f "$DISK/filler"; }
sums() { (cd "$1" && find . -type f ! -name filler -print0 | sort -z | xargs -0 -r sha256sum); }
# expect_disk_full LOG WHAT: the command failed saying so, naming a file on the disk
expect_disk_full() {
  grep -qiE "no space left|disk full" "$1" || fail "$2: the error does not say the disk is full: $(tail -5 "$1")"
  grep -q "$DISK" "$1" || fail "$2: the error does not name the file: $(tail -5 "$1")"
  echo "$2: $(grep -iE -m1 "no space left|disk full" "$1")"
}

head -c 300000 "$FIXTURE/corpus.txt" > "$TMP/corpus.txt"

T0=$SECONDS
# ---- tokenizer save ----------------------------------------------------------------------
tok=$DISK/tok/tokenizer.json
mkdir -p "$DISK/tok"
"$SHARDLM" tokenizer train --input "$TMP/corpus.txt" --vocab-size 400 --out "$tok" --no-progress \
  > "$TMP/tok1.log" 2>&1 || fail "the first tokenizer save failed: $(tail -5 "$TMP/tok1.log")"
before=$(sums "$DISK/tok")
fill 4
if "$SHARDLM" tokenizer train --input "$TMP/corpus.txt" --vocab-size 2000 --out "$tok" --no-progress \
  > "$TMP/tok2.log" 2>&1; then fail "tokenizer train succeeded on a full disk"; fi
expect_disk_full "$TMP/tok2.log" "tokenizer save"
[ "$(sums "$DISK/tok")" = "$before" ] || fail "tokenizer save: the old tokenizer.json changed or a temporary file was left"
"$SHARDLM" tokenizer encode -t "$tok" --text "still loads" > /dev/null || fail "the old tokenizer no longer loads"
unfill

echo "($((SECONDS - T0)) s)"
# ---- ratings append ------------------------------------------------------------------------
mkdir -p "$DISK/eval"
printf '%s\n' '{"id": "q1", "prompt": "Say hi", "outputs": [{"model": "a", "text": "hi"}]}' \
  '{"id": "q2", "prompt": "Count", "outputs": [{"model": "a", "text": "1 2"}]}' > "$DISK/eval/samples.jsonl"
rater=$(head -c 9000 /dev/zero | tr '\0' r)  # each answer is larger than what is left
echo 4 | "$SHARDLM" eval rate --samples "$DISK/eval/samples.jsonl" --out "$DISK/eval/ratings.jsonl" \
  --rater "$rater" --from-file - > "$TMP/rate1.log" 2>&1 || true
[ "$(lines "$DISK/eval/ratings.jsonl")" -eq 1 ] || fail "the first rating was not written: $(tail -5 "$TMP/rate1.log")"
before=$(sums "$DISK/eval")
fill 4
if echo 5 | "$SHARDLM" eval rate --samples "$DISK/eval/samples.jsonl" --out "$DISK/eval/ratings.jsonl" \
  --rater "$rater" --from-file - > "$TMP/rate2.log" 2>&1; then fail "eval rate succeeded on a full disk"; fi
expect_disk_full "$TMP/rate2.log" "ratings append"
[ "$(sums "$DISK/eval")" = "$before" ] || fail "ratings append: ratings.jsonl changed (a torn line?)"
unfill

echo "($((SECONDS - T0)) s)"
# ---- prepare over an existing dataset --------------------------------------------------------
"$SHARDLM" prepare --input "$TMP/corpus.txt" --output "$DISK/data" --tokenizer "$FIXTURE/tokenizer.json" \
  --no-progress prepare.shard_mb=0.25 'prepare.txt_documents="line"' > "$TMP/prep1.log" 2>&1 ||
  fail "the first prepare failed: $(tail -5 "$TMP/prep1.log")"
before=$(sums "$DISK/data")
cat "$FIXTURE/corpus.txt" > "$TMP/corpus.txt"  # ten times more text: it must write everything again
fill 64
if "$SHARDLM" prepare --input "$TMP/corpus.txt" --output "$DISK/data" --tokenizer "$FIXTURE/tokenizer.json" \
  --no-progress prepare.shard_mb=0.25 'prepare.txt_documents="line"' > "$TMP/prep2.log" 2>&1; then
  fail "prepare succeeded on a full disk"
fi
expect_disk_full "$TMP/prep2.log" "prepare"
now_sums=$(sums "$DISK/data")
# The dataset as it was: manifest and every shard it lists, byte for byte.
while read -r sum file; do
  case "$file" in ./cache/*) continue ;; esac
  grep -qF "$sum  $file" <<<"$now_sums" || fail "prepare: $file of the previous dataset changed or is gone"
done <<<"$before"
unfill

echo "($((SECONDS - T0)) s)"
# ---- checkpoint ---------------------------------------------------------------------------------
cfg=$TMP/train.toml run=$DISK/run
write_train_config "$cfg" "$run" "$FIXTURE" "[ckpt]" "every = 4" "async = false" "keep_last = 3" \
  "save_final = false"
sed -i 's/^d_model = 64/d_model = 16/; s/^steps = 100000/steps = 5/' "$cfg"
"$SHARDLM" train --config "$cfg" > "$TMP/train1.log" 2>&1 || fail "the first run failed: $(tail -5 "$TMP/train1.log")"
[ "$(cat "$run/checkpoints/latest")" = step-000004 ] || fail "no checkpoint at step 4"
before=$(sums "$run/checkpoints")
cp "$run/config.toml" "$TMP/config.before"
# Not even room for the run's config.toml: the resume stops before training,
# and the config of the run is kept whole (it is written through a temporary file).
fill 0
if "$SHARDLM" train --config "$cfg" --resume latest --train.steps=9 > "$TMP/train-config.log" 2>&1; then
  fail "training started with no space for its config.toml"
fi
expect_disk_full "$TMP/train-config.log" "run config"
grep -q "config.toml" "$TMP/train-config.log" || fail "run config: the error does not name config.toml"
cmp -s "$run/config.toml" "$TMP/config.before" || fail "run config: config.toml changed on a full disk"
compgen -G "$run/config.toml.tmp*" > /dev/null && fail "run config: a temporary config.toml.tmp.* was left"
fill 64
if "$SHARDLM" train --config "$cfg" --resume latest --train.steps=9 > "$TMP/train2.log" 2>&1; then
  fail "training saved a checkpoint on a full disk"
fi
expect_disk_full "$TMP/train2.log" "checkpoint"
grep -q "checkpoint of step 8 failed" "$TMP/train2.log" || fail "checkpoint: the error does not name the step"
[ "$(cat "$run/checkpoints/latest")" = step-000004 ] || fail "checkpoint: latest no longer names step-000004"
[ ! -e "$run/checkpoints/step-000008.tmp" ] || fail "checkpoint: the half-written step-000008.tmp was left"
while read -r sum file; do
  case "$file" in ./step-000004/*|./latest) grep -qF "$sum  $file" <<<"$(sums "$run/checkpoints")" ||
    fail "checkpoint: $file of step 4 changed" ;; esac
done <<<"$before"
"$SHARDLM" ckpt verify "$run/checkpoints/step-000004" > /dev/null || fail "step-000004 no longer verifies"
# The run's config: whole, the old one with the resumed run's steps and resume keys.
norm() { sed "s/^steps = .*/steps = N/; /^resume = /d" "$1"; }
diff <(norm "$TMP/config.before") <(norm "$run/config.toml") > /dev/null ||
  fail "the run's config.toml was damaged: $(diff "$TMP/config.before" "$run/config.toml" | head -5)"
unfill
"$SHARDLM" train --config "$cfg" --resume latest --train.steps=9 > "$TMP/train3.log" 2>&1 ||
  fail "with space again, the resume failed: $(tail -5 "$TMP/train3.log")"
grep -q "resumed from .* at step 4 " "$TMP/train3.log" || fail "the resume did not start at step 4"
echo "($((SECONDS - T0)) s)"
echo "ok: a full disk under tokenizer save, ratings append, prepare and a checkpoint: clear errors, nothing lost"
