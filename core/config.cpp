// Run configuration on top of toml++: typed reads with defaults, overrides,
// precise errors, and detection of keys that nobody read.
#include "config.h"

#include <toml++/toml.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

namespace shardlm::core {

struct ConfigState {
  toml::table root;
  std::string file = "<defaults>";
  std::set<std::string> read_keys;  // dotted paths asked for by some component
};

// ---- helpers -----------------------------------------------------------------

namespace {

// Whether `s` is well-formed UTF-8 (no overlongs, surrogates or code points
// above U+10FFFF). TOML files are checked by toml++; overrides come from the
// command line and are checked here.
bool valid_utf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    int n = c < 0x80 ? 0 : (c >> 5) == 0x6 ? 1 : (c >> 4) == 0xE ? 2 : (c >> 3) == 0x1E ? 3 : -1;
    if (n < 0 || (n == 1 && c < 0xC2) || (n > 0 && i + n >= s.size())) return false;
    uint32_t cp = n == 0 ? c : c & (0x3F >> n);
    for (int k = 1; k <= n; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    if ((n == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
        (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
      return false;
    i += n + 1;
  }
  return true;
}

// toml++ 3.3 writes a key holding a single quote or a control character
// (tab, newline) without quoting it, so the effective configuration it prints
// (the run's config.toml) would not parse back (found by fuzz_config). No key
// shardlm reads has such characters: they are refused when the configuration
// is read, from the file or an override.
void check_key_chars(const toml::node& n, const std::string& file, const std::string& prefix) {
  auto check_table = [&](const toml::table& t) {
    for (const auto& [k, child] : t) {
      const std::string key(k.str());
      const std::string full = prefix.empty() ? key : prefix + "." + key;
      for (char c : key)
        if (c == '\'' || (static_cast<unsigned char>(c) < 0x20))
          throw ConfigError(
              fmt::format("{}: key {:?} holds a quote or a control character "
                          "(shardlm's keys are plain names)",
                          file, full));
      check_key_chars(child, file, full);
    }
  };
  if (const toml::table* t = n.as_table())
    check_table(*t);
  else if (const toml::array* a = n.as_array())
    for (const auto& e : *a) check_key_chars(e, file, prefix);
}

std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> parts;
  std::string cur;
  for (char c : path) {
    if (c == '.') {
      parts.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty() || !parts.empty()) parts.push_back(cur);
  return parts;
}

std::string join(const std::string& a, const std::string& b) {
  return a.empty() ? b : a + "." + b;
}

const toml::node* find_node(const toml::table& root, const std::string& dotted) {
  const toml::table* t = &root;
  auto parts = split_path(dotted);
  for (size_t i = 0; i < parts.size(); ++i) {
    const toml::node* n = t->get(parts[i]);
    if (!n) return nullptr;
    if (i + 1 == parts.size()) return n;
    t = n->as_table();
    if (!t) return nullptr;
  }
  return t;
}

std::string render(const toml::node& n) {
  std::ostringstream os;
  n.visit([&](auto&& v) { os << v; });
  std::string s = n.is_string() ? "\"" + *n.value<std::string>() + "\"" : os.str();
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

std::string location(const ConfigState& st, const std::string& dotted) {
  const toml::node* n = find_node(st.root, dotted);
  if (n && n->source().begin.line > 0) return fmt::format("{}:{}", st.file, n->source().begin.line);
  return st.file;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

// Converts a TOML node to T; returns nullopt when the type does not match.
template <class T>
std::optional<T> convert(const toml::node& n);

template <>
std::optional<bool> convert<bool>(const toml::node& n) {
  if (auto v = n.value_exact<bool>()) return *v;
  return std::nullopt;
}
template <>
std::optional<int64_t> convert<int64_t>(const toml::node& n) {
  if (auto v = n.value_exact<int64_t>()) return *v;
  return std::nullopt;
}
template <>
std::optional<int> convert<int>(const toml::node& n) {
  auto v = n.value_exact<int64_t>();
  if (!v || *v < INT32_MIN || *v > INT32_MAX) return std::nullopt;
  return static_cast<int>(*v);
}
template <>
std::optional<double> convert<double>(const toml::node& n) {
  if (auto v = n.value_exact<double>()) return *v;
  if (auto v = n.value_exact<int64_t>()) return static_cast<double>(*v);
  return std::nullopt;
}
template <>
std::optional<std::string> convert<std::string>(const toml::node& n) {
  if (auto v = n.value_exact<std::string>()) return *v;
  return std::nullopt;
}
template <class E>
std::optional<std::vector<E>> convert_array(const toml::node& n) {
  const toml::array* a = n.as_array();
  if (!a) return std::nullopt;
  std::vector<E> out;
  for (const auto& e : *a) {
    auto v = convert<E>(e);
    if (!v) return std::nullopt;
    out.push_back(*v);
  }
  return out;
}
template <>
std::optional<std::vector<std::string>> convert<std::vector<std::string>>(const toml::node& n) {
  return convert_array<std::string>(n);
}
template <>
std::optional<std::vector<int64_t>> convert<std::vector<int64_t>>(const toml::node& n) {
  return convert_array<int64_t>(n);
}
template <>
std::optional<std::vector<double>> convert<std::vector<double>>(const toml::node& n) {
  return convert_array<double>(n);
}

template <class T>
const char* type_name();
template <>
const char* type_name<bool>() {
  return "a boolean (true or false)";
}
template <>
const char* type_name<int>() {
  return "an integer (32-bit)";
}
template <>
const char* type_name<int64_t>() {
  return "an integer";
}
template <>
const char* type_name<double>() {
  return "a number";
}
template <>
const char* type_name<std::string>() {
  return "a string";
}
template <>
const char* type_name<std::vector<std::string>>() {
  return "an array of strings";
}
template <>
const char* type_name<std::vector<int64_t>>() {
  return "an array of integers";
}
template <>
const char* type_name<std::vector<double>>() {
  return "an array of numbers";
}

}  // namespace

// ---- ConfigSection -------------------------------------------------------------

ConfigSection::ConfigSection(std::shared_ptr<ConfigState> state, std::string path)
    : state_(std::move(state)), path_(std::move(path)) {}

std::string ConfigSection::key_path(const std::string& key) const {
  return join(path_, key);
}
const std::string& ConfigSection::file() const {
  return state_->file;
}

bool ConfigSection::has(const std::string& key) const {
  state_->read_keys.insert(key_path(key));
  return find_node(state_->root, key_path(key)) != nullptr;
}

ConfigSection ConfigSection::section(const std::string& name) const {
  return ConfigSection(state_, key_path(name));
}

void ConfigSection::fail(const std::string& key, const std::string& value,
                         const std::string& expected) const {
  throw ConfigError(location(*state_, key_path(key)), key_path(key), value, expected);
}

template <class T>
T ConfigSection::get(const std::string& key, const T& def) const {
  std::string full = key_path(key);
  state_->read_keys.insert(full);
  const toml::node* n = find_node(state_->root, full);
  if (!n) return def;
  auto v = convert<T>(*n);
  if (!v) fail(key, render(*n), type_name<T>());
  return *v;
}

template <class T>
T ConfigSection::require(const std::string& key) const {
  std::string full = key_path(key);
  state_->read_keys.insert(full);
  const toml::node* n = find_node(state_->root, full);
  if (!n)
    throw ConfigError(state_->file, full, "", std::string("a value (required): ") + type_name<T>());
  auto v = convert<T>(*n);
  if (!v) fail(key, render(*n), type_name<T>());
  return *v;
}

#define SHARDLM_DEFINE_GET(T)                                           \
  template T ConfigSection::get<T>(const std::string&, const T&) const; \
  template T ConfigSection::require<T>(const std::string&) const;
SHARDLM_CONFIG_TYPES(SHARDLM_DEFINE_GET)
#undef SHARDLM_DEFINE_GET

// ---- RunConfig -------------------------------------------------------------------

RunConfig::RunConfig() : state_(std::make_shared<ConfigState>()) {}

RunConfig RunConfig::parse(const std::string& text, const std::string& name,
                           const std::vector<std::string>& overrides) {
  RunConfig rc;
  rc.state_->file = name;
  try {
    rc.state_->root = toml::parse(text, name);
  } catch (const toml::parse_error& e) {
    const auto& b = e.source().begin;
    throw ConfigError(fmt::format("{}:{}:{}: malformed TOML: {}", name, b.line, b.column,
                                  std::string(e.description())));
  }
  for (const auto& o : overrides) rc.apply_override(o);
  check_key_chars(rc.state_->root, name, "");
  return rc;
}

RunConfig RunConfig::load(const std::string& path, const std::vector<std::string>& overrides) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(fmt::format("{}: cannot open the configuration file", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return parse(ss.str(), path, overrides);
}

void RunConfig::apply_override(const std::string& assignment) {
  if (!valid_utf8(assignment))  // not echoed: the bytes would make the message invalid too
    throw ConfigError("an override (--section.key=value) is not valid UTF-8");
  std::string a = assignment;
  while (!a.empty() && a[0] == '-') a.erase(0, 1);
  auto eq = a.find('=');
  if (eq == std::string::npos || eq == 0)
    throw ConfigError(fmt::format("override '{}': expected --section.key=value", assignment));
  std::string key = a.substr(0, eq), value = a.substr(eq + 1);
  auto parts = split_path(key);
  for (const auto& p : parts)
    if (p.empty()) throw ConfigError(fmt::format("override '{}': empty key part", assignment));

  // The value as TOML when it parses as one, else as a plain string.
  toml::table parsed;
  bool is_toml = true;
  try {
    parsed = toml::parse("v = " + value);
  } catch (const toml::parse_error&) {
    is_toml = false;
  }
  toml::table* t = &state_->root;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    toml::node* n = t->get(parts[i]);
    if (!n) {
      t->insert(parts[i], toml::table{});
      n = t->get(parts[i]);
    }
    if (!n->is_table())
      throw ConfigError(
          fmt::format("override '{}': '{}' is a value, not a section", assignment, parts[i]));
    t = n->as_table();
  }
  for (const auto& p : parts)
    if (std::any_of(p.begin(), p.end(),
                    [](char c) { return c == '\'' || static_cast<unsigned char>(c) < 0x20; }))
      throw ConfigError(
          fmt::format("override {:?}: a key holds a quote or a control character "
                      "(shardlm's keys are plain names)",
                      assignment));
  if (is_toml) {
    check_key_chars(*parsed.get("v"), "override " + assignment, key);
    t->insert_or_assign(parts.back(), *parsed.get("v"));
  } else {
    t->insert_or_assign(parts.back(), value);
  }
}

ConfigSection RunConfig::section(const std::string& name) const {
  return ConfigSection(state_, name);
}
ConfigSection RunConfig::root() const {
  return ConfigSection(state_, "");
}
const std::string& RunConfig::file() const {
  return state_->file;
}

void RunConfig::rethrow_in_section(const ConfigError& e, const ConfigSection& s) const {
  if (!e.config_file().empty() || e.key().empty()) throw e;
  // validate() names keys relative to its section ("lr") or in full ("train.lr").
  std::string full = e.key().rfind(s.path() + ".", 0) == 0 ? e.key() : s.key_path(e.key());
  throw ConfigError(location(*state_, full), full, e.value(), e.expected());
}

void RunConfig::check_unknown_keys() const {
  std::vector<std::string> unknown;
  std::function<void(const toml::table&, const std::string&)> walk =
      [&](const toml::table& t, const std::string& prefix) {
        for (const auto& [k, node] : t) {
          std::string full = join(prefix, std::string(k.str()));
          if (const toml::table* sub = node.as_table())
            walk(*sub, full);
          else if (!state_->read_keys.count(full))
            unknown.push_back(full);
        }
      };
  walk(state_->root, "");
  if (unknown.empty()) return;
  const std::string& bad = unknown.front();
  std::string best;
  size_t best_d = SIZE_MAX;
  for (const auto& k : state_->read_keys) {
    size_t d = edit_distance(bad, k);
    if (d < best_d) best_d = d, best = k;
  }
  std::string hint = (!best.empty() && best_d <= std::max<size_t>(3, bad.size() / 3))
                         ? fmt::format(" (did you mean '{}'?)", best)
                         : "";
  throw ConfigError(fmt::format("{}: unknown key '{}'{}", location(*state_, bad), bad, hint));
}

std::string RunConfig::to_toml() const {
  std::ostringstream os;
  os << toml::toml_formatter(state_->root);
  return os.str();
}

std::string RunConfig::to_json() const {
  std::ostringstream os;
  os << toml::json_formatter(state_->root);
  return os.str();
}

}  // namespace shardlm::core
