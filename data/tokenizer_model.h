// The state behind a Tokenizer (internal to data/): the vocabulary, the pair
// table BPE merges by, the pre-tokenizer and the special tokens. Built once by
// a loader or by training through TokenizerModel::finalize(), then immutable.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "data/flat_map.h"
#include "data/pretokenizer.h"
#include "data/tokenizer.h"

namespace shardlm::data::detail {

constexpr uint32_t kNoRank = ~uint32_t{0};
// Token ids above this are refused when reading files (a damaged file must
// not make us allocate gigabytes); the largest real vocabularies have ~256k.
constexpr uint32_t kMaxTokenId = 1u << 26;

// left + right -> result; its position in TokenizerModel::merges is its rank.
struct Merge {
  uint32_t left, right, result;
};

// What the pair table holds for (left, right): the merge's rank and the token
// it makes. Lower ranks merge first.
struct PairInfo {
  uint32_t rank = kNoRank;
  uint32_t result = 0;
};

enum class TokenKind : uint8_t { kNone = 0, kNormal = 1, kSpecial = 2 };

struct TokenizerModel {
  enum class Kind { kMerges, kRanks };

  // ---- what a loader or the trainer fills in ------------------------------------------
  Kind kind = Kind::kMerges;
  // tiktoken and HF's ignore_merges: a piece that is a token as a whole
  // becomes that token without running the merges.
  bool whole_piece_lookup = false;
  std::vector<std::string> tokens;  // id -> bytes (a special token: its content)
  std::vector<TokenKind> token_kind;
  std::vector<Merge> merges;  // Kind::kMerges, in rank order
  std::string pattern = "gpt2";
  std::vector<SpecialToken> specials;
  std::string source;

  // ---- built by finalize() ------------------------------------------------------------------
  Pretokenizer pre;
  std::array<uint32_t, 256> byte_id{};    // the token of each single byte
  BytesMap<uint32_t> bytes_to_id;         // ordinary tokens
  PairMap<PairInfo> pairs;                // (left, right) -> rank, result
  std::vector<uint32_t> special_order;    // indices into specials, longest content first
  std::array<bool, 256> special_first{};  // bytes that start a special token
  std::string digest;
  uint64_t serial = 0;  // identifies this model in the per-thread piece caches

  // Checks the parts (every byte has a token, merges are consistent, ids are
  // unique) and builds the lookup tables and the digest. `where` names the
  // source in error messages.
  void finalize(const std::string& where);

  void add_token(uint32_t id, std::string bytes, TokenKind kind);
  bool has(uint32_t id) const {
    return id < token_kind.size() && token_kind[id] != TokenKind::kNone;
  }
  PairInfo pair(uint32_t left, uint32_t right) const {
    const PairInfo* p = pairs.find(pair_key(left, right));
    return p ? *p : PairInfo{};
  }
};

// Roles a special token gets from its content when a format has none
// ("<|endoftext|>" -> eos and bos, "<pad>" -> pad, ...).
std::vector<std::string> roles_from_content(const std::string& content);
// Gives each role (pad, unk, bos, eos) to the first special token whose content
// suggests it; "<|endoftext|>" is bos only when no token is bos by name.
void assign_default_roles(std::vector<SpecialToken>& specials);

// BPE of one piece with the small (linear scan) or the large (heap) algorithm,
// for tests that check the two agree.
void bpe_piece_for_test(const TokenizerModel& m, std::string_view piece, bool large,
                        std::vector<uint32_t>& out);

}  // namespace shardlm::data::detail
