// `shardlm tokenizer train|encode|decode|info|convert`: the BPE tokenizer of
// data/ from the command line. Torch-free; no MPI (one process does it all).
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>

#include "core/error.h"
#include "data/tokenizer.h"
#include "launcher/app.h"

namespace shardlm::launcher {

namespace {

std::string read_input(const std::string& path) {
  if (path == "-") return std::string(std::istreambuf_iterator<char>(std::cin), {});
  std::ifstream in(path, std::ios::binary);
  SHARDLM_CHECK(in, core::DataError, "cannot open input '{}'", path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Ids separated by spaces, commas, newlines or brackets ("[1, 2, 3]" or "1 2 3").
std::vector<uint32_t> parse_ids(const std::string& text) {
  std::vector<uint32_t> ids;
  uint64_t v = 0;
  bool in_number = false;
  for (size_t i = 0; i <= text.size(); ++i) {
    const char c = i < text.size() ? text[i] : ' ';
    if (c >= '0' && c <= '9') {
      v = v * 10 + static_cast<uint64_t>(c - '0');
      SHARDLM_CHECK(v < (1ull << 32), core::DataError, "token id too large at character {}", i);
      in_number = true;
    } else {
      SHARDLM_CHECK(
          c == ' ' || c == ',' || c == '\n' || c == '\r' || c == '\t' || c == '[' || c == ']',
          core::DataError, "ids: unexpected character '{}' at position {}", c, i);
      if (in_number) ids.push_back(static_cast<uint32_t>(v));
      v = 0;
      in_number = false;
    }
  }
  return ids;
}

void append_ids(fmt::memory_buffer& out, const std::vector<uint32_t>& ids, bool json) {
  if (json) out.push_back('[');
  for (size_t i = 0; i < ids.size(); ++i)
    fmt::format_to(std::back_inserter(out), "{}{}", i ? (json ? ", " : " ") : "", ids[i]);
  if (json) out.push_back(']');
  out.push_back('\n');
}

// ---- train ------------------------------------------------------------------------------------
void add_train(CLI::App& parent, Command& run) {
  auto* cmd = parent.add_subcommand("train", "Train a byte-level BPE tokenizer on text files");
  struct Args {
    data::TokenizerTrainOptions opt;
    std::vector<std::string> inputs;
    std::string out, hf_out;
    bool no_progress = false;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--input,-i", a->inputs, "Files, directories or glob patterns")->required();
  cmd->add_option("--vocab-size,-v", a->opt.vocab_size,
                  "Vocabulary size, with the 256 bytes and the special tokens")
      ->required();
  cmd->add_option("--out,-o", a->out, "Where to write the tokenizer (shardlm JSON)")->required();
  cmd->add_option("--hf-out", a->hf_out, "Also write a Hugging Face tokenizer.json");
  cmd->add_option("--min-frequency", a->opt.min_frequency, "Never merge rarer pairs")
      ->capture_default_str();
  cmd->add_option("--pattern", a->opt.pattern, "gpt2, cl100k, o200k or a PCRE2 regex")
      ->capture_default_str();
  cmd->add_option("--special", a->opt.special_tokens, "More special tokens (repeatable)");
  cmd->add_option("--pad-token", a->opt.pad_token, "PAD token ('' for none)")
      ->capture_default_str();
  cmd->add_option("--unk-token", a->opt.unk_token, "UNK token ('' for none)")
      ->capture_default_str();
  cmd->add_option("--bos-token", a->opt.bos_token, "BOS token ('' for none)")
      ->capture_default_str();
  cmd->add_option("--eos-token", a->opt.eos_token, "EOS token ('' for none)")
      ->capture_default_str();
  cmd->add_option("--threads", a->opt.threads, "Threads for counting (0 = all cores)");
  cmd->add_flag("--no-progress", a->no_progress, "No progress bar");
  cmd->callback([a, &run] {
    run = [a] {
      a->opt.progress = !a->no_progress;
      const auto t0 = std::chrono::steady_clock::now();
      const data::Tokenizer tok = data::train_tokenizer(a->opt, a->inputs);
      const double secs =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      tok.save(a->out);
      if (!a->hf_out.empty()) tok.save_hf(a->hf_out);
      write_out(fmt::format("trained {} tokens ({} merges) in {:.2f} s -> {} (hash {})\n",
                            tok.vocab_size(), tok.num_merges(), secs, a->out, tok.hash()));
      return 0;
    };
  });
}

// ---- encode -----------------------------------------------------------------------------------
void add_encode(CLI::App& parent, Command& run) {
  auto* cmd = parent.add_subcommand("encode", "Text to token ids");
  struct Args {
    std::string tokenizer, text, input, format = "ids";
    bool allow_special = false, lines = false, stats = false;
    int threads = 1, repeat = 1;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--tokenizer,-t", a->tokenizer, "Tokenizer file (any supported format)")
      ->required();
  auto* text = cmd->add_option("--text", a->text, "The text to encode");
  cmd->add_option("--input,-i", a->input, "Read the text from a file ('-': stdin)")->excludes(text);
  cmd->add_option("--format", a->format, "ids (space separated) or json")
      ->check(CLI::IsMember({"ids", "json"}));
  cmd->add_flag("--allow-special", a->allow_special, "Special tokens in the text are tokens");
  cmd->add_flag("--lines", a->lines, "Encode each line separately, one line of ids per line");
  cmd->add_flag("--stats", a->stats, "Print counts and throughput instead of the ids");
  cmd->add_option("--threads", a->threads,
                  "Threads (0 = all cores): lines, or parts of the text cut where no piece spans")
      ->capture_default_str();
  cmd->add_option("--repeat", a->repeat, "With --stats: encode this many times, report the best")
      ->check(CLI::PositiveNumber);
  cmd->callback([a, &run] {
    run = [a] {
      const data::Tokenizer tok = data::Tokenizer::load(a->tokenizer);
      const std::string input = a->input.empty() ? a->text : read_input(a->input);
      const bool json = a->format == "json";
      std::vector<std::string> lines;
      if (a->lines) {
        for (size_t pos = 0; pos < input.size();) {
          size_t end = input.find('\n', pos);
          end = end == std::string::npos ? input.size() : end + 1;
          lines.push_back(input.substr(pos, end - pos));
          pos = end;
        }
      }
      std::vector<std::vector<uint32_t>> out;
      double secs = 1e300;
      for (int r = 0; r < (a->stats ? a->repeat : 1); ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        if (a->lines)
          out = tok.encode_batch(lines, a->threads, a->allow_special);
        else if (a->threads != 1)
          out = {tok.encode_parallel(input, a->threads, a->allow_special)};
        else
          out = {tok.encode(input, a->allow_special)};
        secs = std::min(
            secs, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
      if (a->stats) {
        size_t n = 0;
        for (const auto& ids : out) n += ids.size();
        write_out(
            fmt::format("{} bytes -> {} tokens ({:.3f} bytes/token) in {:.3f} s: {:.2f} MB/s\n",
                        input.size(), n, n ? double(input.size()) / double(n) : 0.0, secs,
                        secs > 0 ? double(input.size()) / secs / 1e6 : 0.0));
        return 0;
      }
      fmt::memory_buffer buf;
      for (const auto& ids : out) append_ids(buf, ids, json);
      write_out(fmt::to_string(buf));
      return 0;
    };
  });
}

// ---- decode -----------------------------------------------------------------------------------
void add_decode(CLI::App& parent, Command& run) {
  auto* cmd = parent.add_subcommand("decode", "Token ids to text");
  struct Args {
    std::string tokenizer, ids, input;
    bool bytes = false;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--tokenizer,-t", a->tokenizer, "Tokenizer file (any supported format)")
      ->required();
  auto* ids = cmd->add_option("--ids", a->ids, "Ids: \"1 2 3\" or \"[1, 2, 3]\"");
  cmd->add_option("--input,-i", a->input, "Read the ids from a file ('-': stdin)")->excludes(ids);
  cmd->add_flag("--bytes", a->bytes, "Write the exact bytes (no U+FFFD for invalid UTF-8)");
  cmd->callback([a, &run] {
    run = [a] {
      const data::Tokenizer tok = data::Tokenizer::load(a->tokenizer);
      const auto ids = parse_ids(a->input.empty() ? a->ids : read_input(a->input));
      write_out(a->bytes ? tok.decode_bytes(ids) : tok.decode(ids));
      return 0;
    };
  });
}

// ---- info, convert ------------------------------------------------------------------------------
void add_info(CLI::App& parent, Command& run) {
  auto* cmd = parent.add_subcommand("info", "What a tokenizer file holds");
  auto path = std::make_shared<std::string>();
  cmd->add_option("--tokenizer,-t", *path, "Tokenizer file (any supported format)")->required();
  cmd->callback([path, &run] {
    run = [path] {
      const data::Tokenizer tok = data::Tokenizer::load(*path);
      std::string s = fmt::format("file          {}\n", *path);
      s += fmt::format("vocab_size    {}\n", tok.vocab_size());
      s += fmt::format("kind          {} ({} merges)\n", tok.kind(), tok.num_merges());
      s += fmt::format("pattern       {}: {}\n", tok.pattern_name(), tok.pattern());
      s += fmt::format("hash          {}\n", tok.hash());
      s += fmt::format("special       {}\n", tok.special_tokens().size());
      for (const auto& sp : tok.special_tokens()) {
        std::string roles;
        for (const auto& r : sp.roles) roles += (roles.empty() ? "" : ",") + r;
        s += fmt::format("  {:>8}  {}{}\n", sp.id, sp.content,
                         roles.empty() ? "" : "  (" + roles + ")");
      }
      write_out(s);
      return 0;
    };
  });
}

void add_convert(CLI::App& parent, Command& run) {
  auto* cmd = parent.add_subcommand("convert", "Write a tokenizer in another format");
  struct Args {
    std::string tokenizer, out, format = "shardlm";
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--tokenizer,-t", a->tokenizer, "Tokenizer file (any supported format)")
      ->required();
  cmd->add_option("--out,-o", a->out, "Output file")->required();
  cmd->add_option("--format", a->format, "shardlm or hf (tokenizer.json)")
      ->check(CLI::IsMember({"shardlm", "hf"}));
  cmd->callback([a, &run] {
    run = [a] {
      const data::Tokenizer tok = data::Tokenizer::load(a->tokenizer);
      if (a->format == "hf")
        tok.save_hf(a->out);
      else
        tok.save(a->out);
      write_out(fmt::format("wrote {} ({})\n", a->out, a->format));
      return 0;
    };
  });
}

}  // namespace

void register_tokenizer(CLI::App& app, Context& /*ctx*/, Command& run) {
  auto* cmd = app.add_subcommand("tokenizer", "Train, use and convert BPE tokenizers");
  cmd->require_subcommand(1);
  add_train(*cmd, run);
  add_encode(*cmd, run);
  add_decode(*cmd, run);
  add_info(*cmd, run);
  add_convert(*cmd, run);
}

}  // namespace shardlm::launcher
