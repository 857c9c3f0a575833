// ChatTemplate (chat.h): the default transcript, the file form and rendering.
#include "serve/chat.h"

#include <fmt/format.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"

namespace shardlm::serve {

using json = nlohmann::json;
namespace fs = std::filesystem;

ChatTemplate ChatTemplate::base_default() {
  ChatTemplate t;
  t.name = "default";
  t.roles["system"] = {"", "\n\n"};
  t.roles["user"] = {"User: ", "\n"};
  t.roles["assistant"] = {"Assistant: ", "\n"};
  t.generation_prompt = "Assistant:";
  t.stop = {"\nUser:"};
  return t;
}

ChatTemplate ChatTemplate::from_json(const json& j, const std::string& where) {
  auto fail = [&](const std::string& key, const std::string& value, const std::string& expected) {
    throw core::ConfigError(where, key, value, expected);
  };
  if (!j.is_object()) fail("", j.type_name(), "a JSON object with \"roles\"");
  auto text = [&](const json& o, const std::string& key, const std::string& field) {
    if (!o.contains(key) || o[key].is_null()) return std::string();
    if (!o[key].is_string()) fail(field, o[key].dump(), "a string");
    return o[key].get<std::string>();
  };
  ChatTemplate t;
  t.name = text(j, "name", "name");
  if (t.name.empty()) t.name = fs::path(where).parent_path().filename().string();
  t.bos = text(j, "bos", "bos");
  t.generation_prompt = text(j, "generation_prompt", "generation_prompt");
  if (!j.contains("roles") || !j["roles"].is_object())
    fail("roles", j.contains("roles") ? j["roles"].dump() : "(missing)",
         "an object {\"user\": {\"prefix\", \"suffix\"}, ...}");
  for (const auto& [role, r] : j["roles"].items()) {
    if (role != "system" && role != "user" && role != "assistant")
      fail("roles." + role, role, "system, user or assistant");
    if (!r.is_object()) fail("roles." + role, r.dump(), "{\"prefix\": ..., \"suffix\": ...}");
    t.roles[role] = {text(r, "prefix", "roles." + role + ".prefix"),
                     text(r, "suffix", "roles." + role + ".suffix")};
  }
  if (!t.roles.count("user")) fail("roles.user", "(missing)", "the user role's prefix and suffix");
  if (j.contains("stop") && !j["stop"].is_null()) {
    if (!j["stop"].is_array()) fail("stop", j["stop"].dump(), "a list of strings");
    for (const auto& s : j["stop"]) {
      if (!s.is_string() || s.get<std::string>().empty())
        fail("stop", s.dump(), "non-empty strings");
      t.stop.push_back(s.get<std::string>());
    }
  }
  return t;
}

ChatTemplate ChatTemplate::load_beside(const std::string& weights) {
  const fs::path p(weights);
  fs::path dir = fs::is_directory(p) ? p : p.parent_path();
  if (dir.empty()) dir = ".";
  const fs::path file = dir / "chat_template.json";
  if (!fs::is_regular_file(file)) return base_default();
  std::ifstream in(file);
  json j = json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded())
    throw core::ConfigError(
        fmt::format("{}: not valid JSON (see docs/serving.md, chat templates)", file.string()));
  return from_json(j, file.string());
}

std::string ChatTemplate::render(const std::vector<ChatMessage>& messages) const {
  std::string out = bos;
  for (size_t i = 0; i < messages.size(); ++i) {
    const auto& m = messages[i];
    auto it = roles.find(m.role);
    if (it == roles.end())
      throw RequestError(400,
                         fmt::format("messages[{}].role '{}' is not in this model's chat "
                                     "template '{}'",
                                     i, m.role, name),
                         "messages");
    out += it->second.prefix + m.content + it->second.suffix;
  }
  return out + generation_prompt;
}

json ChatTemplate::to_json() const {
  json r = json::object();
  for (const auto& [role, v] : roles) r[role] = {{"prefix", v.prefix}, {"suffix", v.suffix}};
  return {{"name", name},
          {"bos", bos},
          {"roles", r},
          {"generation_prompt", generation_prompt},
          {"stop", stop}};
}

}  // namespace shardlm::serve
