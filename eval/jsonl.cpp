// JSON Lines reading and durable appends (see jsonl.h).
#include "eval/jsonl.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace shardlm::eval {

std::string JsonLine::where() const {
  return file + ":" + std::to_string(line);
}

namespace {
template <class T>
T convert(const JsonLine& l, const char* key) {
  try {
    return l.value.at(key).get<T>();
  } catch (const nlohmann::json::exception&) {
    SHARDLM_FAIL(core::DataError, "{}: field '{}' is {} ({})", l.where(), key,
                 l.value.at(key).dump().substr(0, 80), "of the wrong type");
  }
}
}  // namespace

template <class T>
T JsonLine::get(const char* key) const {
  SHARDLM_CHECK(value.contains(key), core::DataError, "{}: missing field '{}'", where(), key);
  return convert<T>(*this, key);
}

template <class T>
T JsonLine::get_or(const char* key, const T& def) const {
  if (!value.contains(key) || value.at(key).is_null()) return def;
  return convert<T>(*this, key);
}

template std::string JsonLine::get<std::string>(const char*) const;
template int64_t JsonLine::get<int64_t>(const char*) const;
template double JsonLine::get<double>(const char*) const;
template std::vector<std::string> JsonLine::get<std::vector<std::string>>(const char*) const;
template std::string JsonLine::get_or<std::string>(const char*, const std::string&) const;
template int64_t JsonLine::get_or<int64_t>(const char*, const int64_t&) const;
template std::vector<std::string> JsonLine::get_or<std::vector<std::string>>(
    const char*, const std::vector<std::string>&) const;

std::vector<JsonLine> read_jsonl(const std::string& path, bool tolerate_torn_tail) {
  std::ifstream in(path, std::ios::binary);
  SHARDLM_CHECK(in, core::DataError, "cannot read {}: {}", path, std::strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  std::vector<JsonLine> out;
  size_t pos = 0, line = 0;
  while (pos < text.size()) {
    ++line;
    size_t end = text.find('\n', pos);
    const bool has_newline = end != std::string::npos;
    if (!has_newline) end = text.size();
    std::string s = text.substr(pos, end - pos);
    pos = end + 1;
    if (!s.empty() && s.back() == '\r') s.pop_back();
    if (s.find_first_not_of(" \t") == std::string::npos) continue;
    JsonLine l;
    l.file = path;
    l.line = line;
    try {
      l.value = nlohmann::json::parse(s);
    } catch (const nlohmann::json::exception& e) {  // a syntax error or a number out of range
      if (tolerate_torn_tail && !has_newline) break;
      SHARDLM_FAIL(core::DataError, "{}:{}: not valid JSON ({})", path, line, e.what());
    }
    SHARDLM_CHECK(l.value.is_object(), core::DataError, "{}:{}: expected a JSON object, got {}",
                  path, line, l.value.type_name());
    out.push_back(std::move(l));
  }
  return out;
}

void append_jsonl(const std::string& path, const nlohmann::json& value) {
  const std::string s = value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  SHARDLM_CHECK(fd >= 0, core::DataError, "cannot open {} for appending: {}", path,
                std::strerror(errno));
  // A write that fails half-way (a full disk) is undone: the file keeps exactly
  // the lines it had, never a torn one.
  struct stat st {};
  const off_t before = ::fstat(fd, &st) == 0 ? st.st_size : -1;
  size_t done = 0;
  while (done < s.size()) {
    const ssize_t n = ::write(fd, s.data() + done, s.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      if (done > 0 && before >= 0) (void)::ftruncate(fd, before);
      ::close(fd);
      SHARDLM_FAIL(core::DataError, "cannot append to {}: {}{}", path, std::strerror(err),
                   err == ENOSPC ? " (disk full; the lines already written are kept)" : "");
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    const int err = errno;
    if (before >= 0) (void)::ftruncate(fd, before);
    ::close(fd);
    SHARDLM_FAIL(core::DataError, "cannot append to {}: {}", path, std::strerror(err));
  }
  ::close(fd);
}

}  // namespace shardlm::eval
