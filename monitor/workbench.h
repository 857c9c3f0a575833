// The aggregator's side of the dashboard's workbench tabs (docs/workbench.md):
//   - Rate: blind pairwise votes in RUN_DIR/ratings.db (ratings_store.h), the
//     next pair for a rater, the votes for the live leaderboard, and new
//     comparisons generated from two checkpoints (or servers);
//   - Generate: generation from a checkpoint of the run or a `shardlm serve`
//     URL. Each request runs `shardlm generate --events` in a process of its
//     own (the aggregator links no LibTorch, and a crash or a huge checkpoint
//     costs that process, not the monitor); its JSON lines come back as
//     `inspect_result` messages with `partial: true` until the last one. The
//     live run's generation goes to rank 0 like any `inspect`;
//   - Evaluate: the JSON reports of `shardlm eval run --out` and `eval compare`
//     under RUN_DIR/eval, over HTTP (/api/evals, /api/evals/NAME).
// Messages: docs/monitor-protocol.md. Everything runs on the aggregator's
// io_context; the store is used under its own mutex.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

namespace shardlm::monitor {

struct WorkbenchConfig {
  std::string run_dir = ".";
  std::string shardlm;            // the executable that generates; "" = this one (/proc/self/exe)
  int max_workers = 4;            // generation processes at once; one more gets error busy
  double worker_timeout_s = 300;  // a generation process still running then is killed
};

class Workbench {
 public:
  // How the workbench answers: one viewer session (dropped when it has gone),
  // or every viewer (not kept in history).
  struct Io {
    std::function<void(uint64_t session, const nlohmann::json& msg)> send;
    std::function<void(const nlohmann::json& msg)> broadcast;
  };
  Workbench(WorkbenchConfig cfg, boost::asio::io_context& ioc, Io io);
  ~Workbench();  // kills the generation processes still running
  Workbench(const Workbench&) = delete;
  Workbench& operator=(const Workbench&) = delete;

  // Viewer requests, already checked against the schema; the caller has checked
  // the right to rate (rate_vote) or to control (rate_create). A refusal throws
  // ProtocolError (code, message) for the caller's `error` answer.
  void rate_next(uint64_t session, const nlohmann::json& msg);
  void rate_vote(uint64_t session, const nlohmann::json& msg);
  void rate_votes(uint64_t session, const nlohmann::json& msg);
  void rate_create(uint64_t session, const nlohmann::json& msg, const nlohmann::json& run_info);
  // An `inspect` with what = "generate" whose target is not the live run.
  void generate(uint64_t session, const nlohmann::json& msg, const nlohmann::json& run_info);

  // GET /api/evals (the list) and /api/evals/NAME.json (one report): status and
  // JSON body, or nullopt for a target that is not the workbench's.
  std::optional<std::pair<int, std::string>> http_get(const std::string& target);

  // Kills every generation process (the aggregator is stopping).
  void stop();

  // The argv of a generation process for `target` ("step-N", a checkpoint name
  // under RUN_DIR/checkpoints, or an http:// URL) and request `args`; public for
  // tests. Throws ProtocolError(not_found) for an unknown checkpoint.
  std::vector<std::string> worker_argv(const std::string& target, const nlohmann::json& args,
                                       const nlohmann::json& run_info) const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

// The tokenizer a run's checkpoints were trained with, from rank 0's run_info
// (its effective configuration): train.tokenizer, else tokenizer.json in
// data.path or its parent folder, the trainer's own search. "" when none exists.
std::string run_tokenizer(const nlohmann::json& run_info);

}  // namespace shardlm::monitor
