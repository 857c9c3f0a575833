// A validator for the subset of JSON Schema (2020-12) that
// monitor/protocol.schema.json uses, so that the aggregator checks every
// incoming message and the tests check every emitted one against the same
// file the dashboard's TypeScript types are tested with. Debian has no C++
// JSON Schema validator; this one refuses keywords it does not implement
// (a schema edit that needs one fails loudly instead of being ignored).
//
// Keywords: type, enum, const, properties, required, additionalProperties,
// items, minItems, maxItems, minimum, maximum, exclusiveMinimum, minLength,
// maxLength, $ref (local "#/..."), oneOf, anyOf, allOf, if/then/else;
// annotations ($schema, $id, $defs, title, description) are skipped.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace shardlm::monitor {

class SchemaValidator {
 public:
  // Throws ProtocolError("internal") when the schema uses an unsupported keyword.
  explicit SchemaValidator(nlohmann::json schema);
  // Errors of `instance`, each "path: what was expected" ("/args/lr: must be > 0");
  // empty when valid. Stops after a few errors.
  std::vector<std::string> errors(const nlohmann::json& instance) const;
  bool valid(const nlohmann::json& instance) const { return errors(instance).empty(); }

 private:
  void check_keywords(const nlohmann::json& s, const std::string& where) const;
  const nlohmann::json& resolve(const std::string& ref) const;
  void validate(const nlohmann::json& s, const nlohmann::json& x, const std::string& path,
                std::vector<std::string>& out) const;
  nlohmann::json root_;
};

// The embedded monitor/protocol.schema.json (the file is compiled in).
const std::string& protocol_schema_text();
// A validator for it, built once.
const SchemaValidator& protocol_validator();

}  // namespace shardlm::monitor
