// xxHash wrappers (see hash.h).
#include "data/hash.h"

#include <xxhash.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include "core/error.h"

namespace shardlm::data {

Hash128 hash128(std::string_view bytes) {
  XXH128_hash_t h = XXH3_128bits(bytes.data(), bytes.size());
  return Hash128{h.high64, h.low64};
}

uint64_t hash64(std::string_view bytes, uint64_t seed) {
  return XXH3_64bits_withSeed(bytes.data(), bytes.size(), seed);
}

std::string hex64(uint64_t v) {
  return fmt::format("{:016x}", v);
}

std::string file_checksum(const std::string& path) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  SHARDLM_CHECK(f, core::DataError, "cannot open {} to checksum it: {}", path,
                std::strerror(errno));
  std::unique_ptr<XXH3_state_t, XXH_errorcode (*)(XXH3_state_t*)> st(XXH3_createState(),
                                                                     &XXH3_freeState);
  XXH3_64bits_reset(st.get());
  std::vector<char> buf(1 << 20);
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), f.get())) > 0)
    XXH3_64bits_update(st.get(), buf.data(), n);
  SHARDLM_CHECK(!std::ferror(f.get()), core::DataError, "read error while checksumming {}", path);
  return "xxh3-64:" + hex64(XXH3_64bits_digest(st.get()));
}

}  // namespace shardlm::data
