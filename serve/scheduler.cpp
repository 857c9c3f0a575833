// Scheduler (scheduler.h): admission, growth, preemption and release of blocks.
#include "serve/scheduler.h"

#include <algorithm>

#include "core/config.h"
#include "core/error.h"

namespace shardlm::serve {

const char* to_string(SeqState s) {
  switch (s) {
    case SeqState::kWaiting:
      return "waiting";
    case SeqState::kRunning:
      return "running";
    case SeqState::kFinished:
      return "finished";
    case SeqState::kCancelled:
      return "cancelled";
  }
  return "?";
}

Scheduler::Scheduler(SchedulerConfig cfg, BlockPool& pool) : cfg_(cfg), pool_(pool) {
  core::config_require(cfg_.max_running >= 1, "serve.max_batch", std::to_string(cfg_.max_running),
                       ">= 1 sequence");
  core::config_require(cfg_.max_step_tokens >= 1, "serve.max_num_batched_tokens",
                       std::to_string(cfg_.max_step_tokens), ">= 1 token");
}

int64_t Scheduler::blocks_for(int64_t tokens) const {
  const int64_t bs = pool_.block_size();
  return (tokens + bs - 1) / bs;
}

Sequence& Scheduler::get(uint64_t id) {
  auto it = seqs_.find(id);
  SHARDLM_CHECK(it != seqs_.end(), core::Error, "Scheduler: no sequence {}", id);
  return it->second;
}

const Sequence& Scheduler::seq(uint64_t id) const {
  auto it = seqs_.find(id);
  SHARDLM_CHECK(it != seqs_.end(), core::Error, "Scheduler: no sequence {}", id);
  return it->second;
}

uint64_t Scheduler::add(std::vector<int64_t> prompt, uint64_t after) {
  SHARDLM_CHECK(!prompt.empty(), core::Error, "Scheduler: empty prompt");
  Sequence s;
  s.id = next_id_++;
  s.prompt_len = static_cast<int64_t>(prompt.size());
  s.tokens = std::move(prompt);
  s.after = after;
  waiting_.push_back(s.id);
  seqs_.emplace(s.id, std::move(s));
  return next_id_ - 1;
}

bool Scheduler::grow(Sequence& s, int64_t tokens) {
  const int64_t need = blocks_for(tokens) - static_cast<int64_t>(s.blocks.size());
  if (need <= 0) return true;
  if (pool_.available() < need) return false;
  for (int64_t i = 0; i < need; ++i) s.blocks.push_back(pool_.allocate());
  return true;
}

void Scheduler::release_blocks(Sequence& s) {
  // Last block first: when cached, a sequence's tail is evicted before its head,
  // which other prompts are likelier to share.
  for (auto it = s.blocks.rbegin(); it != s.blocks.rend(); ++it) pool_.release(*it);
  s.blocks.clear();
  s.keys.clear();
  s.computed = 0;
}

void Scheduler::preempt(Sequence& s) {
  release_blocks(s);
  running_.erase(std::find(running_.begin(), running_.end(), s.id));
  s.state = SeqState::kWaiting;
  ++s.preemptions;
  ++preemptions_;
  waiting_.push_front(s.id);
}

int64_t Scheduler::match_prefix(Sequence& s) {
  if (!pool_.prefix_caching()) return 0;
  const int bs = pool_.block_size();
  // The last token is always computed: its logits choose the next one.
  const int64_t full = (static_cast<int64_t>(s.tokens.size()) - 1) / bs;
  uint64_t parent = 0;
  for (int64_t i = 0; i < full; ++i) {
    const int64_t* t = s.tokens.data() + i * bs;
    const uint64_t key = BlockPool::block_key(parent, t, bs);
    const int b = pool_.lookup(key, t);
    if (b < 0) break;
    s.blocks.push_back(b);
    s.keys.push_back(key);
    parent = key;
  }
  s.computed = static_cast<int64_t>(s.blocks.size()) * bs;
  return s.computed;
}

bool Scheduler::sibling_ready(const Sequence& s) const {
  if (s.after == 0) return true;
  auto it = seqs_.find(s.after);
  if (it == seqs_.end()) return true;  // finished or cancelled
  const Sequence& o = it->second;
  return o.state == SeqState::kRunning && o.computed >= o.prompt_len;
}

StepPlan Scheduler::schedule() {
  StepPlan plan;
  int64_t budget = cfg_.max_step_tokens;
  // 1. Running sequences: those decoding (one token each) first, then prompts
  //    being prefilled in chunks, each in admission order.
  for (int pass = 0; pass < 2; ++pass) {
    for (size_t i = 0; i < running_.size() && budget > 0;) {
      Sequence& s = seqs_.at(running_[i]);
      const bool decoding = s.pending() == 1;
      if (s.pending() <= 0 || decoding != (pass == 0)) {
        ++i;
        continue;
      }
      const int64_t want = std::min(s.pending(), budget);
      bool self_preempted = false;
      while (!grow(s, s.computed + want)) {
        // Out of blocks: the newest running sequence makes room (vLLM's recompute
        // preemption); when that is this one, it waits.
        Sequence& victim = seqs_.at(running_.back());
        const bool self = victim.id == s.id;
        // A victim already planned this step gives its chunk back.
        for (auto c = plan.chunks.begin(); c != plan.chunks.end(); ++c)
          if (c->seq == victim.id) {
            budget += c->count;
            plan.tokens -= c->count;
            plan.chunks.erase(c);
            break;
          }
        plan.preempted.push_back(victim.id);
        preempt(victim);
        if (self) {
          self_preempted = true;
          break;
        }
      }
      if (self_preempted) continue;  // running_[i] is now the next sequence (or none)
      plan.chunks.push_back({s.id, s.computed, want, want == s.pending()});
      plan.tokens += want;
      budget -= want;
      ++i;
    }
  }
  // 2. Waiting sequences in arrival order, while budget, slots and blocks last.
  for (auto it = waiting_.begin(); it != waiting_.end() && budget > 0 &&
                                   static_cast<int>(running_.size()) < cfg_.max_running;) {
    Sequence& s = seqs_.at(*it);
    if (!sibling_ready(s)) {  // its sibling computes the shared prompt first
      ++it;
      continue;
    }
    const int64_t hit = match_prefix(s);
    const int64_t want = std::min(s.pending(), budget);
    if (!grow(s, s.computed + want)) {
      release_blocks(s);  // the cached blocks it took go back; it keeps its place
      break;
    }
    if (!s.admitted) {
      s.admitted = true;
      s.cached_tokens = hit;
      prefix_queries_ += static_cast<uint64_t>(s.prompt_len);
      prefix_hits_ += static_cast<uint64_t>(hit);
    }
    s.state = SeqState::kRunning;
    running_.push_back(s.id);
    it = waiting_.erase(it);
    plan.chunks.push_back({s.id, s.computed, want, want == s.pending()});
    plan.tokens += want;
    budget -= want;
  }
  return plan;
}

void Scheduler::computed(const StepPlan& plan) {
  const int bs = pool_.block_size();
  for (const Chunk& c : plan.chunks) {
    auto it = seqs_.find(c.seq);
    if (it == seqs_.end()) continue;  // cancelled while the step ran
    Sequence& s = it->second;
    s.computed = c.start + c.count;
    s.computed_tokens += c.count;
    // Full blocks become shareable, keyed by their tokens and their parent's key.
    while (static_cast<int64_t>(s.keys.size()) < s.computed / bs) {
      const size_t i = s.keys.size();
      const int64_t* t = s.tokens.data() + i * static_cast<size_t>(bs);
      const uint64_t key = BlockPool::block_key(i == 0 ? 0 : s.keys[i - 1], t, bs);
      pool_.commit(s.blocks[i], key, t);
      s.keys.push_back(key);
    }
  }
}

void Scheduler::append(uint64_t id, int64_t token) {
  Sequence& s = get(id);
  SHARDLM_CHECK(s.state == SeqState::kRunning, core::Error,
                "Scheduler: append to sequence {} that is {}", id, to_string(s.state));
  s.tokens.push_back(token);
}

void Scheduler::finish(uint64_t id, SeqState how) {
  SHARDLM_CHECK(how == SeqState::kFinished || how == SeqState::kCancelled, core::Error,
                "Scheduler::finish takes kFinished or kCancelled, not {}", to_string(how));
  Sequence& s = get(id);
  release_blocks(s);
  if (s.state == SeqState::kRunning)
    running_.erase(std::find(running_.begin(), running_.end(), id));
  else
    waiting_.erase(std::find(waiting_.begin(), waiting_.end(), id));
  seqs_.erase(id);
}

}  // namespace shardlm::serve
