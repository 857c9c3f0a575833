// The HTTP inference server end to end: a tiny randomly initialised model and a
// tokenizer trained here are saved to disk, served by serve::Server on a free
// port in this process (or by the real `shardlm serve` for the SIGTERM test),
// and spoken to over real sockets. Checks: completions equal model::Generator's
// output, SSE streaming, a client leaving mid-stream, batching of concurrent
// requests, the response cache, seeded sampling, every error status, queue-full
// 503 and a clean shutdown.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cctype>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <regex>
#include <thread>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "serve/completion.h"
#include "tests/serve/fixtures.h"

using namespace serve_test;
using shardlm::serve::client::sse_events;

// ---- protocol (no server) -----------------------------------------------------------------

TEST(ServeProtocol, ParsesOpenAiFormsAndGroupsCompatibleParameters) {
  ServeConfig cfg;
  cfg.default_max_tokens = 7;
  CompletionRequest r = parse_completion(R"({"prompt": "hi"})", cfg);
  ASSERT_EQ(r.prompts.size(), 1u);
  EXPECT_EQ(r.prompts[0].text, "hi");
  EXPECT_EQ(r.params.max_tokens, 7);
  EXPECT_EQ(r.params.temperature, 1.0);  // OpenAI's default: sampling
  EXPECT_FALSE(r.params.deterministic());
  r = parse_completion(R"({"prompt": [[1, 2], "x", [3]], "stop": "\n", "top_k": -1})", cfg);
  ASSERT_EQ(r.prompts.size(), 3u);
  EXPECT_TRUE(r.prompts[0].is_ids);
  EXPECT_EQ(r.prompts[0].ids, (std::vector<int64_t>{1, 2}));
  EXPECT_FALSE(r.prompts[1].is_ids);
  EXPECT_EQ(r.params.stop, std::vector<std::string>{"\n"});
  EXPECT_EQ(r.params.top_k, 0);
  r = parse_completion(R"({"prompt": [5, 6, 7]})", cfg);
  ASSERT_EQ(r.prompts.size(), 1u);
  EXPECT_EQ(r.prompts[0].ids.size(), 3u);
  // OpenAI clients send neutral values of unsupported fields: accepted.
  EXPECT_NO_THROW(parse_completion(
      R"({"prompt": "a", "logprobs": null, "echo": false, "best_of": 1, "user": "u"})", cfg));
  EXPECT_EQ(parse_completion(R"({"prompt": "a"})", cfg).params.logprobs, -1);
  EXPECT_EQ(parse_completion(R"({"prompt": "a", "logprobs": 3})", cfg).params.logprobs, 3);
  EXPECT_THROW(parse_completion(R"({"prompt": "a", "echo": true})", cfg), RequestError);

  // Greedy requests batch together whatever their sampling fields and seed say;
  // sampling ones by their parameters; seeded sampling runs alone.
  SamplingParams g1, g2, s1, s2, seeded;
  g1.temperature = g2.temperature = 0;
  g2.top_k = 5;
  g2.seed = 3;
  g2.max_tokens = 99;
  EXPECT_EQ(g1.batch_key(), g2.batch_key());
  EXPECT_EQ(g2.to_json().count("seed"), 0u);  // greedy: the seed is not part of the cache key
  s1.temperature = s2.temperature = 0.8;
  s2.top_p = 0.9;
  EXPECT_NE(s1.batch_key(), s2.batch_key());
  EXPECT_NE(s1.batch_key(), g1.batch_key());
  g2.repetition_penalty = 1.2;
  EXPECT_NE(g1.batch_key(), g2.batch_key());
  seeded.seed = 4;
  EXPECT_EQ(seeded.batch_key(), "");
  EXPECT_TRUE(seeded.deterministic());
}

TEST(ServeProtocol, PrepareChecksPromptsAgainstTheModelAndKeysTheCache) {
  const data::Tokenizer tok = data::Tokenizer::load(small_model() + "/tokenizer.json");
  ModelInfo mi;
  mi.source = "m.safetensors";
  mi.vocab_size = static_cast<int64_t>(tok.vocab_size());
  mi.context_length = 16;
  ServeConfig cfg;
  cfg.max_batch = 2;
  auto prep = [&](const std::string& body) {
    return prepare_completion(parse_completion(body, cfg), tok, mi, cfg);
  };
  auto ids = tok.encode("the cat");
  const json as_ids(std::vector<int64_t>(ids.begin(), ids.end()));
  PreparedCompletion a = prep(R"({"prompt": "the cat", "max_tokens": 4, "temperature": 0})");
  PreparedCompletion b =
      prep(R"({"prompt": )" + as_ids.dump() + R"(, "max_tokens": 4, "temperature": 0})");
  EXPECT_EQ(a.prompt_tokens, static_cast<int64_t>(ids.size()));
  EXPECT_EQ(a.job.prompts, b.job.prompts);
  EXPECT_FALSE(a.cache_key.empty());
  EXPECT_EQ(a.cache_key, b.cache_key);  // text and its ids are one entry
  EXPECT_TRUE(prep(R"({"prompt": "the cat", "max_tokens": 4})").cache_key.empty());  // sampling
  auto error_of = [&](const std::string& body) -> std::pair<std::string, std::string> {
    try {
      prep(body);
    } catch (const RequestError& e) {
      return {e.param(), e.what()};
    }
    return {"", ""};
  };
  auto e = error_of(R"({"prompt": [[5], [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]], "max_tokens": 8})");
  EXPECT_EQ(e.first, "max_tokens");
  EXPECT_NE(e.second.find("prompt[1]"), std::string::npos) << e.second;
  e = error_of(R"({"prompt": [[1, 2, 999]]})");
  EXPECT_EQ(e.first, "prompt");
  EXPECT_NE(e.second.find("token 2 is id 999"), std::string::npos) << e.second;
  e = error_of(R"({"prompt": ["a", "b"], "n": 17, "max_tokens": 1})");
  EXPECT_EQ(e.first, "n");  // 34 rows > 16 x max_batch
}

// ---- completions --------------------------------------------------------------------------

TEST(ServeCompletion, GreedyTextEqualsTheGeneratorAndUsageCountsTokens) {
  Running s;
  for (const std::string prompt : {"the cat sat", "a dog ran to the old man. the bird"}) {
    const Expected want = generate_alone(prompt, greedy(20));
    HttpResult r =
        s.post("/v1/completions", {{"prompt", prompt}, {"max_tokens", 20}, {"temperature", 0}});
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.headers["content-type"], "application/json");
    json j = json::parse(r.body);
    EXPECT_EQ(j["object"], "text_completion");
    EXPECT_EQ(j["choices"][0]["text"], want.text) << prompt;
    EXPECT_EQ(j["choices"][0]["finish_reason"], want.finish);
    const auto prompt_tokens = static_cast<int64_t>(s.engine->tokenizer().encode(prompt).size());
    EXPECT_EQ(j["usage"]["prompt_tokens"], prompt_tokens);
    EXPECT_EQ(j["usage"]["completion_tokens"], want.tokens);
    EXPECT_EQ(j["usage"]["total_tokens"], prompt_tokens + want.tokens);
  }
  // A list of prompts and n: one choice per (prompt, sample), prompt-major.
  HttpResult r = s.post(
      "/v1/completions",
      {{"prompt", {"the cat", "a bird sang"}}, {"max_tokens", 8}, {"temperature", 0}, {"n", 2}});
  ASSERT_EQ(r.status, 200) << r.body;
  json j = json::parse(r.body);
  ASSERT_EQ(j["choices"].size(), 4u);
  EXPECT_EQ(j["choices"][0]["text"], generate_alone("the cat", greedy(8)).text);
  EXPECT_EQ(j["choices"][1]["text"], j["choices"][0]["text"]);
  EXPECT_EQ(j["choices"][2]["text"], generate_alone("a bird sang", greedy(8)).text);
  EXPECT_EQ(j["choices"][3]["index"], 3);
}

TEST(ServeCompletion, StopStringsEndTheTextBeforeThemAndTokenIdPromptsWork) {
  Running s;
  // A prompt whose continuation holds an ASCII letter after its first character:
  // that letter is the stop string (the raw bytes of a random model's output are
  // rarely valid UTF-8, and a stop string must be).
  for (const std::string prompt : {"the old man", "the cat", "a bird", "fire", "in the"}) {
    load::ModelBundle im = load::load_model(small_model());
    const auto& tok = s.engine->tokenizer();
    model::GenerationConfig g = greedy(24);
    g.eos_ids = {static_cast<int64_t>(*tok.eos_id())};
    auto ids32 = tok.encode(prompt);
    const std::vector<int64_t> ids(ids32.begin(), ids32.end());
    auto seq = model::Generator(im.model, g).generate({ids}).sequences[0][0];
    std::vector<uint32_t> out;
    for (int64_t t : seq.tokens)
      if (t != g.eos_ids[0]) out.push_back(static_cast<uint32_t>(t));
    const std::string raw = tok.decode_bytes(out);
    size_t at = 1;
    while (at < raw.size() && !std::isalpha(static_cast<unsigned char>(raw[at]))) ++at;
    if (at >= raw.size()) continue;
    const std::string stop(1, raw[at]);
    HttpResult r =
        s.post("/v1/completions",
               {{"prompt", prompt}, {"max_tokens", 24}, {"temperature", 0}, {"stop", {stop}}});
    ASSERT_EQ(r.status, 200) << r.body;
    json j = json::parse(r.body);
    EXPECT_EQ(j["choices"][0]["text"], valid_utf8(raw.substr(0, raw.find(stop))));
    EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
    // The same prompt as token ids.
    r = s.post("/v1/completions", {{"prompt", ids}, {"max_tokens", 24}, {"temperature", 0}});
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(json::parse(r.body)["choices"][0]["text"], valid_utf8(raw));
    return;
  }
  FAIL() << "no prompt gave a continuation with an ASCII letter";
}

TEST(ServeCompletion, AVocabularyPaddedPastTheTokenizerGivesTextWithoutTheExtraIds) {
  // Models often round the vocabulary up (GPT-2's 50257 to 50304): the extra ids
  // have no text, and producing one must not fail the request.
  Running s(ServeConfig{}, make_model("padded", 2, 32, 128, /*extra_vocab=*/200));
  ASSERT_GT(s.engine->info().vocab_size, static_cast<int64_t>(s.engine->tokenizer().vocab_size()));
  HttpResult r = s.post("/v1/completions", {{"prompt", "the cat"},
                                            {"max_tokens", 60},
                                            {"temperature", 1.0},
                                            {"seed", 1},
                                            {"ignore_eos", true}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["usage"]["completion_tokens"], 60);
  // The same draws through model::Generator do contain ids past the tokenizer.
  model::GenerationConfig g = greedy(60);
  g.strategy = "sample";
  g.seed = 1;
  g.pad_id = *s.engine->tokenizer().pad_id();
  model::Generator gen(load::load_model(s.engine->info().source).model, g);
  auto ids = s.engine->tokenizer().encode("the cat");
  const auto out = gen.generate({std::vector<int64_t>(ids.begin(), ids.end())}).sequences[0][0];
  const auto tok_vocab = static_cast<int64_t>(s.engine->tokenizer().vocab_size());
  EXPECT_TRUE(
      std::any_of(out.tokens.begin(), out.tokens.end(), [&](int64_t t) { return t >= tok_vocab; }));
}

TEST(ServeCompletion, SeededSamplingReplaysAndOtherSeedsDiffer) {
  Running s;
  json body = {{"prompt", "the cat"}, {"max_tokens", 24}, {"temperature", 1.0},
               {"top_k", 50},         {"seed", 11},       {"n", 2}};
  HttpResult a = s.post("/v1/completions", body);
  HttpResult b = s.post("/v1/completions", body);
  ASSERT_EQ(a.status, 200) << a.body;
  EXPECT_EQ(json::parse(a.body)["choices"], json::parse(b.body)["choices"]);
  body["seed"] = 12;
  HttpResult c = s.post("/v1/completions", body);
  EXPECT_NE(json::parse(a.body)["choices"], json::parse(c.body)["choices"]);
  // The seed means what it means to model::Generator: the same draws.
  model::GenerationConfig g = greedy(24);
  g.strategy = "sample";
  g.top_k = 50;
  g.seed = 11;
  g.num_return_sequences = 1;
  // (n = 2 rows run as two prompts of one batch, so compare with n = 1.)
  body["seed"] = 11;
  body["n"] = 1;
  HttpResult one = s.post("/v1/completions", body);
  EXPECT_EQ(json::parse(one.body)["choices"][0]["text"], generate_alone("the cat", g).text);
}

// ---- streaming --------------------------------------------------------------------------------

TEST(ServeStream, EventsConcatenateToTheTextAndArriveBeforeTheEnd) {
  Running s;
  const Expected want = generate_alone("the bird sang in the", greedy(100));
  HttpResult r = s.post("/v1/completions", {{"prompt", "the bird sang in the"},
                                            {"max_tokens", 100},
                                            {"temperature", 0},
                                            {"stream", true},
                                            {"stream_options", {{"include_usage", true}}}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.headers["content-type"], "text/event-stream");
  EXPECT_TRUE(r.chunked);
  auto events = sse_events(r.body);
  ASSERT_GE(events.size(), 4u);
  EXPECT_EQ(events.back(), "[DONE]");
  std::string text, finish;
  int64_t completion_tokens = -1;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    json e = json::parse(events[i]);
    EXPECT_EQ(e["object"], "text_completion");
    if (e.contains("usage")) {
      completion_tokens = e["usage"]["completion_tokens"];
      continue;
    }
    text += e["choices"][0]["text"].get<std::string>();
    if (!e["choices"][0]["finish_reason"].is_null()) finish = e["choices"][0]["finish_reason"];
  }
  EXPECT_EQ(text, want.text);
  EXPECT_EQ(finish, want.finish);
  EXPECT_EQ(completion_tokens, want.tokens);
  // One HTTP chunk per event; the first arrived in an earlier socket read than the last.
  ASSERT_EQ(r.chunks.size(), events.size());
  EXPECT_LT(r.chunk_reads.front(), r.chunk_reads.back());
  // The non-streamed answer is the same text.
  HttpResult whole =
      s.post("/v1/completions",
             {{"prompt", "the bird sang in the"}, {"max_tokens", 100}, {"temperature", 0}});
  EXPECT_EQ(json::parse(whole.body)["choices"][0]["text"], text);
}

TEST(ServeStream, AKeepAliveConnectionServesAStreamThenMoreRequests) {
  Running s;
  namespace beast = boost::beast;
  namespace http = beast::http;
  namespace net = boost::asio;
  net::io_context ioc;
  beast::tcp_stream stream(ioc);
  stream.connect(net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), s.port()));
  beast::flat_buffer buf;
  auto ask = [&](http::verb verb, const std::string& target, const std::string& body) {
    http::request<http::string_body> req{verb, target, 11};
    req.set(http::field::host, "127.0.0.1");
    req.keep_alive(true);
    req.body() = body;
    req.prepare_payload();
    http::write(stream, req);
    http::response<http::string_body> res;
    http::read(stream, buf, res);
    return res;
  };
  auto a = ask(http::verb::post, "/v1/completions",
               json({{"prompt", "the cat"}, {"max_tokens", 6}, {"stream", true}}).dump());
  EXPECT_EQ(a.result_int(), 200u);
  EXPECT_TRUE(a.keep_alive());
  EXPECT_EQ(sse_events(a.body()).back(), "[DONE]");
  auto b = ask(http::verb::post, "/v1/completions", json({{"prompt", "the cat"}}).dump());
  EXPECT_EQ(b.result_int(), 200u);
  auto c = ask(http::verb::get, "/v1/nothing", "");
  EXPECT_EQ(c.result_int(), 404u);
  auto d = ask(http::verb::get, "/health", "");
  EXPECT_EQ(d.result_int(), 200u);
  EXPECT_EQ(s.metrics->completions, 2u);
}

TEST(ServeStream, AClientThatLeavesEndsItsRowsEarly) {
  Running s(ServeConfig{}, make_model("wide", 4, 128, 512));
  namespace net = boost::asio;
  net::io_context ioc;
  net::ip::tcp::socket sock(ioc);
  sock.connect({net::ip::make_address("127.0.0.1"), s.port()});
  const std::string body = json({{"prompt", "the cat"},
                                 {"max_tokens", 400},
                                 {"temperature", 0},
                                 {"ignore_eos", true},
                                 {"stream", true}})
                               .dump();
  const std::string req =
      "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
      "application/json\r\nContent-Length: " +
      std::to_string(body.size()) + "\r\n\r\n" + body;
  net::write(sock, net::buffer(req));
  std::string got;
  char buf[4096];
  while (got.find("data: ") == std::string::npos) got.append(buf, sock.read_some(net::buffer(buf)));
  sock.close();  // gone after the first event
  for (int i = 0; i < 400 && (s.metrics->cancelled == 0 || s.metrics->running != 0); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(s.metrics->cancelled, 1u);
  EXPECT_EQ(s.metrics->running, 0);
  EXPECT_LT(s.metrics->generated_tokens, 400u);  // the row ended early
  // The server goes on serving.
  EXPECT_EQ(http_request(s.port(), "GET", "/health").status, 200);
}

// ---- batching -----------------------------------------------------------------------------------

TEST(ServeBatch, ConcurrentRequestsShareBatchesAndGetTheirOwnText) {
  ServeConfig cfg;
  cfg.scheduler = "static";
  cfg.max_batch = 8;
  cfg.batch_wait_ms = 200;  // generous: the 8 requests arrive within it even on a busy machine
  cfg.cache_entries = 0;
  Running s(cfg);
  const std::vector<std::string> prompts = {"the cat",   "a dog ran", "the old man sat",
                                            "bird",      "the mat",   "and then the dog slept by",
                                            "in a tree", "fire"};
  std::vector<int64_t> max_tokens = {5, 9, 12, 3, 16, 7, 10, 4};  // per-row limits in one batch
  expect_concurrent_greedy_equals_alone(s, prompts, max_tokens);
  const uint64_t batches = s.metrics->batches;
  EXPECT_LT(batches, prompts.size());
  EXPECT_EQ(s.metrics->batch_rows, prompts.size());
  EXPECT_EQ(s.metrics->completions, prompts.size());
  const std::string m = http_request(s.port(), "GET", "/metrics").body;
  EXPECT_EQ(metric(m, "shardlm_serve_batches_total"), static_cast<double>(batches));
  EXPECT_EQ(metric(m, "shardlm_serve_batch_size_count"), static_cast<double>(batches));
}

TEST(ServeBatch, IncompatibleRequestsRunInSeparateBatches) {
  ServeConfig cfg;
  cfg.scheduler = "static";
  cfg.max_batch = 8;
  cfg.batch_wait_ms = 200;
  Running s(cfg);
  // Greedy and seeded sampling never share a batch; both answers stay right.
  auto a = std::async(std::launch::async, [&] {
    return s.post("/v1/completions",
                  {{"prompt", "the cat"}, {"max_tokens", 6}, {"temperature", 0}});
  });
  auto b = std::async(std::launch::async, [&] {
    return s.post("/v1/completions",
                  {{"prompt", "the cat"}, {"max_tokens", 6}, {"temperature", 0.8}, {"seed", 3}});
  });
  HttpResult ra = a.get(), rb = b.get();
  ASSERT_EQ(ra.status, 200);
  ASSERT_EQ(rb.status, 200);
  EXPECT_EQ(json::parse(ra.body)["choices"][0]["text"], generate_alone("the cat", greedy(6)).text);
  EXPECT_EQ(s.metrics->batches, 2u);
}

// ---- cache --------------------------------------------------------------------------------------

TEST(ServeCache, RepeatedDeterministicRequestIsAHit) {
  Running s;
  const json body = {{"prompt", "the dog"}, {"max_tokens", 10}, {"temperature", 0}};
  HttpResult first = s.post("/v1/completions", body);
  const uint64_t generated = s.metrics->generated_tokens;
  HttpResult second = s.post("/v1/completions", body);
  ASSERT_EQ(first.status, 200);
  ASSERT_EQ(second.status, 200);
  EXPECT_EQ(first.headers["x-cache"], "miss");
  EXPECT_EQ(second.headers["x-cache"], "hit");
  json a = json::parse(first.body), b = json::parse(second.body);
  EXPECT_EQ(a["choices"], b["choices"]);
  EXPECT_EQ(a["usage"], b["usage"]);
  EXPECT_NE(a["id"], b["id"]);
  EXPECT_EQ(s.metrics->generated_tokens, generated);  // the hit never reached the model
  // Other parameters are another entry; unseeded sampling is never cached.
  EXPECT_EQ(
      s.post("/v1/completions", {{"prompt", "the dog"}, {"max_tokens", 9}, {"temperature", 0}})
          .headers["x-cache"],
      "miss");
  const json sampled = {{"prompt", "the dog"}, {"max_tokens", 4}, {"temperature", 0.7}};
  EXPECT_EQ(s.post("/v1/completions", sampled).headers["x-cache"], "bypass");
  EXPECT_EQ(s.post("/v1/completions", sampled).headers["x-cache"], "bypass");
  // Streamed: the same entry, replayed as events (one per choice, then the ends).
  json streamed = body;
  streamed["stream"] = true;
  HttpResult st = s.post("/v1/completions", streamed);
  ASSERT_EQ(st.status, 200);
  EXPECT_EQ(st.headers["x-cache"], "hit");
  auto events = sse_events(st.body);
  ASSERT_EQ(events.size(), 3u);  // text, finish, [DONE]
  EXPECT_EQ(json::parse(events[0])["choices"][0]["text"], a["choices"][0]["text"]);
  EXPECT_EQ(json::parse(events[1])["choices"][0]["finish_reason"],
            a["choices"][0]["finish_reason"]);
  // A streamed miss fills the cache for the plain request.
  json other = {{"prompt", "a bird"}, {"max_tokens", 6}, {"temperature", 0}, {"stream", true}};
  EXPECT_EQ(s.post("/v1/completions", other).headers["x-cache"], "miss");
  other.erase("stream");
  HttpResult plain = s.post("/v1/completions", other);
  EXPECT_EQ(plain.headers["x-cache"], "hit");
  EXPECT_EQ(json::parse(plain.body)["choices"][0]["text"],
            generate_alone("a bird", greedy(6)).text);
  const std::string m = http_request(s.port(), "GET", "/metrics").body;
  EXPECT_EQ(metric(m, "shardlm_serve_cache_hits_total"), 3);
  EXPECT_EQ(metric(m, "shardlm_serve_cache_entries"), 3);
}

TEST(ServeCache, LruEvictsByEntriesAndBytes) {
  ResponseCache c(2, 1000);
  c.put("a", "1");
  c.put("b", "2");
  ASSERT_TRUE(c.get("a"));  // a is now the most recent
  c.put("c", "3");          // evicts b
  EXPECT_FALSE(c.get("b"));
  EXPECT_EQ(*c.get("a"), "1");
  EXPECT_EQ(*c.get("c"), "3");
  EXPECT_EQ(c.evictions(), 1u);
  ResponseCache small(100, 20);
  small.put("k1", std::string(8, 'x'));  // 10 bytes
  small.put("k2", std::string(8, 'y'));  // 20
  small.put("k3", std::string(8, 'z'));  // 30 > 20: k1 goes
  EXPECT_EQ(small.entries(), 2u);
  EXPECT_LE(small.bytes(), 20u);
  EXPECT_FALSE(small.get("k1"));
  small.put("huge", std::string(100, 'h'));  // larger than the bound: not stored
  EXPECT_FALSE(small.get("huge"));
  EXPECT_EQ(small.hits(), 0u);
  EXPECT_EQ(small.misses(), 2u);
}

// ---- other endpoints and errors -----------------------------------------------------------------

TEST(ServeHttp, TokenizeModelsHealthAndMetrics) {
  Running s;
  HttpResult r = s.post("/v1/tokenize", {{"prompt", "the cat sat"}});
  ASSERT_EQ(r.status, 200) << r.body;
  auto ids = json::parse(r.body)["tokens"].get<std::vector<int64_t>>();
  auto want = s.engine->tokenizer().encode("the cat sat");
  EXPECT_EQ(ids, std::vector<int64_t>(want.begin(), want.end()));
  r = s.post("/v1/detokenize", {{"tokens", ids}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(json::parse(r.body)["prompt"], "the cat sat");

  r = http_request(s.port(), "GET", "/v1/models");
  ASSERT_EQ(r.status, 200);
  json m = json::parse(r.body)["data"][0];
  EXPECT_EQ(m["id"], s.server->model_name());
  EXPECT_EQ(m["max_model_len"], 128);
  EXPECT_EQ(m["config"]["n_layer"], 2);
  EXPECT_EQ(m["parameters"], s.engine->info().parameters);
  EXPECT_GT(m["parameters"].get<int64_t>(), 0);

  r = http_request(s.port(), "GET", "/health");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(json::parse(r.body)["status"], "ok");
  r = http_request(s.port(), "GET", "/metrics");
  ASSERT_EQ(r.status, 200);
  EXPECT_NE(r.headers["content-type"].find("text/plain"), std::string::npos);
  EXPECT_EQ(metric(r.body, "shardlm_serve_queue_depth"), 0);
  EXPECT_NE(r.body.find("shardlm_serve_http_responses_total{code=\"200\"}"), std::string::npos);
  EXPECT_NE(r.body.find("# TYPE shardlm_serve_request_latency_seconds histogram"),
            std::string::npos);
}

TEST(ServeHttp, BadRequestsGetTheirStatusAndAMessageNamingTheProblem) {
  ServeConfig cfg;
  cfg.max_body_bytes = 4096;
  Running s(cfg);
  struct Case {
    std::string body, param, words;
  };
  const std::vector<Case> cases = {
      {"{not json", "", "not valid JSON"},
      {"[1, 2]", "", "JSON object"},
      {R"({"max_tokens": 4})", "prompt", "required"},
      {R"({"prompt": ""})", "prompt", "empty"},
      {R"({"prompt": []})", "prompt", "empty list"},
      {R"({"prompt": 5})", "prompt", "string or a list"},
      {R"({"prompt": "a", "max_tokens": "ten"})", "max_tokens", "integer"},
      {R"({"prompt": "a", "max_tokens": 0})", "max_tokens", ">= 1"},
      {R"({"prompt": "a", "max_tokens": 500})", "max_tokens", "context"},
      {R"({"prompt": "a", "temperature": -1})", "temperature", "temperature"},
      {R"({"prompt": "a", "top_p": 0})", "top_p", "top_p"},
      {R"({"prompt": "a", "stream": "yes"})", "stream", "true or false"},
      {R"({"prompt": "a", "stop": 3})", "stop", "stop"},
      {R"({"prompt": "a", "n": 0})", "n", "'n'"},
      {R"({"prompt": "a", "max_token": 4})", "max_token", "unknown field 'max_token'"},
      {R"({"prompt": "a", "logprobs": 50})", "logprobs", "0 to 20"},
      {R"({"prompt": "a", "echo": true})", "echo", "not supported"},
      {R"({"prompt": [99999]})", "prompt", "outside the vocabulary"},
  };
  for (const auto& c : cases) {
    HttpResult r = http_request(s.port(), "POST", "/v1/completions", c.body);
    EXPECT_EQ(r.status, 400) << c.body;
    json e = json::parse(r.body)["error"];
    EXPECT_EQ(e["type"], "invalid_request_error") << c.body;
    EXPECT_NE(e["message"].get<std::string>().find(c.words), std::string::npos)
        << c.body << " -> " << e["message"];
    if (!c.param.empty()) EXPECT_EQ(e["param"], c.param) << c.body;
  }
  // A prompt longer than the context names the prompt.
  std::string longp;
  for (int i = 0; i < 200; ++i) longp += "fire ";
  HttpResult r = s.post("/v1/completions", {{"prompt", longp}, {"max_tokens", 1}});
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(json::parse(r.body)["error"]["param"], "prompt");

  r = http_request(s.port(), "GET", "/v2/nothing");
  EXPECT_EQ(r.status, 404);
  EXPECT_NE(json::parse(r.body)["error"]["message"].get<std::string>().find("/v2/nothing"),
            std::string::npos);
  r = http_request(s.port(), "GET", "/v1/completions");
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.headers["allow"], "POST");
  r = http_request(s.port(), "POST", "/health", "{}");
  EXPECT_EQ(r.status, 405);
  r = http_request(s.port(), "POST", "/v1/completions",
                   R"({"prompt": ")" + std::string(10000, 'x') + R"("})");
  EXPECT_EQ(r.status, 413);
  EXPECT_NE(json::parse(r.body)["error"]["message"].get<std::string>().find("4096"),
            std::string::npos);
  r = s.post("/v1/detokenize", {{"tokens", {1, -2}}});
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(json::parse(r.body)["error"]["param"], "tokens");
  // The server is still fine.
  EXPECT_EQ(http_request(s.port(), "GET", "/health").status, 200);
}

TEST(ServeHttp, FullQueueAnswers503) {
  ServeConfig cfg;
  cfg.max_batch = 1;
  cfg.batch_wait_ms = 0;
  cfg.max_queue = 1;
  cfg.cache_entries = 0;
  Running s(cfg);
  std::vector<std::future<HttpResult>> futs;
  for (int i = 0; i < 8; ++i)
    futs.push_back(std::async(std::launch::async, [&] {
      return s.post(
          "/v1/completions",
          {{"prompt", "the cat"}, {"max_tokens", 100}, {"temperature", 0}, {"ignore_eos", true}});
    }));
  int ok = 0, busy = 0;
  for (auto& f : futs) {
    HttpResult r = f.get();
    if (r.status == 200) {
      ++ok;
    } else {
      ASSERT_EQ(r.status, 503) << r.body;
      EXPECT_NE(json::parse(r.body)["error"]["message"].get<std::string>().find("queue is full"),
                std::string::npos);
      EXPECT_EQ(r.headers["retry-after"], "1");
      ++busy;
    }
  }
  EXPECT_GE(ok, 1);
  EXPECT_GE(busy, 1);
  EXPECT_EQ(s.metrics->rejected_queue_full, static_cast<uint64_t>(busy));
}

// ---- the real binary: SIGTERM drains ------------------------------------------------------------

TEST(ServeBinary, SigtermFinishesTheRequestInFlightThenExits) {
  const std::string dir = make_model("wide", 4, 128, 512);
  ServeProcess p;
  ASSERT_TRUE(p.start({"--model", dir, "--port", "0", "--threads", "1"}));
  const uint16_t port = p.port;

  // A long streamed request; SIGTERM once its first event has arrived.
  auto fut = std::async(std::launch::async, [&] {
    return http_request(port, "POST", "/v1/completions",
                        json({{"prompt", "the cat"},
                              {"max_tokens", 400},
                              {"temperature", 0},
                              {"ignore_eos", true},
                              {"stream", true}})
                            .dump());
  });
  // Wait until it is being decoded.
  for (int i = 0; i < 500; ++i) {
    const std::string met = http_request(port, "GET", "/metrics").body;
    if (metric(met, "shardlm_serve_running") >= 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  p.terminate();
  // The request was still running when the signal went out...
  EXPECT_NE(fut.wait_for(std::chrono::seconds(0)), std::future_status::ready);
  // ...and it is answered in full all the same.
  HttpResult r = fut.get();
  ASSERT_EQ(r.status, 200);
  auto events = sse_events(r.body);
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events.back(), "[DONE]");
  json last = json::parse(events[events.size() - 2]);
  EXPECT_EQ(last["choices"][0]["finish_reason"], "length");  // all 400 tokens, not cut short
  std::string rest;
  const int status = p.stop(&rest);
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_NE(rest.find("stopped"), std::string::npos) << rest;
  EXPECT_THROW(http_request(port, "GET", "/health"), std::exception);  // nobody listens
}

// `serve` reads a [serve] section like `train` reads its sections: a --config
// file, --serve.KEY=VALUE overrides, and the flags (aliases of the keys) winning
// over both; a misspelt key is refused by name before anything listens.
TEST(ServeBinary, ConfigFileOverridesAndFlagsAreOneSurface) {
  const std::string dir = make_model("tiny", 1, 32, 64);
  const std::string toml = std::string(SHARDLM_TEST_TMP) + "/serve_cli.toml";
  std::ofstream(toml) << "[serve]\nmodel = \"" << dir
                      << "\"\nport = 0\nthreads = 1\nblock_size = 8\nkv_blocks = 5\n"
                         "api_key = \"file-key\"\nmodel_name = \"from-file\"\n";
  ServeProcess p;
  ASSERT_TRUE(p.start({"--config", toml, "--serve.kv_blocks=9", "--model-name", "from-flag"}));
  EXPECT_NE(p.first_line.find("model from-flag"), std::string::npos) << p.first_line;  // flag wins
  const std::string second = p.next_line();
  // kv_blocks from the override, block_size from the file.
  EXPECT_NE(second.find("KV cache 9 blocks x 8 tokens"), std::string::npos) << second;
  // The key from the file guards /v1/*.
  EXPECT_EQ(http_request(p.port, "GET", "/v1/models").status, 401);
  HttpResult ok =
      http_request(p.port, "GET", "/v1/models", "", "application/json", "Bearer file-key");
  ASSERT_EQ(ok.status, 200) << ok.body;
  EXPECT_EQ(json::parse(ok.body)["data"][0]["id"], "from-flag");
  const int status = p.stop();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);

  // A typo in an override: the error names the key, the exit status is not 0.
  const std::string cmd =
      std::string(SHARDLM_BINARY) + " serve --config " + toml + " --serve.max_bach=3 2>&1";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string text;
  char line[1024];
  while (std::fgets(line, sizeof line, pipe)) text += line;
  const int rc = ::pclose(pipe);
  EXPECT_NE(rc, 0) << text;
  EXPECT_NE(text.find("serve.max_bach"), std::string::npos) << text;
}
