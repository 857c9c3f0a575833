// BPE training (see tokenizer.h).
//
// 1. Count pre-tokens once: files are read in blocks, cut into parts of about
//    1 MB at "safe" line ends (a newline between two ASCII non-space
//    characters, where the regexes shipped here never join across); threads
//    take parts in turn and count pieces in their own hash maps, which are
//    summed at the end.
// 2. Every unique piece becomes a word of byte tokens with its count. Pair
//    counts are computed once, with for each pair the list of words that hold it.
// 3. Merge loop: pop the most frequent pair from a max-heap (ties: the smaller
//    pair of ids, so results never depend on thread count or hash order). Heap
//    entries are not updated in place: an entry whose count is stale (counts of
//    old pairs only go down) is pushed back with its current count. Merging
//    rewrites only the words that hold the pair, and adjusts the counts of the
//    pairs around each occurrence, so a merge costs what it touches and the
//    corpus is never recounted.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <queue>

#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "core/progress.h"
#include "data/input_paths.h"
#include "data/thread_pool.h"
#include "data/tokenizer.h"
#include "data/tokenizer_model.h"

namespace shardlm::data {

using core::DataError;
using detail::BytesMap;
using detail::pair_key;
using detail::PairMap;
using detail::TokenizerModel;
using detail::TokenKind;
using Clock = std::chrono::steady_clock;

void TokenizerTrainOptions::validate() const {
  size_t n_special = special_tokens.size();
  for (const std::string* t : {&pad_token, &unk_token, &bos_token, &eos_token})
    n_special += !t->empty();
  core::config_require(vocab_size >= 256 + n_special, "tokenizer.vocab_size",
                       std::to_string(vocab_size),
                       fmt::format("at least 256 + {} special tokens", n_special));
  core::config_require(vocab_size <= (1u << 30), "tokenizer.vocab_size", std::to_string(vocab_size),
                       "at most 2^30");
  core::config_require(min_frequency >= 1, "tokenizer.min_frequency", "0", "at least 1");
  core::config_require(threads >= 0, "tokenizer.threads", std::to_string(threads),
                       "0 (all cores) or more");
  core::config_require(read_block_bytes >= 1024, "tokenizer.read_block_bytes",
                       std::to_string(read_block_bytes), "at least 1024");
  for (const std::string& s : special_tokens)
    core::config_require(!s.empty(), "tokenizer.special_tokens", "\"\"", "non-empty strings");
}

namespace {

// ---- 1. counting pre-tokens --------------------------------------------------------------------
using Counts = BytesMap<uint64_t>;

// Counts the pieces of `texts` into counts[t] on counts.size() threads: texts
// are cut at safe places into parts of about 1 MB, which the threads take in
// turn.
void count_texts(const Pretokenizer& pre, const std::vector<std::string>& texts,
                 std::vector<Counts>& counts) {
  std::vector<std::string_view> parts;
  for (const std::string& t : texts) {
    const auto p = pre.safe_parts(t, 1 << 20);
    parts.insert(parts.end(), p.begin(), p.end());
  }
  std::atomic<size_t> next{0};
  auto work = [&](size_t t) {
    Counts& map = counts[t];
    for (size_t i = next++; i < parts.size(); i = next++)
      pre.for_each_piece(parts[i],
                         [&](const char* p, size_t len) { ++map.get_or_insert(p, len, 0); });
  };
  parallel_run(std::min(counts.size(), parts.size()), work);
}

// Reads the files in blocks (cut at safe line ends; small files whole) and
// counts their pieces, a batch of up to 64 MB at a time.
void count_files(const Pretokenizer& pre, const std::vector<std::string>& files, size_t kBlock,
                 bool show_progress, std::vector<Counts>& counts, size_t* bytes_read) {
  const size_t kBatch = std::max<size_t>(2 * kBlock, 64 << 20);
  uint64_t total = 0;
  for (const std::string& f : files) {
    std::error_code ec;
    const uint64_t n = std::filesystem::file_size(f, ec);
    total += ec ? 0 : n;
  }
  const auto total_mb = static_cast<size_t>(total >> 20);
  core::ProgressBar progress(
      {"tokenizer: MB counted", static_cast<double>(total_mb), show_progress && ::isatty(2)});
  size_t counted = 0;
  std::vector<std::string> batch;
  size_t batch_bytes = 0;
  auto flush = [&] {
    count_texts(pre, batch, counts);
    counted += batch_bytes;
    progress.update(static_cast<double>(std::min(counted >> 20, total_mb)));
    batch.clear();
    batch_bytes = 0;
  };
  auto push = [&](std::string text) {
    batch_bytes += text.size();
    batch.push_back(std::move(text));
    if (batch_bytes >= kBatch) flush();
  };
  for (const std::string& path : files) {
    std::ifstream in(path, std::ios::binary);
    SHARDLM_CHECK(in, DataError, "cannot open input '{}'", path);
    std::error_code ec;
    uint64_t left = std::filesystem::file_size(path, ec);
    if (ec) left = kBlock;  // not a regular file: read until it ends
    std::string carry;
    for (;;) {
      const size_t want =
          static_cast<size_t>(std::min<uint64_t>(kBlock, std::max<uint64_t>(left, 1)));
      std::string buf;
      buf.reserve(carry.size() + want);
      buf = carry;
      buf.resize(carry.size() + want);
      in.read(buf.data() + carry.size(), static_cast<std::streamsize>(want));
      const size_t got = static_cast<size_t>(in.gcount());
      SHARDLM_CHECK(!in.bad(), DataError, "cannot read input '{}'", path);
      buf.resize(carry.size() + got);
      *bytes_read += got;
      left -= std::min<uint64_t>(left, got);
      if (got < want || in.peek() == std::char_traits<char>::eof()) {
        if (!buf.empty()) push(std::move(buf));
        break;
      }
      // Up to the last safe cut goes to the batch; the rest waits for more.
      const size_t cut = pre.last_safe_cut(buf);
      if (cut == std::string::npos) {  // no safe cut yet: read more
        carry = std::move(buf);
        continue;
      }
      carry = buf.substr(cut);
      buf.resize(cut);
      push(std::move(buf));
    }
  }
  flush();
  progress.finish();
}

// Sums the per-thread maps into counts[0].
void merge_counts(std::vector<Counts>& counts) {
  for (size_t t = 1; t < counts.size(); ++t) {
    counts[t].for_each([&](std::string_view k, uint64_t c) { counts[0].get_or_insert(k, 0) += c; });
    counts[t] = Counts();
  }
}

// ---- 2. and 3. the merge loop -------------------------------------------------------------------
struct Trainer {
  // Words: the unique pieces as token sequences, stored back to back.
  std::vector<uint32_t> syms;
  std::vector<size_t> word_off;
  std::vector<uint32_t> word_len;
  std::vector<uint64_t> word_count;
  std::vector<uint32_t> word_stamp;  // last merge that rewrote the word (dedup)

  struct Slot {
    int64_t count = 0;
    std::vector<uint32_t> words;  // may hold stale entries and repeats
  };
  PairMap<uint32_t> slot_of;
  std::vector<Slot> slots;
  std::vector<uint64_t> slot_key;
  std::vector<uint32_t> touched;  // slots whose count rose in this merge

  struct Entry {
    int64_t count;
    uint64_t key;
    bool operator<(const Entry& o) const {  // max-heap: larger count, then smaller key
      return count != o.count ? count < o.count : key > o.key;
    }
  };
  std::priority_queue<Entry> heap;

  uint32_t slot(uint64_t key) {
    bool inserted = false;
    uint32_t& s = slot_of.get_or_insert(key, static_cast<uint32_t>(slots.size()), &inserted);
    if (inserted) {
      slots.emplace_back();
      slot_key.push_back(key);
    }
    return s;
  }
  // (a, b) occurs c more times, in word w.
  void add(uint32_t a, uint32_t b, int64_t c, uint32_t w) {
    const uint32_t s = slot(pair_key(a, b));
    Slot& sl = slots[s];
    touched.push_back(s);
    sl.count += c;
    if (sl.words.empty() || sl.words.back() != w) sl.words.push_back(w);
  }
  void sub(uint32_t a, uint32_t b, int64_t c) {
    if (uint32_t* s = slot_of.find(pair_key(a, b))) slots[*s].count -= c;
  }

  void build_words(const Counts& counts, uint32_t byte_base) {
    word_off.reserve(counts.size());
    counts.for_each([&](std::string_view piece, uint64_t c) {
      word_off.push_back(syms.size());
      word_len.push_back(static_cast<uint32_t>(piece.size()));
      word_count.push_back(c);
      for (unsigned char b : piece) syms.push_back(byte_base + b);
    });
    word_stamp.assign(word_off.size(), 0);
    slot_of = PairMap<uint32_t>(word_off.size() * 2);
    for (uint32_t w = 0; w < word_off.size(); ++w) {
      const uint32_t* s = syms.data() + word_off[w];
      for (uint32_t i = 0; i + 1 < word_len[w]; ++i)
        add(s[i], s[i + 1], static_cast<int64_t>(word_count[w]), w);
    }
    for (uint32_t s = 0; s < slots.size(); ++s) heap.push({slots[s].count, slot_key[s]});
    touched.clear();
  }

  // Rewrites word w with a+b -> t, adjusting the counts of neighbouring pairs.
  // In place: the write position never passes the read position.
  void merge_word(uint32_t w, uint32_t a, uint32_t b, uint32_t t) {
    uint32_t* s = syms.data() + word_off[w];
    const uint32_t n = word_len[w];
    const auto c = static_cast<int64_t>(word_count[w]);
    uint32_t j = 0;
    for (uint32_t i = 0; i < n;) {
      if (i + 1 < n && s[i] == a && s[i + 1] == b) {
        if (j > 0) {  // (prev, a) -> (prev, t); prev may be a t made just before
          sub(s[j - 1], a, c);
          add(s[j - 1], t, c, w);
        }
        if (i + 2 < n) {  // (b, next) -> (t, next)
          sub(b, s[i + 2], c);
          add(t, s[i + 2], c, w);
        }
        s[j++] = t;
        i += 2;
      } else {
        s[j++] = s[i++];
      }
    }
    word_len[w] = j;
  }

  // The most frequent pair with at least min_count, or false.
  bool pop_best(int64_t min_count, uint64_t* key) {
    while (!heap.empty()) {
      const Entry e = heap.top();
      heap.pop();
      const int64_t now = slots[*slot_of.find(e.key)].count;
      if (now != e.count) {  // stale: counts of old pairs only fall
        if (now >= min_count) heap.push({now, e.key});
        continue;
      }
      if (e.count < min_count) return false;
      *key = e.key;
      return true;
    }
    return false;
  }

  void merge(uint64_t key, uint32_t t, uint32_t stamp) {
    const uint32_t a = static_cast<uint32_t>(key >> 32), b = static_cast<uint32_t>(key);
    const uint32_t s = *slot_of.find(key);
    std::vector<uint32_t> words;
    words.swap(slots[s].words);
    for (uint32_t w : words) {
      if (word_stamp[w] == stamp) continue;
      word_stamp[w] = stamp;
      merge_word(w, a, b, t);
    }
    slots[s].count = 0;
    // Pairs that gained count (all hold the new token) enter the heap once.
    std::sort(touched.begin(), touched.end());
    touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
    for (uint32_t ts : touched)
      if (slots[ts].count > 0) heap.push({slots[ts].count, slot_key[ts]});
    touched.clear();
  }
};

Tokenizer train_from_counts(const TokenizerTrainOptions& opt, Counts& counts, double count_secs) {
  auto m = std::make_shared<TokenizerModel>();
  m->pattern = opt.pattern;
  // Ids: special tokens, then the 256 bytes, then the merges.
  auto add_special = [&](const std::string& content, const char* role) {
    if (content.empty()) return;
    for (const SpecialToken& s : m->specials)
      core::config_require(s.content != content, "tokenizer.special_tokens", content,
                           "each special token once");
    SpecialToken s{content, static_cast<uint32_t>(m->specials.size()), {}};
    if (role) s.roles.push_back(role);
    m->specials.push_back(std::move(s));
  };
  add_special(opt.pad_token, "pad");
  add_special(opt.unk_token, "unk");
  add_special(opt.bos_token, "bos");
  add_special(opt.eos_token, "eos");
  for (const std::string& s : opt.special_tokens) add_special(s, nullptr);
  const auto byte_base = static_cast<uint32_t>(m->specials.size());
  for (uint32_t b = 0; b < 256; ++b)
    m->add_token(byte_base + b, std::string(1, static_cast<char>(b)), TokenKind::kNormal);

  const auto t0 = Clock::now();
  Trainer tr;
  tr.build_words(counts, byte_base);
  counts = Counts();
  const size_t target = opt.vocab_size - byte_base - 256;
  core::ProgressBar progress(
      {"tokenizer: merges", static_cast<double>(target), opt.progress && ::isatty(2)});
  const auto min_count = static_cast<int64_t>(opt.min_frequency);
  uint64_t key = 0;
  while (m->merges.size() < target && tr.pop_best(min_count, &key)) {
    const auto a = static_cast<uint32_t>(key >> 32), b = static_cast<uint32_t>(key);
    const auto t = static_cast<uint32_t>(byte_base + 256 + m->merges.size());
    m->add_token(t, m->tokens[a] + m->tokens[b], TokenKind::kNormal);
    m->merges.push_back({a, b, t});
    tr.merge(key, t, static_cast<uint32_t>(m->merges.size()));
    progress.update(static_cast<double>(m->merges.size()));
  }
  progress.finish();
  const double merge_secs = std::chrono::duration<double>(Clock::now() - t0).count();
  if (m->merges.size() < target)
    core::log::warn(
        "tokenizer: only {} merges (vocabulary {} of {}): no pair left with at least "
        "{} occurrences",
        m->merges.size(), m->tokens.size(), opt.vocab_size, opt.min_frequency);
  core::log::info("tokenizer: {} merges in {:.2f} s ({:.0f}/s); counting took {:.2f} s",
                  m->merges.size(), merge_secs,
                  merge_secs > 0 ? static_cast<double>(m->merges.size()) / merge_secs : 0.0,
                  count_secs);
  m->finalize("trained");
  return Tokenizer(std::move(m));
}

}  // namespace

Tokenizer train_tokenizer(const TokenizerTrainOptions& options,
                          const std::vector<std::string>& input_paths) {
  options.validate();
  const std::vector<std::string> files = expand_input_paths(input_paths);
  SHARDLM_CHECK(!files.empty(), DataError, "no input files to train the tokenizer on");
  const Pretokenizer pre(options.pattern);
  const auto t0 = Clock::now();
  std::vector<Counts> counts(resolve_threads(options.threads));
  size_t bytes = 0;
  count_files(pre, files, options.read_block_bytes, options.progress, counts, &bytes);
  merge_counts(counts);
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  core::log::info("tokenizer: {} files, {:.1f} MB, {} unique pieces, counted in {:.2f} s",
                  files.size(), static_cast<double>(bytes) / 1e6, counts[0].size(), secs);
  return train_from_counts(options, counts[0], secs);
}

Tokenizer train_tokenizer_on_texts(const TokenizerTrainOptions& options,
                                   const std::vector<std::string>& texts) {
  options.validate();
  const Pretokenizer pre(options.pattern);
  const auto t0 = Clock::now();
  std::vector<Counts> counts(resolve_threads(options.threads));
  count_texts(pre, texts, counts);
  merge_counts(counts);
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  return train_from_counts(options, counts[0], secs);
}

}  // namespace shardlm::data
