// Scheduler: continuous batching over a BlockPool (vLLM's scheduler, llama-
// server's slots). Each sequence (one choice of one request) is a small state
// machine:
//
//   waiting --admit--> running --finish--> finished     (blocks released)
//      ^                  |  \--cancel--> cancelled     (blocks released)
//      +----preempt-------+                             (blocks released, recomputed later)
//
// and every transition takes or frees its KV blocks here, in one place. Before
// each model step schedule() plans which tokens are computed: first one token
// for every running sequence that is decoding, then the rest of the prompts
// being prefilled, then waiting sequences in arrival order (first come, first
// served: the first that does not fit stops admission), all within
// max_step_tokens tokens and max_running sequences. A prompt longer than what
// is left of the budget is computed in chunks over several steps (chunked
// prefill). At admission the longest run of the prompt's full blocks that the
// prefix cache holds is taken instead of computed. When a running sequence
// needs a block and none is left, the newest running sequence is preempted:
// its blocks go back and it waits at the head of the queue to be recomputed
// (its generated tokens are kept, so its output does not change).
// Torch-free; the engine runs the plan on the model (serve/paged_kv.h).
#pragma once

#include <cstdint>
#include <deque>
#include <unordered_map>
#include <vector>

#include "serve/block_pool.h"

namespace shardlm::serve {

enum class SeqState { kWaiting, kRunning, kFinished, kCancelled };
const char* to_string(SeqState s);

struct SchedulerConfig {
  int max_running = 8;            // sequences in the running batch (vLLM's max_num_seqs)
  int64_t max_step_tokens = 512;  // tokens computed per step (vLLM's max_num_batched_tokens)
};

struct Sequence {
  uint64_t id = 0;
  std::vector<int64_t> tokens;  // the prompt, then every generated token
  int64_t prompt_len = 0;
  int64_t computed = 0;        // leading tokens whose keys and values sit in `blocks`
  std::vector<int> blocks;     // block table: token t lives in blocks[t / block_size]
  std::vector<uint64_t> keys;  // prefix-cache keys of the leading full, computed blocks
  SeqState state = SeqState::kWaiting;
  uint64_t after = 0;           // non-zero: admitted once that sequence's prompt is computed
  bool admitted = false;        // admitted at least once
  int64_t cached_tokens = 0;    // prompt tokens the prefix cache gave at first admission
  int64_t computed_tokens = 0;  // tokens the model computed for it (recomputation included)
  int preemptions = 0;

  int64_t pending() const { return static_cast<int64_t>(tokens.size()) - computed; }
};

// tokens[start, start + count) of `seq` are computed this step; `sample`: the
// chunk reaches the last token, so the step's logits there choose the next token.
struct Chunk {
  uint64_t seq = 0;
  int64_t start = 0, count = 0;
  bool sample = false;
};

struct StepPlan {
  std::vector<Chunk> chunks;
  std::vector<uint64_t> preempted;  // sent back to waiting by this plan
  int64_t tokens = 0;               // sum of counts
  bool empty() const { return chunks.empty(); }
};

class Scheduler {
 public:
  // `pool` outlives the scheduler. max_running >= 1 and max_step_tokens >= 1
  // (ConfigError otherwise).
  Scheduler(SchedulerConfig cfg, BlockPool& pool);

  // A new waiting sequence (non-empty prompt); returns its id (never 0).
  // `after`: a sibling with the same prompt (n > 1) whose prompt blocks this one
  // should share through the prefix cache instead of computing them alongside it.
  uint64_t add(std::vector<int64_t> prompt, uint64_t after = 0);
  // Plans one step (see the file comment). Takes and frees blocks as it admits,
  // grows and preempts; an empty plan means nothing can run now.
  StepPlan schedule();
  // The model has run `plan`: the chunks' tokens count as computed and blocks
  // that became full are offered to the prefix cache.
  void computed(const StepPlan& plan);
  // Appends a generated token to a running sequence (computed by the next step).
  void append(uint64_t seq, int64_t token);
  // kFinished or kCancelled: its blocks are released and it is forgotten.
  // Works in any state (a waiting sequence can be cancelled).
  void finish(uint64_t seq, SeqState how);

  bool has(uint64_t seq) const { return seqs_.count(seq) > 0; }
  const Sequence& seq(uint64_t id) const;
  size_t num_waiting() const { return waiting_.size(); }
  size_t num_running() const { return running_.size(); }
  const BlockPool& pool() const { return pool_; }
  // Prefix cache, in prompt tokens, counted at each sequence's first admission
  // (vLLM's prefix_cache_queries / prefix_cache_hits).
  uint64_t prefix_queries() const { return prefix_queries_; }
  uint64_t prefix_hits() const { return prefix_hits_; }
  uint64_t preemptions() const { return preemptions_; }
  // Blocks that `tokens` tokens occupy.
  int64_t blocks_for(int64_t tokens) const;

 private:
  Sequence& get(uint64_t id);
  // Gives `s` blocks for its first `tokens` tokens; false (nothing taken) when
  // the pool has too few.
  bool grow(Sequence& s, int64_t tokens);
  void release_blocks(Sequence& s);
  void preempt(Sequence& s);
  // Takes the prompt's cached leading blocks; returns how many tokens they hold.
  int64_t match_prefix(Sequence& s);
  bool sibling_ready(const Sequence& s) const;

  SchedulerConfig cfg_;
  BlockPool& pool_;
  std::unordered_map<uint64_t, Sequence> seqs_;
  std::deque<uint64_t> waiting_;   // arrival order (preempted ones at the front)
  std::vector<uint64_t> running_;  // admission order
  uint64_t next_id_ = 1;
  uint64_t prefix_queries_ = 0, prefix_hits_ = 0, preemptions_ = 0;
};

}  // namespace shardlm::serve
