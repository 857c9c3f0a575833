// The continuous scheduler and what rides on it: the block pool (reference
// counts, free list, LRU of cached blocks), the scheduler's state machine
// (token budget, chunked prefill, first come first served, preemption, prefix
// cache), the paged KV step against the model's own forward pass, and over
// real sockets: greedy text equal to model::Generator under concurrency,
// seeded outputs identical alone / in a mixed batch / from a cached prefix, a
// disconnected client's blocks freed, chat completions, logprobs in OpenAI's
// two shapes, stop strings held back while streaming, and the API key.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <future>
#include <thread>

#include <sys/wait.h>
#include <unistd.h>

#include "serve/block_pool.h"
#include "serve/chat.h"
#include "serve/paged_kv.h"
#include "serve/scheduler.h"
#include "tests/serve/fixtures.h"

using namespace serve_test;
using shardlm::serve::client::sse_events;

namespace {

std::vector<int64_t> iota(int64_t n, int64_t from = 1) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = from + i;
  return v;
}

const Chunk* find_chunk(const StepPlan& p, uint64_t seq) {
  for (const auto& c : p.chunks)
    if (c.seq == seq) return &c;
  return nullptr;
}

// GET /metrics, one value.
double metric_of(uint16_t port, const std::string& name) {
  return metric(http_request(port, "GET", "/metrics").body, name);
}

// A vLLM-style series carries model_name="..."; read its value.
double vllm_metric(uint16_t port, const std::string& name) {
  const std::string text = http_request(port, "GET", "/metrics").body;
  std::smatch m;
  const std::regex re("\n" + std::regex_replace(name, std::regex(":"), ":") +
                      "\\{[^}]*\\} ([0-9.e+-]+)");
  const std::string t = "\n" + text;
  return std::regex_search(t, m, re) ? std::stod(m[1]) : -1;
}

}  // namespace

// ---- block pool ---------------------------------------------------------------------------------

TEST(ServeBlocks, RefcountsFreeListAndLeastRecentlyReleasedEviction) {
  BlockPool pool(3, 2, /*prefix_caching=*/true);
  const std::vector<int64_t> t0 = {1, 2}, t1 = {3, 4};
  const uint64_t k0 = BlockPool::block_key(0, t0.data(), 2);
  const uint64_t k1 = BlockPool::block_key(k0, t1.data(), 2);
  EXPECT_NE(k1, BlockPool::block_key(0, t1.data(), 2));  // the parent is part of the key
  const int a = pool.allocate(), b = pool.allocate(), c = pool.allocate();
  EXPECT_EQ(pool.allocate(), -1);  // bounded
  EXPECT_EQ(pool.used(), 3);
  pool.commit(a, k0, t0.data());
  pool.commit(b, k1, t1.data());
  // Another holder of a: count 2; released twice before it is evictable.
  EXPECT_EQ(pool.lookup(k0, t0.data()), a);
  EXPECT_EQ(pool.ref_count(a), 2);
  pool.release(a);
  EXPECT_EQ(pool.available(), 0);
  pool.release(a);
  pool.release(b);
  pool.release(c);  // no key: plainly free
  EXPECT_EQ(pool.available(), 3);
  EXPECT_EQ(pool.used(), 0);
  EXPECT_EQ(pool.cached(), 2);
  // A hash match with other tokens is no match.
  const std::vector<int64_t> other = {9, 9};
  EXPECT_EQ(pool.lookup(k0, other.data()), -1);
  // Free blocks go first, then the cached one released longest ago (a, then b).
  EXPECT_EQ(pool.allocate(), c);
  EXPECT_EQ(pool.evictions(), 0u);
  EXPECT_EQ(pool.allocate(), a);
  EXPECT_EQ(pool.evictions(), 1u);
  EXPECT_EQ(pool.lookup(k0, t0.data()), -1);  // evicted with its key
  EXPECT_EQ(pool.lookup(k1, t1.data()), b);   // still cached: taken off the evictable list
  EXPECT_EQ(pool.allocate(), -1);
  // A second block under a key already taken stays private.
  pool.release(b);
  const int d = pool.allocate();  // evicts b
  pool.commit(d, k0, t0.data());
  EXPECT_EQ(pool.cached(), 1);
  BlockPool off(2, 2, /*prefix_caching=*/false);
  const int e = off.allocate();
  off.commit(e, k0, t0.data());
  EXPECT_EQ(off.cached(), 0);
  EXPECT_EQ(off.lookup(k0, t0.data()), -1);
  EXPECT_THROW(BlockPool(0, 16, true), core::ConfigError);
}

// ---- scheduler ----------------------------------------------------------------------------------

TEST(ServeScheduler, DecodesFirstThenChunksLongPromptsWithinTheTokenBudget) {
  BlockPool pool(64, 4, true);
  SchedulerConfig sc;
  sc.max_running = 4;
  sc.max_step_tokens = 10;
  Scheduler s(sc, pool);
  const uint64_t a = s.add(iota(25));
  const uint64_t b = s.add(iota(3, 100));
  StepPlan p = s.schedule();
  ASSERT_EQ(p.chunks.size(), 1u);  // a takes the whole budget; b waits
  EXPECT_EQ(p.chunks[0].seq, a);
  EXPECT_EQ(p.chunks[0].count, 10);
  EXPECT_FALSE(p.chunks[0].sample);
  EXPECT_EQ(s.seq(b).state, SeqState::kWaiting);
  s.computed(p);
  p = s.schedule();
  ASSERT_EQ(p.chunks.size(), 1u);
  EXPECT_EQ(p.chunks[0].start, 10);
  s.computed(p);
  p = s.schedule();  // a's last 5 tokens, then b in what is left
  ASSERT_EQ(p.chunks.size(), 2u);
  EXPECT_EQ(p.chunks[0].seq, a);
  EXPECT_EQ(p.chunks[0].count, 5);
  EXPECT_TRUE(p.chunks[0].sample);
  EXPECT_EQ(p.chunks[1].seq, b);
  EXPECT_EQ(p.chunks[1].count, 3);
  EXPECT_EQ(p.tokens, 8);
  s.computed(p);
  s.append(a, 7);
  s.append(b, 8);
  // A long newcomer is chunked while both decode, one token each, first.
  const uint64_t c = s.add(iota(30, 200));
  p = s.schedule();
  ASSERT_EQ(p.chunks.size(), 3u);
  EXPECT_EQ(p.chunks[0].seq, a);
  EXPECT_EQ(p.chunks[0].count, 1);
  EXPECT_EQ(p.chunks[0].start, 25);
  EXPECT_EQ(p.chunks[1].seq, b);
  EXPECT_EQ(p.chunks[2].seq, c);
  EXPECT_EQ(p.chunks[2].count, 8);
  EXPECT_EQ(s.seq(a).blocks.size(), 7u);  // 26 tokens in blocks of 4
  EXPECT_EQ(s.num_running(), 3u);
}

TEST(ServeScheduler, FirstComeFirstServedAndFinishingFreesEveryBlock) {
  BlockPool pool(6, 4, false);
  Scheduler s({8, 100}, pool);
  const uint64_t a = s.add(iota(16));
  const uint64_t b = s.add(iota(12));
  const uint64_t c = s.add(iota(2));
  StepPlan p = s.schedule();
  // a holds 4 of 6 blocks; b needs 3 and waits; c would fit but does not jump the queue.
  ASSERT_EQ(p.chunks.size(), 1u);
  EXPECT_EQ(p.chunks[0].seq, a);
  EXPECT_EQ(pool.used(), 4);
  EXPECT_EQ(s.num_waiting(), 2u);
  s.computed(p);
  s.finish(a, SeqState::kFinished);
  EXPECT_EQ(pool.used(), 0);
  p = s.schedule();
  ASSERT_EQ(p.chunks.size(), 2u);
  EXPECT_EQ(p.chunks[0].seq, b);
  EXPECT_EQ(p.chunks[1].seq, c);
  // Cancelled, waiting or running: its blocks go back.
  const uint64_t d = s.add(iota(4));
  s.finish(d, SeqState::kCancelled);
  s.finish(b, SeqState::kCancelled);
  s.finish(c, SeqState::kCancelled);
  EXPECT_EQ(pool.used(), 0);
  EXPECT_EQ(s.num_running() + s.num_waiting(), 0u);
  EXPECT_FALSE(s.has(b));
}

TEST(ServeScheduler, PreemptsTheNewestWhenBlocksRunOutAndKeepsItsTokens) {
  BlockPool pool(4, 2, false);
  Scheduler s({8, 100}, pool);
  const uint64_t a = s.add(iota(3));
  const uint64_t b = s.add(iota(3, 50));
  StepPlan p = s.schedule();
  ASSERT_EQ(p.chunks.size(), 2u);
  EXPECT_EQ(pool.available(), 0);
  s.computed(p);
  s.append(a, 9);  // a: 4 tokens, fits its 2 blocks
  s.append(b, 9);
  p = s.schedule();
  s.computed(p);
  s.append(a, 10);  // a: 5 tokens, needs a third block: b (newest) makes room
  s.append(b, 10);
  p = s.schedule();
  ASSERT_EQ(p.preempted, std::vector<uint64_t>{b});
  ASSERT_EQ(p.chunks.size(), 1u);
  EXPECT_EQ(p.chunks[0].seq, a);
  EXPECT_EQ(s.seq(b).state, SeqState::kWaiting);
  EXPECT_EQ(s.seq(b).computed, 0);
  EXPECT_EQ(s.seq(b).tokens.size(), 5u);  // its generated tokens stay: recomputed later
  EXPECT_EQ(s.preemptions(), 1u);
  s.computed(p);
  s.finish(a, SeqState::kFinished);
  p = s.schedule();  // b comes back, everything recomputed
  ASSERT_EQ(p.chunks.size(), 1u);
  EXPECT_EQ(p.chunks[0].seq, b);
  EXPECT_EQ(p.chunks[0].start, 0);
  EXPECT_EQ(p.chunks[0].count, 5);
  EXPECT_TRUE(p.chunks[0].sample);
}

TEST(ServeScheduler, PrefixCacheSharesFullPromptBlocksAndCountsHits) {
  BlockPool pool(32, 4, true);
  Scheduler s({8, 100}, pool);
  std::vector<int64_t> shared = iota(9);  // two full blocks and one token
  const uint64_t a = s.add(shared);
  StepPlan p = s.schedule();
  s.computed(p);
  EXPECT_EQ(pool.cached(), 2);
  const int a0 = s.seq(a).blocks[0], a1 = s.seq(a).blocks[1];
  s.finish(a, SeqState::kFinished);
  std::vector<int64_t> longer = iota(8);
  for (int64_t t : {70, 71, 72, 73, 74}) longer.push_back(t);
  const uint64_t b = s.add(longer);
  p = s.schedule();
  ASSERT_EQ(p.chunks.size(), 1u);
  EXPECT_EQ(p.chunks[0].start, 8);  // the first 8 tokens came from the cache
  EXPECT_EQ(p.chunks[0].count, 5);
  EXPECT_EQ(s.seq(b).cached_tokens, 8);
  EXPECT_EQ(s.seq(b).blocks[0], a0);
  EXPECT_EQ(s.seq(b).blocks[1], a1);
  EXPECT_EQ(s.prefix_queries(), 9u + 13u);
  EXPECT_EQ(s.prefix_hits(), 8u);
  s.computed(p);
  s.append(b, 5);
  // Held by b and by c at once: count 2, no copy.
  std::vector<int64_t> exact = iota(8);  // all of it cached, but its last token is computed
  const uint64_t c = s.add(exact);
  p = s.schedule();
  ASSERT_EQ(p.chunks.size(), 2u);  // b decodes, c is admitted
  ASSERT_NE(find_chunk(p, c), nullptr);
  EXPECT_EQ(find_chunk(p, c)->start, 4);
  EXPECT_EQ(s.seq(c).blocks[0], a0);
  EXPECT_EQ(pool.ref_count(a0), 2);
  // A sibling (n > 1) waits until the first one's prompt is computed, then shares it.
  const uint64_t d = s.add(iota(12, 300));
  const uint64_t e = s.add(iota(12, 300), d);
  s.computed(p);
  p = s.schedule();
  EXPECT_NE(find_chunk(p, d), nullptr);
  EXPECT_EQ(find_chunk(p, e), nullptr);
  s.computed(p);
  s.append(d, 1);
  p = s.schedule();
  ASSERT_NE(find_chunk(p, e), nullptr);
  EXPECT_EQ(find_chunk(p, e)->start, 8);
  EXPECT_EQ(s.seq(e).cached_tokens, 8);
}

// ---- paged attention ---------------------------------------------------------------------------

TEST(ServePaged, StepsEqualTheModelsForwardPassWhateverTheChunkingAndSharing) {
  torch::manual_seed(3);
  model::ModelConfig mc;
  mc.vocab_size = 50;
  mc.context_length = 64;
  mc.n_layer = 2;
  mc.n_head = 2;
  mc.d_model = 16;
  for (const std::string pos : {"rope", "learned"}) {
    mc.positional = pos;
    model::GPT m(mc);
    m->eval();
    torch::NoGradGuard ng;
    auto reference = [&](const std::vector<int64_t>& t, int64_t len) {  // logits after t[0, len)
      auto ids = torch::tensor(std::vector<int64_t>(t.begin(), t.begin() + len)).view({1, len});
      return m->forward(ids)[0][len - 1];
    };
    std::vector<int64_t> A = iota(30, 1), B = iota(12, 20), C = iota(5, 7);
    std::vector<int64_t> D(A.begin(), A.begin() + 8);  // A's first two blocks, then its own
    for (int64_t t : {3, 4, 5, 6}) D.push_back(t);
    const int bs = 4;
    PagedKV kv(mc, 32, bs, torch::kCPU, torch::kFloat);
    std::vector<int> ba = {0, 1, 2, 3, 4, 5, 6, 7}, bb = {9, 8, 10}, bc = {12, 13},
                     bd = {0, 1, 14};  // D shares A's first two blocks
    struct Step {
      std::vector<ChunkInput> in;
    };
    auto chunk = [](const std::vector<int64_t>& t, int64_t start, int64_t n,
                    const std::vector<int>& b) {
      return ChunkInput{t.data(), start, n, &b, true};
    };
    const std::vector<std::vector<ChunkInput>> steps = {
        {chunk(A, 0, 5, ba), chunk(B, 0, 7, bb)},
        {chunk(A, 5, 1, ba), chunk(B, 7, 1, bb), chunk(C, 0, 3, bc)},  // two decodes, one prefill
        {chunk(A, 6, 14, ba), chunk(B, 8, 1, bb), chunk(C, 3, 1, bc)},
        {chunk(D, 8, 4, bd), chunk(B, 9, 1, bb), chunk(A, 20, 1, ba)},  // D reads A's blocks
    };
    for (size_t i = 0; i < steps.size(); ++i) {
      torch::Tensor got = kv.step(m, steps[i]);
      ASSERT_EQ(got.size(0), static_cast<int64_t>(steps[i].size()));
      for (size_t j = 0; j < steps[i].size(); ++j) {
        const ChunkInput& c = steps[i][j];
        const std::vector<int64_t>& t = c.tokens == A.data()   ? A
                                        : c.tokens == B.data() ? B
                                        : c.tokens == C.data() ? C
                                                               : D;
        torch::Tensor want = reference(t, c.start + c.count);
        EXPECT_TRUE(torch::allclose(got[static_cast<int64_t>(j)], want, 1e-4, 1e-5))
            << pos << " step " << i << " chunk " << j << " max diff "
            << (got[static_cast<int64_t>(j)] - want).abs().max().item<float>();
      }
    }
    EXPECT_EQ(kv.bytes(), PagedKV::block_bytes(mc, bs, torch::kFloat) * 32);
  }
}

// ---- end to end ---------------------------------------------------------------------------------

TEST(ServeContinuous, GreedyTextEqualsTheGeneratorWhileRequestsComeAndGo) {
  ServeConfig cfg;
  cfg.max_batch = 4;                // 8 requests: later ones join as earlier ones finish
  cfg.max_num_batched_tokens = 16;  // prompts are prefilled in chunks beside decodes
  cfg.block_size = 4;
  cfg.cache_entries = 0;
  Running s(cfg);
  const std::vector<std::string> prompts = {"the cat",   "a dog ran", "the old man sat on the mat",
                                            "bird",      "the mat",   "and then the dog slept by",
                                            "in a tree", "fire"};
  std::vector<int64_t> max_tokens = {5, 19, 12, 3, 16, 7, 10, 24};
  for (const json& j : expect_concurrent_greedy_equals_alone(s, prompts, max_tokens)) {
    EXPECT_EQ(j["shardlm"]["scheduler"], "continuous");
    EXPECT_GE(j["shardlm"]["seed"].get<int64_t>(), 0);
  }
  EXPECT_EQ(s.metrics->completions, prompts.size());
  EXPECT_EQ(s.metrics->running, 0);
  EXPECT_EQ(s.metrics->kv_blocks_used, 0);  // every block went back
  EXPECT_GT(s.metrics->batches, 1u);
  const std::string m = http_request(s.port(), "GET", "/metrics").body;
  EXPECT_NE(m.find("vllm:num_requests_running{model_name="), std::string::npos);
  EXPECT_NE(m.find("# TYPE vllm:time_to_first_token_seconds histogram"), std::string::npos);
  EXPECT_EQ(vllm_metric(s.port(), "vllm:time_to_first_token_seconds_count"),
            static_cast<double>(prompts.size()));
  EXPECT_GT(vllm_metric(s.port(), "vllm:time_per_output_token_seconds_count"), 0);
  EXPECT_EQ(vllm_metric(s.port(), "vllm:kv_cache_usage_perc"), 0);
}

TEST(ServeContinuous, ASeededRequestGetsTheSameTokensAloneInAMixedBatchAndFromACachedPrefix) {
  ServeConfig cfg;
  cfg.max_batch = 8;
  cfg.block_size = 4;
  cfg.max_num_batched_tokens = 24;
  cfg.cache_entries = 0;  // every answer computed, none replayed
  Running s(cfg);
  const std::string prompt = "the old man sat by the fire and then the dog ran to the tree. a bird";
  const json seeded = {{"prompt", prompt}, {"max_tokens", 30}, {"temperature", 1.0},
                       {"top_k", 40},      {"seed", 1234},     {"ignore_eos", true},
                       {"logprobs", 0}};
  // Alone, on a fresh server: nothing cached.
  HttpResult alone = s.post("/v1/completions", seeded);
  ASSERT_EQ(alone.status, 200) << alone.body;
  const json a = json::parse(alone.body);
  EXPECT_EQ(a["shardlm"]["seed"], 1234);
  const json tokens = a["choices"][0]["logprobs"]["tokens"];
  ASSERT_EQ(tokens.size(), 30u);
  // In a mixed batch: unseeded sampling, greedy, n = 2, other lengths, arriving
  // before and after it, with a prefix of their own.
  std::vector<std::future<HttpResult>> others;
  for (int i = 0; i < 6; ++i)
    others.push_back(std::async(std::launch::async, [&, i] {
      json b = {{"prompt", i % 2 ? "a dog ran" : "the cat sat on the mat and the bird sang"},
                {"max_tokens", 10 + 5 * i},
                {"temperature", i % 3 == 0 ? 0.0 : 0.9},
                {"n", 1 + i % 2},
                {"ignore_eos", true}};
      return s.post("/v1/completions", b);
    }));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  auto mixed_f = std::async(std::launch::async, [&] { return s.post("/v1/completions", seeded); });
  HttpResult mixed = mixed_f.get();
  for (auto& f : others) ASSERT_EQ(f.get().status, 200);
  ASSERT_EQ(mixed.status, 200) << mixed.body;
  const json b = json::parse(mixed.body);
  EXPECT_EQ(b["choices"][0]["logprobs"]["tokens"], tokens);
  EXPECT_EQ(b["choices"][0]["text"], a["choices"][0]["text"]);
  // Its prompt's full blocks are cached now: the prefix comes from the cache.
  HttpResult cached = s.post("/v1/completions", seeded);
  ASSERT_EQ(cached.status, 200);
  const json c = json::parse(cached.body);
  EXPECT_TRUE(c["shardlm"]["prefix_cache_hit"].get<bool>());
  const int64_t prompt_len = c["usage"]["prompt_tokens"];
  EXPECT_GE(c["shardlm"]["cached_tokens"].get<int64_t>(), (prompt_len - 1) / 4 * 4);
  EXPECT_EQ(c["usage"]["prompt_tokens_details"]["cached_tokens"], c["shardlm"]["cached_tokens"]);
  EXPECT_LT(c["shardlm"]["computed_tokens"].get<int64_t>(),
            a["shardlm"]["computed_tokens"].get<int64_t>());
  EXPECT_EQ(c["choices"][0]["logprobs"]["tokens"], tokens);
  EXPECT_GT(metric_of(s.port(), "shardlm_serve_kv_blocks_cached"), 0);
  EXPECT_GT(vllm_metric(s.port(), "vllm:prefix_cache_hits_total"), 0);
  // The seed means what it means to model::Generator: the same draws alone.
  model::GenerationConfig g = greedy(30);
  g.strategy = "sample";
  g.top_k = 40;
  g.seed = 1234;
  load::ModelBundle im = load::load_model(small_model());
  data::Tokenizer tok = std::move(im.tokenizer.value());
  auto ids = tok.encode(prompt);
  const auto out =
      model::Generator(im.model, g).generate({std::vector<int64_t>(ids.begin(), ids.end())});
  std::vector<std::string> want;
  for (int64_t t : out.sequences[0][0].tokens)
    want.push_back(valid_utf8(tok.decode_model_ids({t})));
  EXPECT_EQ(tokens, json(want));
}

TEST(ServeContinuous, ADisconnectedClientsBlocksAreFreedWithinAStep) {
  ServeConfig cfg;
  cfg.cache_entries = 0;
  Running s(cfg, make_model("wide", 4, 128, 512));
  namespace net = boost::asio;
  net::io_context ioc;
  auto start = [&](bool stream) {
    auto sock = std::make_shared<net::ip::tcp::socket>(ioc);
    sock->connect({net::ip::make_address("127.0.0.1"), s.port()});
    const std::string body = json({{"prompt", "the cat"},
                                   {"max_tokens", 400},
                                   {"temperature", 0},
                                   {"ignore_eos", true},
                                   {"stream", stream}})
                                 .dump();
    const std::string req =
        "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
        "application/json\r\nContent-Length: " +
        std::to_string(body.size()) + "\r\n\r\n" + body;
    net::write(*sock, net::buffer(req));
    return sock;
  };
  auto wait_for = [&](auto cond) {
    for (int i = 0; i < 1000 && !cond(); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return cond();
  };
  for (bool stream : {true, false}) {
    const uint64_t cancelled = s.metrics->cancelled;
    auto sock = start(stream);
    if (stream) {  // its first event has arrived
      std::string got;
      char buf[4096];
      while (got.find("data: ") == std::string::npos)
        got.append(buf, sock->read_some(net::buffer(buf)));
    }
    ASSERT_TRUE(wait_for([&] { return s.metrics->kv_blocks_used > 0; }));
    EXPECT_GT(vllm_metric(s.port(), "vllm:kv_cache_usage_perc"), 0);
    EXPECT_EQ(vllm_metric(s.port(), "vllm:num_requests_running"), 1);
    const uint64_t before = s.metrics->generated_tokens;
    sock->close();
    EXPECT_TRUE(wait_for([&] { return s.metrics->kv_blocks_used == 0; })) << "stream " << stream;
    EXPECT_EQ(s.metrics->cancelled, cancelled + 1);
    EXPECT_EQ(s.metrics->running, 0);
    EXPECT_EQ(vllm_metric(s.port(), "vllm:kv_cache_usage_perc"), 0);
    // Freed at the step after the close: far fewer than the 400 tokens asked for.
    EXPECT_LT(s.metrics->generated_tokens - before, 100u);
  }
  EXPECT_LT(s.metrics->generated_tokens, 400u);
  EXPECT_EQ(http_request(s.port(), "GET", "/health").status, 200);
}

TEST(ServeContinuous, SmallKvPoolPreemptsAndStillAnswersEveryRequestRightly) {
  ServeConfig cfg;
  cfg.max_batch = 6;
  cfg.block_size = 4;
  cfg.kv_blocks = 34;  // one full context (32 blocks of 128 tokens) and a little
  cfg.cache_entries = 0;
  Running s(cfg);
  std::vector<std::future<HttpResult>> futs;
  for (int i = 0; i < 6; ++i)
    futs.push_back(std::async(std::launch::async, [&] {
      return s.post("/v1/completions", {{"prompt", "the old man"},
                                        {"max_tokens", 40},
                                        {"temperature", 0},
                                        {"ignore_eos", true}});
    }));
  const Expected want = generate_alone("the old man", greedy(40));
  for (auto& f : futs) {
    HttpResult r = f.get();
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(json::parse(r.body)["choices"][0]["text"], want.text);
  }
  EXPECT_GT(s.metrics->preemptions, 0u);  // 6 x 11 blocks do not fit in 34
  EXPECT_EQ(s.metrics->kv_blocks_used, 0);
}

// ---- chat, logprobs, stop, API key
// -----------------------------------------------------------------

TEST(ServeChat, MessagesAreRenderedByTheModelsTemplateAndAnsweredInOpenAiShape) {
  // A model directory with its own chat template.
  const std::string dir =
      std::string(SHARDLM_TEST_TMP) + "/serve_chat_" + std::to_string(::getpid());
  fs::remove_all(dir);
  fs::copy(small_model(), dir);
  {
    std::ofstream f(dir + "/chat_template.json");
    f << R"({"name": "tiny", "roles": {"system": {"prefix": "", "suffix": ". "},
             "user": {"prefix": "the man: ", "suffix": ". "},
             "assistant": {"prefix": "the dog: ", "suffix": ". "}},
            "generation_prompt": "the dog:", "stop": ["the man:"]})";
  }
  ServeConfig cfg;
  cfg.cache_entries = 0;
  Running s(cfg, dir);
  const std::vector<ChatMessage> msgs = {{"system", "a tree"}, {"user", "the cat sat"}};
  const ChatTemplate t = ChatTemplate::load_beside(dir + "/model.safetensors");
  EXPECT_EQ(t.name, "tiny");
  const std::string rendered = t.render(msgs);
  EXPECT_EQ(rendered, "a tree. the man: the cat sat. the dog:");
  const json body = {{"messages",
                      {{{"role", "system"}, {"content", "a tree"}},
                       {{"role", "user"}, {"content", "the cat sat"}}}},
                     {"max_tokens", 20},
                     {"temperature", 0}};
  HttpResult r = s.post("/v1/chat/completions", body);
  ASSERT_EQ(r.status, 200) << r.body;
  json j = json::parse(r.body);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["id"].get<std::string>().rfind("chatcmpl-", 0), 0u);
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  const Expected want = generate_alone(rendered, greedy(20));
  std::string text = want.text;
  if (auto cut = text.find("the man:"); cut != std::string::npos) text.resize(cut);
  EXPECT_EQ(j["choices"][0]["message"]["content"], text);
  EXPECT_EQ(j["usage"]["prompt_tokens"],
            static_cast<int64_t>(s.engine->tokenizer().encode(rendered).size()));
  // Streamed: a role delta first, content deltas that add up to the same text, then the end.
  json sb = body;
  sb["stream"] = true;
  sb["n"] = 2;
  r = s.post("/v1/chat/completions", sb);
  ASSERT_EQ(r.status, 200) << r.body;
  auto events = sse_events(r.body);
  ASSERT_GE(events.size(), 5u);
  EXPECT_EQ(events.back(), "[DONE]");
  std::vector<std::string> content(2);
  std::vector<bool> role(2, false), done(2, false);
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    json e = json::parse(events[i]);
    EXPECT_EQ(e["object"], "chat.completion.chunk");
    const json& c = e["choices"][0];
    const size_t k = c["index"];
    if (c["delta"].contains("role")) {
      EXPECT_FALSE(role[k]);
      EXPECT_EQ(content[k], "");  // the role comes first
      role[k] = true;
    }
    if (c["delta"].contains("content")) content[k] += c["delta"]["content"].get<std::string>();
    if (!c["finish_reason"].is_null()) done[k] = true;
  }
  EXPECT_TRUE(role[0] && role[1] && done[0] && done[1]);
  EXPECT_EQ(content[0], text);
  EXPECT_EQ(content[1], text);  // greedy: both choices alike
  // The default template for a model without one.
  EXPECT_EQ(ChatTemplate::base_default().render({{"user", "hi"}}), "User: hi\nAssistant:");
  HttpResult bad = s.post("/v1/chat/completions", {{"messages", {{{"role", "tool"}}}}});
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(json::parse(bad.body)["error"]["param"], "messages");
  fs::remove_all(dir);
}

TEST(ServeChat, LogprobsComeInEachEndpointsOpenAiShape) {
  ServeConfig cfg;
  cfg.cache_entries = 0;
  Running s(cfg);
  HttpResult r = s.post("/v1/completions", {{"prompt", "the cat"},
                                            {"max_tokens", 8},
                                            {"temperature", 0},
                                            {"ignore_eos", true},
                                            {"logprobs", 3}});
  ASSERT_EQ(r.status, 200) << r.body;
  json lp = json::parse(r.body)["choices"][0]["logprobs"];
  ASSERT_EQ(lp["tokens"].size(), 8u);
  ASSERT_EQ(lp["token_logprobs"].size(), 8u);
  ASSERT_EQ(lp["top_logprobs"].size(), 8u);
  ASSERT_EQ(lp["text_offset"].size(), 8u);
  EXPECT_EQ(lp["text_offset"][0], 0);
  for (size_t i = 0; i < 8; ++i) {
    const double chosen = lp["token_logprobs"][i];
    EXPECT_LE(chosen, 0.0);
    const json& top = lp["top_logprobs"][i];
    ASSERT_TRUE(top.is_object());
    EXPECT_GE(top.size(), 1u);
    EXPECT_LE(top.size(), 4u);
    double best = -1e9;
    for (auto& [k, v] : top.items()) best = std::max(best, v.get<double>());
    EXPECT_NEAR(chosen, best, 1e-6);  // greedy: the chosen token is the most probable
  }
  // Chat: {"content": [{token, logprob, bytes, top_logprobs: [...]}]}.
  r = s.post("/v1/chat/completions", {{"messages", {{{"role", "user"}, {"content", "the cat"}}}},
                                      {"max_tokens", 5},
                                      {"temperature", 0},
                                      {"ignore_eos", true},
                                      {"logprobs", true},
                                      {"top_logprobs", 2}});
  ASSERT_EQ(r.status, 200) << r.body;
  json c = json::parse(r.body)["choices"][0]["logprobs"];
  ASSERT_TRUE(c["content"].is_array());
  EXPECT_GE(c["content"].size(), 1u);
  for (const auto& t : c["content"]) {
    EXPECT_TRUE(t["token"].is_string());
    EXPECT_TRUE(t["bytes"].is_array());
    EXPECT_EQ(t["top_logprobs"].size(), 2u);
    EXPECT_GE(t["top_logprobs"][0]["logprob"].get<double>(),
              t["top_logprobs"][1]["logprob"].get<double>());
  }
  EXPECT_TRUE(c["refusal"].is_null());
  // Streamed completions carry each text's tokens; together they are the whole list.
  r = s.post("/v1/completions", {{"prompt", "the cat"},
                                 {"max_tokens", 8},
                                 {"temperature", 0},
                                 {"ignore_eos", true},
                                 {"logprobs", 1},
                                 {"stream", true}});
  json streamed = json::array();
  for (const auto& e : sse_events(r.body)) {
    if (e == "[DONE]") continue;
    json ch = json::parse(e)["choices"][0];
    if (!ch["logprobs"].is_null())
      for (auto& t : ch["logprobs"]["tokens"]) streamed.push_back(t);
  }
  EXPECT_EQ(streamed, lp["tokens"]);
  // top_logprobs without logprobs is refused.
  r = s.post("/v1/chat/completions",
             {{"messages", {{{"role", "user"}, {"content", "x"}}}}, {"top_logprobs", 2}});
  EXPECT_EQ(r.status, 400);
}

TEST(ServeChat, StopStringsAreHeldBackWhileStreaming) {
  ServeConfig cfg;
  cfg.cache_entries = 0;
  Running s(cfg);
  // A two-character stop string that a greedy continuation contains (printable
  // ASCII: a random model's bytes are often not valid UTF-8).
  std::string prompt, stop;
  Expected full;
  for (const std::string p : {"the cat sat", "the old man", "a bird sang in the", "fire", "the"}) {
    full = generate_alone(p, greedy(40));
    for (size_t i = 2; i + 1 < full.text.size() && stop.empty(); ++i)
      if (std::isgraph(static_cast<unsigned char>(full.text[i])) &&
          std::isgraph(static_cast<unsigned char>(full.text[i + 1])))
        stop = full.text.substr(i, 2);
    if (!stop.empty()) {
      prompt = p;
      break;
    }
  }
  ASSERT_FALSE(stop.empty()) << "no two printable ASCII characters in any continuation";
  json body = {{"prompt", prompt}, {"max_tokens", 40}, {"temperature", 0}, {"stop", stop}};
  HttpResult whole = s.post("/v1/completions", body);
  const std::string want = json::parse(whole.body)["choices"][0]["text"];
  EXPECT_EQ(want, full.text.substr(0, full.text.find(stop)));
  body["stream"] = true;
  HttpResult r = s.post("/v1/completions", body);
  std::string text;
  for (const auto& e : sse_events(r.body)) {
    if (e == "[DONE]") continue;
    const std::string piece = json::parse(e)["choices"][0]["text"];
    text += piece;
    // Never a piece of the stop string on the wire.
    EXPECT_EQ(text.find(stop), std::string::npos);
    EXPECT_LE(text.size(), want.size());
  }
  EXPECT_EQ(text, want);
}

TEST(ServeAuth, AnApiKeyGuardsV1AndA401IsCounted) {
  ServeConfig cfg;
  cfg.api_key = "sekret-key";
  Running s(cfg);
  HttpResult r = http_request(s.port(), "GET", "/v1/models");
  EXPECT_EQ(r.status, 401);
  json e = json::parse(r.body)["error"];
  EXPECT_EQ(e["type"], "invalid_request_error");
  EXPECT_EQ(e["code"], "invalid_api_key");
  EXPECT_EQ(r.headers["www-authenticate"], "Bearer");
  r = http_request(s.port(), "POST", "/v1/completions", R"({"prompt": "a"})", "application/json",
                   "Bearer wrong-key!");
  EXPECT_EQ(r.status, 401);
  r = http_request(s.port(), "POST", "/v1/completions", R"({"prompt": "a", "max_tokens": 2})",
                   "application/json", "Bearer sekret-key");
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(http_request(s.port(), "GET", "/health").status, 200);  // not under /v1
  EXPECT_EQ(metric_of(s.port(), "shardlm_serve_unauthorized_total"), 2);
}

// ---- the official OpenAI SDK against the real binary
// ---------------------------------------------

TEST(ServeSdk, TheOpenAiNodeSdkDrivesCompletionsAndChatWithAnApiKey) {
  const std::string sdk = SHARDLM_SDK_DIR;
  if (std::string(SHARDLM_NODE).empty()) GTEST_SKIP() << "node not found at configure time";
  if (!fs::exists(sdk + "/node_modules/openai"))
    GTEST_SKIP() << "the openai package is not installed: ./shardlm.sh setup (npm ci in " << sdk
                 << ")";
  const std::string dir = small_model();
  ServeProcess p;  // the key in the environment: the SHARDLM_API_KEY form of --api-key
  ASSERT_TRUE(p.start({"--model", dir, "--port", "0", "--threads", "1", "--cache-entries", "0"},
                      {"SHARDLM_API_KEY=sdk-test-key"}));
  const std::string port = std::to_string(p.port);
  const std::string cmd = std::string(SHARDLM_NODE) + " " + sdk + "/sdk_test.mjs --port " + port +
                          " --key sdk-test-key 2>&1";
  FILE* node = ::popen(cmd.c_str(), "r");
  ASSERT_NE(node, nullptr);
  std::string report;
  char line[1024];
  while (std::fgets(line, sizeof line, node)) report += line;
  const int rc = ::pclose(node);
  p.stop();
  EXPECT_EQ(rc, 0) << report;
  EXPECT_NE(report.find(" passed, 0 failed"), std::string::npos) << report;
  EXPECT_EQ(report.find("FAIL"), std::string::npos) << report;
}
