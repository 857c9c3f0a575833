// Stop criteria and the stop-aware, UTF-8-aware text stream. No LibTorch here.
#include "model/stopping.h"

#include <algorithm>

#include "core/error.h"

namespace shardlm::model {

const char* to_string(FinishReason r) {
  switch (r) {
    case FinishReason::kNone:
      return "none";
    case FinishReason::kEos:
      return "eos";
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kCallback:
      return "callback";
  }
  return "?";
}

// ---- stop criteria -------------------------------------------------------------------------

StopCriteria::StopCriteria(const GenerationConfig& cfg, DecodeFn decode)
    : eos_(cfg.eos_ids.begin(), cfg.eos_ids.end()),
      sequences_(cfg.stop_token_sequences),
      strings_(cfg.stop_strings),
      decode_(std::move(decode)) {
  if (!strings_.empty() && !decode_)
    throw core::ConfigError("", "stop", strings_.front(),
                            "stop strings need a decoder (Generator::set_decoder)");
  for (const auto& s : strings_) longest_string_ = std::max(longest_string_, s.size());
}

FinishReason StopCriteria::check(const std::vector<int64_t>& gen, std::string* matched) const {
  if (gen.empty()) return FinishReason::kNone;
  if (eos_.count(gen.back())) {
    if (matched) *matched = std::to_string(gen.back());
    return FinishReason::kEos;
  }
  for (const auto& seq : sequences_) {
    if (seq.size() <= gen.size() && std::equal(seq.rbegin(), seq.rend(), gen.rbegin())) {
      if (matched) {
        matched->clear();
        for (int64_t id : seq) *matched += (matched->empty() ? "" : " ") + std::to_string(id);
      }
      return FinishReason::kStop;
    }
  }
  if (!strings_.empty()) {
    // A stop string of n bytes lies within the last n tokens when it ends in the newest.
    const size_t n = std::min(gen.size(), longest_string_);
    const std::string tail = decode_(std::vector<int64_t>(gen.end() - n, gen.end()));
    for (const auto& s : strings_) {
      if (tail.find(s) != std::string::npos) {
        if (matched) *matched = s;
        return FinishReason::kStop;
      }
    }
  }
  return FinishReason::kNone;
}

// ---- text stream ---------------------------------------------------------------------------

namespace {
// Length of the longest prefix of `s` that ends on a UTF-8 character boundary:
// an unfinished multi-byte sequence at the end is held back (invalid bytes pass).
size_t utf8_complete(const std::string& s) {
  const size_t n = s.size();
  for (size_t back = 1; back <= std::min<size_t>(4, n); ++back) {
    const auto c = static_cast<unsigned char>(s[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: look further back
    size_t need = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
    return need > back ? n - back : n;
  }
  return n;
}
}  // namespace

TextStream::TextStream(DecodeFn decode, std::vector<std::string> stop_strings)
    : decode_(std::move(decode)), stops_(std::move(stop_strings)) {
  if (!decode_) throw core::ConfigError("TextStream needs a decoder");
}

std::string TextStream::push(int64_t token) {
  if (stopped_) return "";
  pending_ += decode_({token});
  return release(false);
}

std::string TextStream::finish() {
  return stopped_ ? "" : release(true);
}

std::string TextStream::release(bool at_end) {
  // Text before the first stop string is final; the stop string and after never show.
  size_t stop_at = std::string::npos;
  for (const auto& s : stops_) stop_at = std::min(stop_at, pending_.find(s));
  std::string out;
  if (stop_at != std::string::npos) {
    out = pending_.substr(0, stop_at);
    pending_.clear();
    stopped_ = true;
  } else {
    // Hold back the longest suffix that may still grow into a stop string, and an
    // unfinished UTF-8 character (at the end, everything goes out).
    size_t keep = 0;
    if (!at_end) {
      for (const auto& s : stops_)
        for (size_t len = std::min(s.size() - 1, pending_.size()); len > keep; --len)
          if (pending_.compare(pending_.size() - len, len, s, 0, len) == 0) {
            keep = len;
            break;
          }
    }
    size_t cut = pending_.size() - keep;
    if (!at_end) cut = utf8_complete(pending_.substr(0, cut));
    out = pending_.substr(0, cut);
    pending_.erase(0, cut);
  }
  emitted_ += out;
  return out;
}

}  // namespace shardlm::model
