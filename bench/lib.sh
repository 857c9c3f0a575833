# Shared by the bench/ scripts that train with `shardlm train`: the CPU
# benchmark model of bench/RESULTS.md (4 layers, 4 heads, width 256, T=128,
# batch 8, vocabulary 4096) on a prepared dataset, as TOML sections.
#   source "$ROOT/bench/lib.sh"; bench_model_toml "$FIXTURE/data" >> run.toml
bench_model_toml() {
  cat <<TOML
[model]
vocab_size = 4096
context_length = 128
n_layer = 4
n_head = 4
d_model = 256
[data]
path = "$1"
batch_size = 8
seq_len = 128
TOML
}
