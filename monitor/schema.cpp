// The JSON Schema subset validator (see schema.h for the keywords).
#include "monitor/schema.h"

#include <cmath>
#include <set>

#include "monitor/protocol.h"

namespace shardlm::monitor {

namespace {

using json = nlohmann::json;

const std::set<std::string>& known_keywords() {
  static const std::set<std::string> k = {"$schema",
                                          "$id",
                                          "$defs",
                                          "title",
                                          "description",
                                          "type",
                                          "enum",
                                          "const",
                                          "properties",
                                          "required",
                                          "additionalProperties",
                                          "items",
                                          "minItems",
                                          "maxItems",
                                          "minimum",
                                          "maximum",
                                          "exclusiveMinimum",
                                          "minLength",
                                          "maxLength",
                                          "$ref",
                                          "oneOf",
                                          "anyOf",
                                          "allOf",
                                          "if",
                                          "then",
                                          "else"};
  return k;
}

bool is_type(const json& x, const std::string& t) {
  if (t == "object") return x.is_object();
  if (t == "array") return x.is_array();
  if (t == "string") return x.is_string();
  if (t == "boolean") return x.is_boolean();
  if (t == "null") return x.is_null();
  if (t == "number") return x.is_number();
  if (t == "integer") {
    if (x.is_number_integer()) return true;
    if (!x.is_number_float()) return false;
    double d = x.get<double>();
    return std::isfinite(d) && std::floor(d) == d;
  }
  return false;
}

std::string show(const json& x) {
  std::string s = x.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

// The number of UTF-8 code points (JSON Schema counts characters, not bytes).
size_t utf8_length(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

constexpr size_t kMaxErrors = 8;

}  // namespace

SchemaValidator::SchemaValidator(json schema) : root_(std::move(schema)) {
  check_keywords(root_, "#");
}

void SchemaValidator::check_keywords(const json& s, const std::string& where) const {
  if (s.is_boolean()) return;
  if (!s.is_object()) throw ProtocolError("internal", "schema at " + where + " is not an object");
  for (auto& [k, v] : s.items()) {
    if (!known_keywords().count(k))
      throw ProtocolError("internal", "schema keyword '" + k + "' at " + where +
                                          " is not implemented by monitor/schema.cpp");
    if (k == "properties" || k == "$defs") {
      for (auto& [name, sub] : v.items()) check_keywords(sub, where + "/" + k + "/" + name);
    } else if (k == "items" || k == "if" || k == "then" || k == "else" ||
               (k == "additionalProperties" && v.is_object())) {
      check_keywords(v, where + "/" + k);
    } else if (k == "oneOf" || k == "anyOf" || k == "allOf") {
      for (size_t i = 0; i < v.size(); ++i)
        check_keywords(v[i], where + "/" + k + "/" + std::to_string(i));
    } else if (k == "$ref") {
      resolve(v.get<std::string>());  // throws when dangling
    }
  }
}

const json& SchemaValidator::resolve(const std::string& ref) const {
  if (ref.rfind("#", 0) != 0) throw ProtocolError("internal", "only local $ref supported: " + ref);
  try {
    return root_.at(json::json_pointer(ref.substr(1)));
  } catch (const json::exception&) {
    throw ProtocolError("internal", "schema $ref " + ref + " points nowhere");
  }
}

void SchemaValidator::validate(const json& s, const json& x, const std::string& path,
                               std::vector<std::string>& out) const {
  if (out.size() >= kMaxErrors) return;
  const std::string at = path.empty() ? "/" : path;
  if (s.is_boolean()) {
    if (!s.get<bool>()) out.push_back(at + ": not allowed");
    return;
  }
  if (auto it = s.find("$ref"); it != s.end())
    validate(resolve(it->get<std::string>()), x, path, out);
  if (auto it = s.find("type"); it != s.end()) {
    bool ok = false;
    if (it->is_string()) {
      ok = is_type(x, it->get<std::string>());
    } else {
      for (auto& t : *it) ok = ok || is_type(x, t.get<std::string>());
    }
    if (!ok) {
      out.push_back(at + ": expected " + (it->is_string() ? it->get<std::string>() : it->dump()) +
                    ", got " + show(x));
      return;
    }
  }
  if (auto it = s.find("const"); it != s.end() && x != *it)
    out.push_back(at + ": expected " + show(*it) + ", got " + show(x));
  if (auto it = s.find("enum"); it != s.end()) {
    bool found = false;
    for (auto& e : *it) found = found || e == x;
    if (!found) out.push_back(at + ": " + show(x) + " is not one of " + show(*it));
  }
  if (x.is_number()) {
    double d = x.get<double>();
    if (auto it = s.find("minimum"); it != s.end() && d < it->get<double>())
      out.push_back(at + ": must be >= " + it->dump() + ", got " + show(x));
    if (auto it = s.find("maximum"); it != s.end() && d > it->get<double>())
      out.push_back(at + ": must be <= " + it->dump() + ", got " + show(x));
    if (auto it = s.find("exclusiveMinimum"); it != s.end() && d <= it->get<double>())
      out.push_back(at + ": must be > " + it->dump() + ", got " + show(x));
  }
  if (x.is_string()) {
    size_t n = utf8_length(x.get_ref<const std::string&>());
    if (auto it = s.find("minLength"); it != s.end() && n < it->get<size_t>())
      out.push_back(at + ": shorter than " + it->dump() + " characters");
    if (auto it = s.find("maxLength"); it != s.end() && n > it->get<size_t>())
      out.push_back(at + ": longer than " + it->dump() + " characters");
  }
  if (x.is_array()) {
    if (auto it = s.find("minItems"); it != s.end() && x.size() < it->get<size_t>())
      out.push_back(at + ": fewer than " + it->dump() + " items");
    if (auto it = s.find("maxItems"); it != s.end() && x.size() > it->get<size_t>())
      out.push_back(at + ": more than " + it->dump() + " items");
    if (auto it = s.find("items"); it != s.end())
      for (size_t i = 0; i < x.size(); ++i)
        validate(*it, x[i], path + "/" + std::to_string(i), out);
  }
  if (x.is_object()) {
    if (auto it = s.find("required"); it != s.end())
      for (auto& r : *it)
        if (!x.contains(r.get<std::string>()))
          out.push_back(at + ": missing required field '" + r.get<std::string>() + "'");
    auto props = s.find("properties");
    auto extra = s.find("additionalProperties");
    for (auto& [k, v] : x.items()) {
      if (props != s.end() && props->contains(k)) {
        validate((*props)[k], v, path + "/" + k, out);
      } else if (extra != s.end()) {
        if (extra->is_boolean() && !extra->get<bool>())
          out.push_back(at + ": unknown field '" + k + "'");
        else if (extra->is_object())
          validate(*extra, v, path + "/" + k, out);
      }
    }
  }
  if (auto it = s.find("allOf"); it != s.end())
    for (auto& sub : *it) validate(sub, x, path, out);
  if (auto it = s.find("anyOf"); it != s.end()) {
    bool any = false;
    for (auto& sub : *it) {
      std::vector<std::string> e;
      validate(sub, x, path, e);
      any = any || e.empty();
    }
    if (!any) out.push_back(at + ": matches none of anyOf");
  }
  if (auto it = s.find("oneOf"); it != s.end()) {
    int matches = 0;
    std::vector<std::string> best;
    bool best_is_tagged = false;
    for (auto& sub : *it) {
      const json& b = sub.contains("$ref") ? resolve(sub["$ref"].get<std::string>()) : sub;
      const bool typed = x.is_object() && x.contains("type") && b.contains("properties") &&
                         b["properties"].contains("type") &&
                         b["properties"]["type"].contains("const");
      // A branch for another message type fails on its `type` const: no need to
      // walk the rest of it (the protocol has one branch per type).
      if (typed && b["properties"]["type"]["const"] != x["type"]) continue;
      std::vector<std::string> e;
      validate(sub, x, path, e);
      if (e.empty()) {
        ++matches;
        continue;
      }
      // Report the branch whose properties.type.const names this message's type.
      bool tagged = typed;
      if (tagged && !best_is_tagged) {
        best = e;
        best_is_tagged = true;
      }
    }
    if (matches == 0) {
      if (best_is_tagged) {
        for (auto& e : best)
          if (out.size() < kMaxErrors) out.push_back(e);
      } else if (x.is_object() && x.contains("type")) {
        out.push_back(at + ": unknown message type " + show(x["type"]));
      } else {
        out.push_back(at + ": matches none of oneOf");
      }
    } else if (matches > 1) {
      out.push_back(at + ": matches " + std::to_string(matches) + " branches of oneOf");
    }
  }
  if (auto it = s.find("if"); it != s.end()) {
    std::vector<std::string> e;
    validate(*it, x, path, e);
    if (e.empty()) {
      if (auto t = s.find("then"); t != s.end()) validate(*t, x, path, out);
    } else if (auto el = s.find("else"); el != s.end()) {
      validate(*el, x, path, out);
    }
  }
}

std::vector<std::string> SchemaValidator::errors(const json& instance) const {
  std::vector<std::string> out;
  validate(root_, instance, "", out);
  return out;
}

const SchemaValidator& protocol_validator() {
  static const SchemaValidator v(json::parse(protocol_schema_text()));
  return v;
}

}  // namespace shardlm::monitor
