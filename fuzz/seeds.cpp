// Seed corpora for the fuzz targets (seeds.h).
#include "fuzz/seeds.h"

#include <mpi.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "ckpt/checkpoint.h"
#include "core/comm.h"
#include "core/error.h"
#include "data/dataset.h"
#include "data/manifest.h"
#include "data/shard.h"
#include "data/tokenizer.h"
#include "fuzz/fuzz_target.h"
#include "model/safetensors.h"
#include "monitor/control.h"
#include "monitor/protocol.h"

namespace shardlm::fuzz {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  SHARDLM_CHECK(in, core::DataError, "seed source {} is missing", p.string());
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::string join_files(const std::vector<std::string>& files) {
  std::string s;
  for (size_t i = 0; i < files.size(); ++i) {
    if (i) s += kFileSeparator;
    s += files[i];
  }
  return s;
}

class Corpus {
 public:
  explicit Corpus(std::string root) : root_(std::move(root)) {}
  void add(const std::string& target, const std::string& bytes) {
    const fs::path dir = fs::path(root_) / target;
    fs::create_directories(dir);
    const size_t n = counts_[target]++;
    std::ofstream(dir / fmt::format("seed-{:03}", n), std::ios::binary) << bytes;
  }
  std::vector<std::pair<std::string, size_t>> counts() const {
    return {counts_.begin(), counts_.end()};
  }

 private:
  std::string root_;
  std::map<std::string, size_t> counts_;
};

const char kText[] =
    "In the beginning God created the heaven and the earth.\n"
    "And the earth was without form, and void; and darkness was upon the face of the deep.\n"
    "It's 2024: don't, won't, we've \xc3\xa9t\xc3\xa9 \xe4\xb8\x96\xe7\x95\x8c 12345\n";

std::string base64(std::string_view in) {
  static const char* k = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out += k[(v >> s) & 63];
  }
  if (i + 1 == in.size()) {
    const uint32_t v = uint8_t(in[i]) << 16;
    out += k[(v >> 18) & 63];
    out += k[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == in.size()) {
    const uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
    out += k[(v >> 18) & 63];
    out += k[(v >> 12) & 63];
    out += k[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

// ---- tokenizers ---------------------------------------------------------------------------------
void tokenizer_seeds(Corpus& c, const std::string& tmp) {
  data::TokenizerTrainOptions o;
  o.vocab_size = 320;
  o.min_frequency = 1;
  o.threads = 1;
  o.progress = false;
  o.special_tokens = {"<|user|>"};
  const data::Tokenizer tok = data::train_tokenizer_on_texts(o, {kText, kText});
  c.add("tokenizer_load", tok.to_json());
  const std::string hf = tok.to_hf_json();
  c.add("tokenizer_load", hf);
  // GPT-2's pair, from the Hugging Face form's vocabulary and merges.
  const json j = json::parse(hf);
  std::string bpe = "#version: 0.2\n";
  for (const json& m : j["model"]["merges"])
    bpe += (m.is_string() ? m.get<std::string>()
                          : m[0].get<std::string>() + " " + m[1].get<std::string>()) +
           "\n";
  json enc = j["model"]["vocab"];
  enc["<|endoftext|>"] = tok.vocab_size();
  c.add("tokenizer_load", join_files({enc.dump(), bpe}));
  // A tiktoken rank file: base64 bytes and rank, one token a line.
  std::string ranks;
  for (uint32_t id = 0; id < tok.vocab_size(); ++id) {
    bool special = false;
    for (const auto& s : tok.special_tokens()) special |= s.id == id;
    if (!special) ranks += base64(tok.token_bytes(id)) + " " + std::to_string(id) + "\n";
  }
  c.add("tokenizer_load", ranks);
  // Each seed must load (a two-file seed through from_gpt2_files).
  for (const std::string& f : {tok.to_json(), hf, ranks}) {
    std::ofstream(tmp + "/tok", std::ios::binary) << f;
    data::Tokenizer::load(tmp + "/tok");
  }
  std::ofstream(tmp + "/encoder.json") << enc.dump();
  std::ofstream(tmp + "/vocab.bpe") << bpe;
  data::Tokenizer::from_gpt2_files(tmp + "/encoder.json", tmp + "/vocab.bpe");

  // Round trip: the selector byte (bytes only, the trained BPE, cl100k, o200k), then text.
  const std::vector<std::string> texts = {kText,
                                          "<|endoftext|>hello<|user|>\n\n<|sep|>x",
                                          "  \t\r\n\n  spaces   and\ttabs ",
                                          "\xff\xfe\xed\xa0\x80\xe2\x82 invalid UTF-8 \xc0\xaf",
                                          "'s'S'll'LL 123456789 \xf0\x9f\x8c\x8d",
                                          std::string("nul\0inside", 10)};
  for (size_t i = 0; i < texts.size(); ++i)
    for (unsigned char sel : {0x00, 0x01, 0x12, 0x13})
      c.add("tokenizer_roundtrip", std::string(1, char(sel + (i % 2) * 4)) + texts[i]);
}

// ---- configuration ------------------------------------------------------------------------------
void config_seeds(Corpus& c, const fs::path& src) {
  for (const char* f :
       {"configs/demo.toml", "configs/eval/suite.toml", "tests/dashboard/run.toml.in"})
    c.add("config", read_all(src / f));
  c.add("config", join_files({read_all(src / "configs/demo.toml"),
                              "--train.steps=5\nmodel.n_layer=2\n--data.path=\"x\"\n"
                              "parallel.zero_stage=3\n--monitor.url=ws://127.0.0.1:1/ws\n"
                              "train.freeze_schedule=[[1, 2]]\nmodel.positional=rope"}));
}

// ---- data ---------------------------------------------------------------------------------------
data::ShardInfo write_shard(const std::string& path, data::TokenDtype dtype, bool hashes,
                            int compression, uint64_t vocab) {
  data::ShardWriterOptions o;
  o.dtype = dtype;
  o.chunk_tokens = 16;
  o.compression = compression;
  o.with_hashes = hashes;
  o.vocab_size = vocab;
  o.tokenizer_hash = "0011223344556677";
  o.split = "train";
  data::ShardWriter w(path, o);
  uint32_t k = 0;
  for (size_t len : {5, 17, 1, 40, 3}) {
    std::vector<uint32_t> doc(len);
    for (auto& t : doc) t = (k++ * 7919) % vocab;
    const data::Hash128 h{k, len};
    w.add(doc, hashes ? &h : nullptr);
  }
  return w.close(fs::path(path).filename().string());
}

void data_seeds(Corpus& c, const std::string& tmp) {
  struct V {
    data::TokenDtype dtype;
    bool hashes;
    int compression;
    uint64_t vocab;
  };
  for (const V& v :
       {V{data::TokenDtype::kUInt16, false, 0, 300}, V{data::TokenDtype::kUInt32, true, 0, 70000},
        V{data::TokenDtype::kUInt16, true, 4, 1000}}) {
    const std::string path = tmp + "/shard.h5";
    write_shard(path, v.dtype, v.hashes, v.compression, v.vocab);
    data::ShardReader(path).doc_offsets();
    c.add("data_shard", read_all(path));
  }
  // A dataset: manifest.json, then shard-0.h5 and shard-1.h5 (the names the target writes).
  for (bool two : {false, true}) {
    const std::string dir = tmp + "/dataset";
    fs::remove_all(dir);
    fs::create_directories(dir);
    data::Manifest m;
    m.dir = dir;
    m.tokenizer_hash = "0011223344556677";
    m.vocab_size = 300;
    m.eos_id = 299;
    m.dtype = data::TokenDtype::kUInt16;
    m.splits["val"] = data::SplitInfo{};
    std::vector<std::string> files;
    for (int s = 0; s < (two ? 2 : 1); ++s) {
      const data::ShardInfo info = write_shard(dir + fmt::format("/shard-{}.h5", s),
                                               data::TokenDtype::kUInt16, false, 0, 300);
      m.splits["train"].tokens += info.tokens;
      m.splits["train"].docs += info.docs;
      m.splits["train"].shards.push_back(info);
    }
    m.save(dir);
    data::DatasetOptions o;
    o.dir = dir;
    o.seq_len = 8;
    data::TokenDataset ds(o);
    files.push_back(read_all(dir + "/manifest.json"));
    for (int s = 0; s < (two ? 2 : 1); ++s)
      files.push_back(read_all(dir + fmt::format("/shard-{}.h5", s)));
    c.add("data_manifest", join_files(files));
  }
}

// ---- checkpoint
// ----------------------------------------------------------------------------------
void ckpt_seeds(Corpus& c, const std::string& tmp) {
  const std::string run = tmp + "/run";
  fs::remove_all(run);
  ckpt::CheckpointConfig cfg;
  ckpt::Checkpointer cp(cfg, run, std::make_shared<core::MpiComm>(core::MpiComm::single()));
  for (bool optimizer : {false, true}) {
    ckpt::Snapshot s;
    s.step = optimizer ? 2 : 1;
    for (auto [name, n] : std::vector<std::pair<std::string, int64_t>>{{"unit0", 6}, {"root", 4}}) {
      ckpt::UnitPiece u;
      u.name = name;
      u.numel = n;
      u.begin = 0;
      u.end = n;
      u.params = torch::arange(0, n, torch::kFloat);
      if (optimizer) {
        u.exp_avg = u.params * 2;
        u.exp_avg_sq = u.params * 3;
        u.raw["state1"] = torch::full({3}, 7, torch::kByte);
      }
      u.layout = json::array({{{"name", name + ".w"}, {"shape", {2, n / 2}}, {"offset", 0}}});
      s.units.push_back(u);
    }
    s.rank_tensors["rng"] = torch::full({4}, 1, torch::kByte);
    s.state = {{"loader", {{"epoch", 0}}}, {"step", s.step}};
    if (optimizer) s.val_loss = 2.5;
    cp.save(std::move(s), false);
    const std::string dir = run + "/checkpoints/" + ckpt::step_dir_name(optimizer ? 2 : 1);
    ckpt::CheckpointReader r(dir);
    r.verify();
    ckpt::read_parameters(r);
    c.add("ckpt", join_files({read_all(dir + "/manifest.json"),
                              read_all(dir + "/" + ckpt::rank_file_name(0, 1))}));
  }
}

// ---- safetensors
// ----------------------------------------------------------------------------------
void safetensors_seeds(Corpus& c, const std::string& tmp) {
  const std::string file = tmp + "/t.safetensors";
  model::write_safetensors(file,
                           {{"a", torch::arange(6, torch::kFloat).view({2, 3})},
                            {"b", torch::ones({3}, torch::kBFloat16)},
                            {"c", torch::tensor({1, 0, 1}, torch::kBool)},
                            {"d", torch::zeros({0}, torch::kInt64)}},
                           {{"format", "pt"}});
  model::read_safetensors(file);
  c.add("safetensors", read_all(file));
  for (bool gpt2 : {true, false}) {
    model::ModelConfig cfg;
    cfg.vocab_size = 32;
    cfg.context_length = 8;
    cfg.n_layer = 1;
    cfg.n_head = 2;
    cfg.d_model = 8;
    if (!gpt2) {
      cfg.positional = "rope";
      cfg.tied_embeddings = false;
    }
    const std::string dir = tmp + (gpt2 ? "/gpt2" : "/own");
    model::save_safetensors(model::GPT(cfg), cfg, dir);
    model::load_safetensors(dir);
    c.add("safetensors",
          join_files({read_all(dir + "/model.safetensors"), read_all(dir + "/config.json")}));
  }
}

// ---- eval JSONL -------------------------------------------------------------------------------
void eval_seeds(Corpus& c, const fs::path& src) {
  for (const char* f :
       {"configs/eval/choice.jsonl", "configs/eval/facts.jsonl", "configs/eval/prompts.jsonl"})
    c.add("eval_jsonl", read_all(src / f));
  c.add("eval_jsonl",
        "{\"id\": \"q1\", \"prompt\": \"Say hi\", \"outputs\": [{\"model\": \"a\", \"text\": "
        "\"hi\"}]}\n"
        "{\"id\": \"q2\", \"prompt\": \"Count\", \"outputs\": [{\"model\": \"a\", \"text\": "
        "\"1 2\"}, {\"model\": \"b\", \"text\": \"one\"}]}\n");
  c.add("eval_jsonl",
        "{\"id\":\"q1\",\"rater\":\"r\",\"time\":\"2025-01-01T00:00:00Z\",\"kind\":\"score\","
        "\"model\":\"a\",\"score\":4}\n"
        "{\"id\":\"q2\",\"rater\":\"r\",\"kind\":\"pair\",\"shown\":[\"b\",\"a\"],\"choice\":\"A\","
        "\"winner\":\"b\"}\n"
        "{\"id\":\"q3\",\"rater\":\"r\",\"kind\":\"pair\",\"shown\":[\"a\",\"b\"],\"choice\":"
        "\"tie\",\"winner\":\"tie\"}\n{\"id\":\"q4\",\"kind\":\"sco");
}

// ---- monitor protocol
// ----------------------------------------------------------------------------
void monitor_seeds(Corpus& c, const fs::path& src) {
  // The dashboard's captured session, eight lines a seed.
  std::istringstream in(
      read_all(src / "monitor/dashboard/test/fixtures/captured/aggregator.jsonl"));
  std::string line, chunk;
  int n = 0;
  while (std::getline(in, line)) {
    chunk += line + "\n";
    if (++n % 8 == 0) c.add("monitor_protocol", std::exchange(chunk, ""));
  }
  if (!chunk.empty()) c.add("monitor_protocol", chunk);
  // What ranks send, from the encoders, and what a viewer sends.
  monitor::StepMetrics s;
  s.step = 3;
  s.loss = 2.5;
  s.lr = 1e-3;
  s.grad_norm = 0.7;
  s.tokens = 4096;
  s.time.total = 0.25;
  s.time.forward = 0.1;
  s.hparams.lr = 1e-3;
  s.extra["mfu"] = 0.3;
  monitor::ValidationMetrics v;
  v.step = 3;
  v.loss = 2.4;
  v.perplexity = 11;
  monitor::Event e;
  e.kind = monitor::EventKind::kCheckpointSaved;
  e.message = "saved";
  e.step = 3;
  std::string ranks;
  ranks +=
      R"({"v":1,"type":"hello","role":"producer","rank":0,"world_size":2,"run_id":"r","token":"t"})"
      "\n";
  for (int rank : {0, 1}) {
    ranks +=
        monitor::dump(monitor::encode_run_info(rank, "r", 2, {{"model", {{"n_layer", 2}}}})) + "\n";
    for (int64_t step : {1, 2, 3}) {
      s.step = step;
      ranks += monitor::dump(monitor::encode_step(rank, s)) + "\n";
    }
  }
  ranks += monitor::dump(monitor::encode_validation(0, v)) + "\n";
  ranks += monitor::dump(monitor::encode_event(0, e)) + "\n";
  ranks += R"({"v":1,"type":"heartbeat","rank":1,"step":3,"idle_s":0.5,"dropped":0})"
           "\n";
  ranks += R"({"v":1,"type":"bye","rank":1})"
           "\n";
  c.add("monitor_protocol", ranks);
  c.add(
      "monitor_protocol",
      R"({"v":1,"type":"hello","role":"viewer","token":"3f9c","client":"dashboard"})"
      "\n"
      R"({"v":1,"type":"control","id":"c-17","command":"set_lr","args":{"lr":0.0001}})"
      "\n"
      R"({"v":1,"type":"control","id":"c-18","command":"set_batch","args":{"micro_batch":2,"accumulation":4}})"
      "\n"
      R"({"v":1,"type":"control","id":"c-19","command":"set_early_stopping","args":{"patience":3,"min_delta":0.01}})"
      "\n"
      R"({"v":1,"type":"control","id":"c-20","command":"start_run","args":{"config":"run.toml"}})"
      "\n"
      R"({"v":1,"type":"inspect","id":"i-3","what":"attention","args":{"prompt":"Once upon a time","layer":2}})"
      "\n"
      R"({"v":1,"type":"list_checkpoints","id":"l-1"})"
      "\n");
  // Commands as the ranks exchange them must decode.
  monitor::decode_commands(monitor::encode_commands({}));
}

// ---- serve
// -----------------------------------------------------------------------------------------
void serve_seeds(Corpus& c) {
  auto post = [](const std::string& target, const std::string& body,
                 const std::string& extra = "") {
    return fmt::format(
        "POST {} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{}"
        "Content-Length: {}\r\n\r\n{}",
        target, extra, body.size(), body);
  };
  const std::vector<std::string> bodies = {
      R"({"prompt": "hi"})", R"({"prompt": [[1, 2], "x", [3]], "stop": "\n", "top_k": -1})",
      R"({"prompt": [5, 6, 7], "max_tokens": 4, "temperature": 0})",
      R"({"prompt": "a", "logprobs": null, "echo": false, "best_of": 1, "user": "u"})",
      R"({"model": "m", "prompt": ["a", "b"], "n": 2, "stream": true, "stream_options": {"include_usage": true}, "seed": 7, "top_p": 0.9, "min_p": 0.05, "repetition_penalty": 1.1, "frequency_penalty": 0.5, "presence_penalty": 0.2, "stop": ["x", "y"], "ignore_eos": true})"};
  for (const auto& b : bodies) {
    c.add("serve_http", b);
    c.add("serve_http", post("/v1/completions", b));
  }
  c.add("serve_http", post("/v1/tokenize", R"({"prompt": "Hello world"})") +
                          post("/v1/detokenize", R"({"tokens": [72, 105]})") +
                          "GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
  c.add("serve_http",
        "POST /v1/completions?x=1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        "Authorization: Bearer sk-test\r\n\r\n10\r\n{\"prompt\": \"hi\"\r\n1\r\n}\r\n0\r\n\r\n");
  c.add("serve_http",
        post("/v1/completions", bodies[1], "Expect: 100-continue\r\nConnection: close\r\n"));
}

}  // namespace

std::vector<std::pair<std::string, size_t>> write_seeds(const std::string& out_dir,
                                                        const std::string& source_dir) {
  const fs::path src(source_dir);
  const std::string tmp = (fs::path(out_dir) / ".work").string();
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  Corpus c(out_dir);
  tokenizer_seeds(c, tmp);
  config_seeds(c, src);
  data_seeds(c, tmp);
  ckpt_seeds(c, tmp);
  safetensors_seeds(c, tmp);
  eval_seeds(c, src);
  monitor_seeds(c, src);
  serve_seeds(c);
  fs::remove_all(tmp);
  return c.counts();
}

}  // namespace shardlm::fuzz
