// ChatTemplate: how /v1/chat/completions turns messages into one prompt. A
// model may ship `chat_template.json` beside its weights (it is "stored with the
// model"); otherwise the default for base models is a plain transcript
//
//   System text\n\nUser: hi\nAssistant: hello\nUser: and?\nAssistant:
//
// which a model trained on ordinary text continues sensibly, and whose
// "\nUser:" stop string ends the assistant's turn. The file's form (every field
// optional but `roles`):
//
//   {"name": "chatml", "bos": "",
//    "roles": {"system": {"prefix": "<|im_start|>system\n", "suffix": "<|im_end|>\n"},
//              "user": {...}, "assistant": {...}},
//    "generation_prompt": "<|im_start|>assistant\n", "stop": ["<|im_end|>"]}
//
// A role-prefix/suffix form like llama.cpp's built-in templates rather than
// Jinja (no Jinja engine in C++ here). Torch-free.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "serve/protocol.h"

namespace shardlm::serve {

struct ChatTemplate {
  struct Role {
    std::string prefix, suffix;
  };
  std::string name = "default";
  std::string bos;                    // text before the first message
  std::map<std::string, Role> roles;  // system, user, assistant
  std::string generation_prompt;      // opens the assistant's turn
  std::vector<std::string> stop;      // added to every chat request's stop strings

  // The plain transcript above.
  static ChatTemplate base_default();
  // Throws ConfigError naming `where` and the field.
  static ChatTemplate from_json(const nlohmann::json& j, const std::string& where);
  // `chat_template.json` in the directory of `weights` (a file or a model
  // directory), else base_default().
  static ChatTemplate load_beside(const std::string& weights);

  // The prompt: bos, each message as prefix + content + suffix, then the
  // generation prompt. A role the template lacks is a RequestError naming it.
  std::string render(const std::vector<ChatMessage>& messages) const;
  nlohmann::json to_json() const;
};

}  // namespace shardlm::serve
