// `shardlm data inspect DIR`: what a prepared dataset holds, for a person. The
// manifest's summary (tokenizer, inputs, cleaning counts, splits), then the
// first documents of a split decoded, as stored (data/inspect.h), or the first
// packed rows the loader cuts from it (data/dataset.h). Torch-free; no MPI.
#include <algorithm>
#include <cstdio>
#include <optional>

#include "core/error.h"
#include "data/dataset.h"
#include "data/inspect.h"
#include "data/manifest.h"
#include "data/text_clean.h"
#include "data/tokenizer.h"
#include "launcher/app.h"

namespace shardlm::launcher {

namespace {

struct InspectArgs {
  std::string dir, split = "train", tokenizer;
  int64_t docs = 3, first = 0, rows = 0, seq_len = 128, max_chars = 600;
  bool ids = false;
};

// At most `max_chars` code points of `text` (0 = all), and how many were cut.
std::pair<std::string, int64_t> cut(const std::string& text, int64_t max_chars) {
  int64_t chars = 0;
  size_t end = text.size();
  for (size_t i = 0; i < text.size(); ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xC0) == 0x80) continue;  // continuation byte
    if (max_chars > 0 && chars == max_chars && end == text.size()) end = i;
    ++chars;
  }
  return {text.substr(0, end), max_chars > 0 && chars > max_chars ? chars - max_chars : 0};
}

void append_ids(std::string& s, const std::vector<uint32_t>& ids) {
  s += "ids:";
  for (uint32_t id : ids) s += fmt::format(" {}", id);
  s += "\n";
}

// The text of `ids` (or nothing without a tokenizer), cut for the screen, and
// the ids themselves when asked for or when there is no tokenizer.
void append_tokens(std::string& s, const std::vector<uint32_t>& ids, const data::Tokenizer* tok,
                   const InspectArgs& a) {
  if (tok) {
    auto [text, more] = cut(tok->decode(ids), a.max_chars);
    s += text;
    if (more > 0) s += fmt::format(" … ({} more characters)", more);
    s += "\n";
  }
  if (!tok || a.ids) append_ids(s, ids);
}

std::string summary(const data::Manifest& m, const std::string& tokenizer_path) {
  std::string s = fmt::format("dataset     {}\n", m.dir);
  s += fmt::format("tokenizer   hash {}, vocabulary {}, eos {}; tokens stored as {}\n",
                   m.tokenizer_hash, m.vocab_size,
                   m.eos_id ? std::to_string(*m.eos_id) : std::string("none"),
                   data::dtype_name(m.dtype));
  s += fmt::format("decoded by  {}\n", tokenizer_path.empty()
                                           ? "no tokenizer (none given or found): token ids shown"
                                           : tokenizer_path);
  int64_t bytes = 0;
  for (const auto& in : m.inputs) bytes += in.value("size", int64_t{0});
  s += fmt::format("inputs      {} file(s), {:.2f} MB\n", m.inputs.size(), bytes / 1e6);
  if (m.report.contains("clean")) {
    const auto c = data::CleanStats::from_json(m.report.at("clean"));
    s += fmt::format(
        "cleaning    {} documents read, {} kept: {} too short, {} duplicates, {} invalid UTF-8 "
        "dropped; {} repaired, {} NFC-changed, {} whitespace-changed, {} control characters "
        "removed\n",
        c.docs_in, m.report.value("documents_kept", int64_t{0}), c.docs_too_short, c.docs_duplicate,
        c.docs_rejected_utf8, c.docs_invalid_utf8 - c.docs_rejected_utf8, c.docs_nfc_changed,
        c.docs_whitespace_changed, c.control_removed);
  }
  s += fmt::format("{:<6} {:>12} {:>10} {:>7}\n", "split", "tokens", "documents", "shards");
  for (const auto& [name, sp] : m.splits)
    s += fmt::format("{:<6} {:>12} {:>10} {:>7}\n", name, sp.tokens, sp.docs, sp.shards.size());
  return s;
}

int inspect(const InspectArgs& a) {
  const data::Manifest m = data::Manifest::load(a.dir);
  const data::SplitInfo& split = m.split(a.split);  // an unknown split names the ones there are
  std::optional<data::Tokenizer> tok;
  std::string tok_path = a.tokenizer.empty() ? data::find_dataset_tokenizer(m) : a.tokenizer;
  if (!tok_path.empty()) {
    tok = data::Tokenizer::load(tok_path);
    data::check_tokenizer(m, tok->hash());
  }
  std::string s = summary(m, tok_path);
  const auto first = static_cast<uint64_t>(a.first);
  if (a.docs > 0) {
    const auto docs = data::read_documents(m, a.split, first, static_cast<uint64_t>(a.docs));
    if (docs.empty())
      s += fmt::format("\n{}: no document {} (it has {})\n", a.split, first, split.docs);
    for (const auto& d : docs) {
      s += fmt::format("\n--- {} document {} of {} ({} #{}, {} tokens)\n", a.split, d.index,
                       split.docs, d.shard, d.index_in_shard, d.tokens.size());
      append_tokens(s, d.tokens, tok ? &*tok : nullptr, a);
    }
  }
  if (a.rows > 0) {
    data::DatasetOptions o;
    o.dir = a.dir;
    o.split = a.split;
    o.mode = "packed";
    o.seq_len = a.seq_len;
    o.verify = "size";
    const data::TokenDataset ds(o);
    s += fmt::format(
        "\n{} packed rows of {} + 1 tokens, in stored order (training shuffles them): {} rows\n",
        a.split, a.seq_len, ds.size());
    for (uint64_t i = first; i < std::min(ds.size(), first + static_cast<uint64_t>(a.rows)); ++i) {
      std::vector<uint32_t> w(ds.length(i));
      ds.read(i, w.data());
      s += fmt::format("\n--- row {}: tokens [{}, {}) of the split\n", i,
                       i * static_cast<uint64_t>(a.seq_len),
                       i * static_cast<uint64_t>(a.seq_len) + w.size());
      append_tokens(s, w, tok ? &*tok : nullptr, a);
    }
  }
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::fflush(stdout);
  return 0;
}

}  // namespace

void register_data(CLI::App& app, Context& /*ctx*/, Command& run) {
  auto* cmd = app.add_subcommand("data", "Look into a prepared dataset");
  cmd->require_subcommand(1);
  auto* ins = cmd->add_subcommand(
      "inspect", "The manifest's summary and the first documents (or packed rows) decoded");
  auto a = std::make_shared<InspectArgs>();
  ins->add_option("dir", a->dir, "The dataset directory (written by `shardlm prepare`)")
      ->required();
  ins->add_option("--split,-s", a->split, "train, val or test")->capture_default_str();
  ins->add_option("--docs,-n", a->docs, "Documents to show")->capture_default_str();
  ins->add_option("--first", a->first, "Index of the first document (or row) shown")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  ins->add_option("--rows", a->rows, "Packed training rows to show (as the loader cuts them)")
      ->capture_default_str();
  ins->add_option("--seq-len", a->seq_len, "T of the packed rows (data.seq_len)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  ins->add_option("--tokenizer,-t", a->tokenizer,
                  "Tokenizer to decode with (default: tokenizer.json in DIR or its parent, when "
                  "its hash is the data's)");
  ins->add_option("--max-chars", a->max_chars,
                  "Cut each text after this many characters (0 = no cut)")
      ->capture_default_str();
  ins->add_flag("--ids", a->ids, "Print the token ids as well");
  ins->callback([a, &run] { run = [a] { return inspect(*a); }; });
}

}  // namespace shardlm::launcher
