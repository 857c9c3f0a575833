// Byte-level BPE: building the lookup tables, encoding and decoding (see
// tokenizer.h; loaders in tokenizer_io.cpp, training in tokenizer_train.cpp).
#include "data/tokenizer.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <queue>

#include "core/error.h"
#include "data/thread_pool.h"
#include "data/tokenizer_model.h"
#include "data/utf8.h"

namespace shardlm::data {

using core::DataError;
using detail::kMaxTokenId;
using detail::kNoRank;
using detail::PairInfo;
using detail::TokenizerModel;
using detail::TokenKind;

// ---- building the model ------------------------------------------------------------------
namespace detail {
namespace {
std::atomic<uint64_t> g_model_serial{1};

std::string hex(const unsigned char* p, size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    s += digits[p[i] >> 4];
    s += digits[p[i] & 15];
  }
  return s;
}

// XXH3-128 over a canonical serialisation: lengths before bytes, ids in
// order, so that two models hash alike exactly when they encode alike.
std::string model_digest(const TokenizerModel& m) {
  XXH3_state_t* st = XXH3_createState();
  XXH3_128bits_reset(st);
  auto put = [&](const void* p, size_t n) { XXH3_128bits_update(st, p, n); };
  auto put_u64 = [&](uint64_t v) { put(&v, sizeof v); };
  auto put_str = [&](const std::string& s) {
    put_u64(s.size());
    put(s.data(), s.size());
  };
  put_str("shardlm-tokenizer-v1");
  put_u64(m.kind == TokenizerModel::Kind::kMerges ? 0 : 1);
  put_u64(m.whole_piece_lookup);
  put_str(m.pre.regex());
  put_u64(m.tokens.size());
  for (size_t id = 0; id < m.tokens.size(); ++id) {
    put_u64(static_cast<uint64_t>(m.token_kind[id]));
    put_str(m.tokens[id]);
  }
  put_u64(m.merges.size());
  for (const Merge& mg : m.merges) put_u64(pair_key(mg.left, mg.right));
  put_u64(m.specials.size());
  for (const SpecialToken& s : m.specials) {
    put_u64(s.id);
    put_str(s.content);
    put_u64(s.roles.size());
    for (const auto& r : s.roles) put_str(r);
  }
  XXH128_hash_t h = XXH3_128bits_digest(st);
  XXH3_freeState(st);
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, h);
  return hex(c.digest, sizeof c.digest);
}
}  // namespace

std::vector<std::string> roles_from_content(const std::string& c) {
  if (c == "<|endoftext|>") return {"eos", "bos"};
  if (c == "</s>" || c == "<|eos|>" || c == "<eos>" || c == "<|end_of_text|>") return {"eos"};
  if (c == "<s>" || c == "<|bos|>" || c == "<bos>" || c == "<|begin_of_text|>") return {"bos"};
  if (c == "<pad>" || c == "<|pad|>" || c == "[PAD]") return {"pad"};
  if (c == "<unk>" || c == "<|unk|>" || c == "[UNK]") return {"unk"};
  return {};
}

void assign_default_roles(std::vector<SpecialToken>& specials) {
  std::vector<std::string> given;
  for (const SpecialToken& s : specials) given.insert(given.end(), s.roles.begin(), s.roles.end());
  auto taken = [&](const std::string& r) {
    return std::find(given.begin(), given.end(), r) != given.end();
  };
  // Tokens named for one role first, then "<|endoftext|>" for what is left.
  for (int pass = 0; pass < 2; ++pass) {
    for (SpecialToken& s : specials) {
      const std::vector<std::string> roles = roles_from_content(s.content);
      if ((roles.size() > 1) != (pass == 1)) continue;
      for (const std::string& r : roles) {
        if (taken(r)) continue;
        s.roles.push_back(r);
        given.push_back(r);
      }
    }
  }
}

void TokenizerModel::add_token(uint32_t id, std::string bytes, TokenKind kind) {
  if (id >= tokens.size()) {
    tokens.resize(id + 1);
    token_kind.resize(id + 1, TokenKind::kNone);
  }
  tokens[id] = std::move(bytes);
  token_kind[id] = kind;
}

void TokenizerModel::finalize(const std::string& where) {
  source = where;
  try {
    pre = Pretokenizer(pattern);
  } catch (
      const DataError& e) {  // a file's own pattern: say which file (found by fuzz_tokenizer_load)
    throw DataError(fmt::format("{}: {}", where, e.message()), e.file(), e.line());
  }
  for (const SpecialToken& s : specials) {
    SHARDLM_CHECK(!s.content.empty(), DataError, "{}: special token {} is empty", where, s.id);
    SHARDLM_CHECK(s.id < kMaxTokenId, DataError, "{}: special token '{}' has id {} (at most {})",
                  where, s.content, s.id, kMaxTokenId - 1);
    SHARDLM_CHECK(utf8_valid_prefix(s.content) == s.content.size(), DataError,
                  "{}: special token {} is not valid UTF-8", where, s.id);
    SHARDLM_CHECK(!has(s.id) || token_kind[s.id] == TokenKind::kSpecial, DataError,
                  "{}: special token '{}' has id {}, which an ordinary token already has", where,
                  s.content, s.id);
    SHARDLM_CHECK(!has(s.id) || tokens[s.id] == s.content, DataError,
                  "{}: special tokens '{}' and '{}' both have id {}", where, tokens[s.id],
                  s.content, s.id);
    add_token(s.id, s.content, TokenKind::kSpecial);
  }
  // Ordinary tokens: unique bytes, and one for every single byte.
  bytes_to_id = BytesMap<uint32_t>(tokens.size());
  byte_id.fill(kNoRank);
  for (uint32_t id = 0; id < tokens.size(); ++id) {
    if (token_kind[id] != TokenKind::kNormal) continue;
    const std::string& b = tokens[id];
    SHARDLM_CHECK(!b.empty(), DataError, "{}: token {} has no bytes", where, id);
    bool inserted = false;
    uint32_t& slot = bytes_to_id.get_or_insert(b, id, &inserted);
    SHARDLM_CHECK(inserted, DataError, "{}: tokens {} and {} have the same bytes '{}'", where, slot,
                  id, utf8_sanitize(b));
    if (b.size() == 1) byte_id[static_cast<unsigned char>(b[0])] = id;
  }
  for (int b = 0; b < 256; ++b)
    SHARDLM_CHECK(byte_id[b] != kNoRank, DataError,
                  "{}: no token for the byte 0x{:02x}: a byte-level BPE vocabulary needs all 256",
                  where, b);
  // The pair table.
  if (kind == Kind::kMerges) {
    pairs = PairMap<PairInfo>(merges.size());
    for (uint32_t r = 0; r < merges.size(); ++r) {
      const Merge& m = merges[r];
      SHARDLM_CHECK(has(m.left) && has(m.right) && has(m.result) &&
                        token_kind[m.result] == TokenKind::kNormal,
                    DataError, "{}: merge {} ({} + {} -> {}) names an unknown token", where, r,
                    m.left, m.right, m.result);
      SHARDLM_CHECK(tokens[m.result] == tokens[m.left] + tokens[m.right], DataError,
                    "{}: merge {} ({} + {}) does not make token {}", where, r, m.left, m.right,
                    m.result);
      bool inserted = false;
      pairs.get_or_insert(pair_key(m.left, m.right), PairInfo{r, m.result}, &inserted);
      // A repeated pair keeps its first (lowest) rank.
    }
  } else {
    // tiktoken: a and b merge when a+b is a token, by that token's rank (= id);
    // every split of every token into two tokens is such a pair.
    merges.clear();
    pairs = PairMap<PairInfo>(tokens.size() * 2);
    for (uint32_t id = 0; id < tokens.size(); ++id) {
      if (token_kind[id] != TokenKind::kNormal || tokens[id].size() < 2) continue;
      const std::string& t = tokens[id];
      for (size_t k = 1; k < t.size(); ++k) {
        const uint32_t* l = bytes_to_id.find(t.data(), k);
        if (!l) continue;
        const uint32_t* r = bytes_to_id.find(t.data() + k, t.size() - k);
        if (!r) continue;
        pairs.get_or_insert(pair_key(*l, *r), PairInfo{id, id});
      }
    }
  }
  // Special tokens: longest first, so that the longest match wins at a position.
  special_order.clear();
  special_first.fill(false);
  for (uint32_t i = 0; i < specials.size(); ++i) {
    special_order.push_back(i);
    special_first[static_cast<unsigned char>(specials[i].content[0])] = true;
  }
  std::sort(special_order.begin(), special_order.end(), [&](uint32_t a, uint32_t b) {
    return specials[a].content.size() > specials[b].content.size();
  });
  digest = model_digest(*this);
  serial = g_model_serial++;
}
}  // namespace detail

// ---- BPE on one piece ---------------------------------------------------------------------
namespace {

// Pieces up to this many bytes merge with a linear scan for the lowest rank
// (quadratic, but the arrays stay in L1); longer ones (long whitespace or digit
// runs, binary data) use a linked list and a heap, O(n log n).
constexpr size_t kSmallPiece = 64;

void bpe_small(const TokenizerModel& m, const unsigned char* p, size_t n,
               std::vector<uint32_t>& out) {
  uint32_t sym[kSmallPiece];
  PairInfo info[kSmallPiece];  // info[i]: the pair (sym[i], sym[i+1])
  for (size_t i = 0; i < n; ++i) sym[i] = m.byte_id[p[i]];
  for (size_t i = 0; i + 1 < n; ++i) info[i] = m.pair(sym[i], sym[i + 1]);
  size_t len = n;
  while (len > 1) {
    // The lowest rank; on a tie the leftmost pair (as GPT-2 and tiktoken).
    size_t best = 0;
    for (size_t i = 1; i + 1 < len; ++i)
      if (info[i].rank < info[best].rank) best = i;
    if (info[best].rank == kNoRank) break;
    // Merge sym[best] and sym[best+1]: the pair's token replaces the left one,
    // the right one is removed, and the two pairs around it are looked up anew.
    sym[best] = info[best].result;
    std::memmove(sym + best + 1, sym + best + 2, (len - best - 2) * sizeof(uint32_t));
    std::memmove(info + best + 1, info + best + 2, (len - best - 2) * sizeof(PairInfo));
    --len;
    if (best > 0) info[best - 1] = m.pair(sym[best - 1], sym[best]);
    if (best + 1 < len) info[best] = m.pair(sym[best], sym[best + 1]);
  }
  out.insert(out.end(), sym, sym + len);
}

void bpe_large(const TokenizerModel& m, const unsigned char* p, size_t n,
               std::vector<uint32_t>& out) {
  // A doubly linked list of symbols; a min-heap of (rank, position) candidates.
  // Entries go stale when a neighbour merges; they are checked when popped
  // (the pair at that position must still exist and have that rank).
  constexpr uint32_t kDead = ~uint32_t{0};
  struct Node {
    uint32_t id;
    int64_t prev, next;
  };
  std::vector<Node> nodes(n);
  for (size_t i = 0; i < n; ++i)
    nodes[i] = {m.byte_id[p[i]], static_cast<int64_t>(i) - 1,
                i + 1 < n ? static_cast<int64_t>(i + 1) : -1};
  using Cand = std::pair<uint32_t, uint64_t>;  // (rank, position): leftmost wins ties
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  for (size_t i = 0; i + 1 < n; ++i) {
    const PairInfo pi = m.pair(nodes[i].id, nodes[i + 1].id);
    if (pi.rank != kNoRank) heap.push({pi.rank, i});
  }
  while (!heap.empty()) {
    const auto [rank, pos] = heap.top();
    heap.pop();
    Node& a = nodes[pos];
    if (a.id == kDead || a.next < 0) continue;
    Node& b = nodes[a.next];
    const PairInfo pi = m.pair(a.id, b.id);
    if (pi.rank != rank) continue;  // stale
    a.id = pi.result;
    b.id = kDead;
    a.next = b.next;
    if (a.next >= 0) nodes[a.next].prev = static_cast<int64_t>(pos);
    if (a.prev >= 0) {
      const PairInfo l = m.pair(nodes[a.prev].id, a.id);
      if (l.rank != kNoRank) heap.push({l.rank, static_cast<uint64_t>(a.prev)});
    }
    if (a.next >= 0) {
      const PairInfo r = m.pair(a.id, nodes[a.next].id);
      if (r.rank != kNoRank) heap.push({r.rank, pos});
    }
  }
  for (int64_t i = 0; i >= 0; i = nodes[i].next) out.push_back(nodes[i].id);
}

void bpe_piece(const TokenizerModel& m, const char* p, size_t n, std::vector<uint32_t>& out) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  if (n == 1) {
    out.push_back(m.byte_id[u[0]]);
    return;
  }
  if (m.whole_piece_lookup) {
    if (const uint32_t* id = m.bytes_to_id.find(p, n)) {
      out.push_back(*id);
      return;
    }
  }
  if (n <= kSmallPiece)
    bpe_small(m, u, n, out);
  else
    bpe_large(m, u, n, out);
}

// ---- the per-thread piece cache ---------------------------------------------------------------
// Text repeats its words: most pieces were seen before, and their ids are one
// hash lookup away. Each thread keeps caches for the last two models it used
// (no locks); a cache is emptied when it grows past its limit.
struct CacheEntry {
  uint32_t off = 0, len = 0;  // into ids; len == 1: the id itself is in off
};
struct PieceCache {
  static constexpr size_t kMaxEntries = 1 << 18;
  static constexpr size_t kMaxPieceBytes = 256;  // longer pieces are not cached
  uint64_t owner = 0;
  detail::BytesMap<CacheEntry> map{1 << 12};
  std::vector<uint32_t> ids;
  void reset(uint64_t serial) {
    owner = serial;
    map.clear();
    ids.clear();
  }
};

PieceCache& cache_for(const TokenizerModel& m) {
  thread_local PieceCache caches[2];
  thread_local unsigned next_victim = 0;
  for (PieceCache& c : caches)
    if (c.owner == m.serial) return c;
  PieceCache& c = caches[next_victim++ % 2];
  c.reset(m.serial);
  return c;
}

// Appends the ids of one piece, from the cache or by BPE.
inline void encode_piece(const TokenizerModel& m, PieceCache& cache, const char* p, size_t n,
                         std::vector<uint32_t>& out) {
  if (n > PieceCache::kMaxPieceBytes) {
    bpe_piece(m, p, n, out);
    return;
  }
  const uint64_t h = detail::hash_bytes(p, n);
  if (const CacheEntry* e = cache.map.find(p, n, h)) {
    if (e->len == 1)
      out.push_back(e->off);
    else
      out.insert(out.end(), cache.ids.begin() + e->off, cache.ids.begin() + e->off + e->len);
    return;
  }
  const size_t before = out.size();
  bpe_piece(m, p, n, out);
  if (cache.map.size() >= PieceCache::kMaxEntries) cache.reset(m.serial);
  CacheEntry e;
  e.len = static_cast<uint32_t>(out.size() - before);
  if (e.len == 1) {
    e.off = out.back();
  } else {
    e.off = static_cast<uint32_t>(cache.ids.size());
    cache.ids.insert(cache.ids.end(), out.begin() + before, out.end());
  }
  cache.map.get_or_insert(p, n, h, e, nullptr);
}

// Ordinary text (no special tokens): pre-tokenize, then each piece.
void encode_ordinary(const TokenizerModel& m, std::string_view text, std::vector<uint32_t>& out) {
  PieceCache& cache = cache_for(m);
  m.pre.for_each_piece(text, [&](const char* p, size_t n) { encode_piece(m, cache, p, n, out); });
}

// The next special token in text at or after `from`: (position, index into
// m.specials); position == npos when there is none. Longest wins at a position.
std::pair<size_t, uint32_t> find_special(const TokenizerModel& m, std::string_view text,
                                         size_t from) {
  for (size_t i = from; i < text.size(); ++i) {
    if (!m.special_first[static_cast<unsigned char>(text[i])]) continue;
    for (uint32_t k : m.special_order) {
      const std::string& c = m.specials[k].content;
      if (c.size() <= text.size() - i && std::memcmp(text.data() + i, c.data(), c.size()) == 0)
        return {i, k};
    }
  }
  return {std::string_view::npos, 0};
}

}  // namespace

void detail::bpe_piece_for_test(const TokenizerModel& m, std::string_view piece, bool large,
                                std::vector<uint32_t>& out) {
  const auto* u = reinterpret_cast<const unsigned char*>(piece.data());
  if (large || piece.size() > kSmallPiece)
    bpe_large(m, u, piece.size(), out);
  else
    bpe_small(m, u, piece.size(), out);
}

// ---- Tokenizer ----------------------------------------------------------------------------------
namespace {
std::shared_ptr<const TokenizerModel> bytes_only_model() {
  static const std::shared_ptr<const TokenizerModel> model = [] {
    auto m = std::make_shared<TokenizerModel>();
    for (uint32_t b = 0; b < 256; ++b)
      m->add_token(b, std::string(1, static_cast<char>(b)), TokenKind::kNormal);
    m->finalize("bytes");
    return m;
  }();
  return model;
}
}  // namespace

Tokenizer::Tokenizer() : model_(bytes_only_model()) {}
Tokenizer::Tokenizer(std::shared_ptr<const TokenizerModel> model) : model_(std::move(model)) {}

// Encoding, step by step:
//   1. With allow_special, find the next occurrence of a special token's
//      content (find_special); the text before it is ordinary text, the
//      special token becomes its id; go on after it.
//   2. Ordinary text goes through the pre-tokenizer, which calls back once per
//      piece, in order (encode_ordinary).
//   3. Each piece: look its bytes up in this thread's cache (encode_piece); on
//      a miss, run BPE on them (bpe_piece: a tiktoken model first takes a piece
//      that is a token as a whole; else start from the byte tokens and merge by
//      rank, bpe_small or bpe_large) and remember the ids for next time.
void Tokenizer::encode_into(std::string_view text, std::vector<uint32_t>& out,
                            bool allow_special) const {
  const TokenizerModel& m = *model_;
  if (!allow_special || m.specials.empty()) {
    encode_ordinary(m, text, out);
    return;
  }
  // Special tokens cut the text; the text between them is ordinary.
  size_t pos = 0;
  while (pos < text.size()) {
    const auto [at, k] = find_special(m, text, pos);
    encode_ordinary(m, text.substr(pos, at == std::string_view::npos ? at : at - pos), out);
    if (at == std::string_view::npos) break;
    out.push_back(m.specials[k].id);
    pos = at + m.specials[k].content.size();
  }
}

std::vector<uint32_t> Tokenizer::encode(std::string_view text, bool allow_special) const {
  std::vector<uint32_t> out;
  out.reserve(text.size() / 3 + 1);
  encode_into(text, out, allow_special);
  return out;
}

std::vector<uint32_t> Tokenizer::encode_parallel(std::string_view text, int threads,
                                                 bool allow_special) const {
  const TokenizerModel& m = *model_;
  const size_t n_threads = resolve_threads(threads);
  bool special_newline = false;
  for (const SpecialToken& s : m.specials)
    special_newline |= s.content.find('\n') != std::string::npos;
  constexpr size_t kPart = 256 << 10;
  if (n_threads <= 1 || text.size() < 2 * kPart || (allow_special && special_newline))
    return encode(text, allow_special);
  // Parts of ~256 KB, taken in turn; their ids are joined in order.
  const std::vector<std::string_view> parts = m.pre.safe_parts(text, kPart);
  std::vector<std::vector<uint32_t>> ids(parts.size());
  std::atomic<size_t> next{0};
  parallel_run(std::min(n_threads, parts.size()), [&](size_t) {
    for (size_t i = next++; i < parts.size(); i = next++) ids[i] = encode(parts[i], allow_special);
  });
  size_t total = 0;
  for (const auto& v : ids) total += v.size();
  std::vector<uint32_t> out;
  out.reserve(total);
  for (const auto& v : ids) out.insert(out.end(), v.begin(), v.end());
  return out;
}

std::vector<std::vector<uint32_t>> Tokenizer::encode_batch(const std::vector<std::string>& texts,
                                                           int threads, bool allow_special) const {
  std::vector<std::vector<uint32_t>> out(texts.size());
  // Texts are handed out in small blocks from a shared counter, so that one
  // long text does not leave the other threads idle. The pool's threads keep
  // their piece caches from one call to the next.
  constexpr size_t kBlock = 16;
  std::atomic<size_t> next{0};
  parallel_run(std::min(resolve_threads(threads), (texts.size() + kBlock - 1) / kBlock),
               [&](size_t) {
                 for (size_t begin = next.fetch_add(kBlock); begin < texts.size();
                      begin = next.fetch_add(kBlock)) {
                   const size_t end = std::min(begin + kBlock, texts.size());
                   for (size_t i = begin; i < end; ++i) out[i] = encode(texts[i], allow_special);
                 }
               });
  return out;
}

std::string Tokenizer::decode_bytes(const std::vector<uint32_t>& ids) const {
  const TokenizerModel& m = *model_;
  size_t total = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    SHARDLM_CHECK(m.has(ids[i]), DataError,
                  "cannot decode: token id {} (at position {}) is not in the vocabulary (size {})",
                  ids[i], i, m.tokens.size());
    total += m.tokens[ids[i]].size();
  }
  std::string out;
  out.reserve(total);
  for (uint32_t id : ids) out += m.tokens[id];
  return out;
}

std::string Tokenizer::decode_model_ids(const std::vector<int64_t>& ids) const {
  std::vector<uint32_t> known;
  known.reserve(ids.size());
  for (int64_t id : ids)
    if (id >= 0 && id <= static_cast<int64_t>(UINT32_MAX) && is_token(static_cast<uint32_t>(id)))
      known.push_back(static_cast<uint32_t>(id));
  return decode_bytes(known);
}

std::string Tokenizer::decode(const std::vector<uint32_t>& ids) const {
  return utf8_sanitize(decode_bytes(ids));
}

size_t Tokenizer::vocab_size() const {
  return model_->tokens.size();
}
bool Tokenizer::is_token(uint32_t id) const {
  return model_->has(id);
}
size_t Tokenizer::num_merges() const {
  return model_->kind == TokenizerModel::Kind::kMerges ? model_->merges.size() : 0;
}

const std::string& Tokenizer::token_bytes(uint32_t id) const {
  SHARDLM_CHECK(model_->has(id), DataError, "token id {} is not in the vocabulary (size {})", id,
                model_->tokens.size());
  return model_->tokens[id];
}

std::optional<uint32_t> Tokenizer::token_id(std::string_view bytes) const {
  if (const uint32_t* id = model_->bytes_to_id.find(bytes)) return *id;
  return std::nullopt;
}

std::optional<uint32_t> Tokenizer::special_id(const std::string& name) const {
  for (const SpecialToken& s : model_->specials)
    if (s.content == name) return s.id;
  for (const SpecialToken& s : model_->specials)
    for (const std::string& r : s.roles)
      if (r == name) return s.id;
  return std::nullopt;
}

std::optional<uint32_t> Tokenizer::eos_id() const {
  return special_id("eos");
}
std::optional<uint32_t> Tokenizer::bos_id() const {
  return special_id("bos");
}
std::optional<uint32_t> Tokenizer::pad_id() const {
  return special_id("pad");
}
std::optional<uint32_t> Tokenizer::unk_id() const {
  return special_id("unk");
}
const std::vector<SpecialToken>& Tokenizer::special_tokens() const {
  return model_->specials;
}
const std::string& Tokenizer::pattern() const {
  return model_->pre.regex();
}
std::string Tokenizer::pattern_name() const {
  const std::string& n = model_->pre.name();
  return n.empty() ? "custom" : n;
}
std::string Tokenizer::kind() const {
  return model_->kind == TokenizerModel::Kind::kMerges ? "merges" : "ranks";
}
std::string Tokenizer::hash() const {
  return model_->digest;
}
const std::string& Tokenizer::source() const {
  return model_->source;
}

}  // namespace shardlm::data
