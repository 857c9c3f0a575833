// `shardlm monitor`: the metrics aggregator and dashboard server of a run
// directory (monitor/aggregator.h), in the foreground until SIGINT/SIGTERM.
#include <cstdio>

#include "core/config.h"
#include "launcher/app.h"
#include "monitor/aggregator.h"
#include "monitor/config.h"

namespace shardlm::launcher {

void register_monitor(CLI::App& app, Context& ctx, Command& run) {
  auto* cmd =
      app.add_subcommand("monitor", "Serve live metrics, control and the dashboard of a run");
  struct Options {
    int port = -1;
    std::string run_dir, bind, static_dir, config, launch;
    int threads = 0;
    bool no_producer_auth = false, viewer_auth = false;
  };
  auto o = std::make_shared<Options>();
  cmd->add_option("--run-dir,-d", o->run_dir,
                  "Run directory (metrics.jsonl, monitor.token, checkpoints/)")
      ->required();
  cmd->add_option("--port,-p", o->port,
                  "TCP port for WebSocket and HTTP (default 8765; 0 = any free)");
  cmd->add_option("--bind", o->bind, "Address to listen on (default 127.0.0.1)");
  cmd->add_option("--static", o->static_dir,
                  "The dashboard's built files (default monitor/dashboard/dist)");
  cmd->add_option("--config,-c", o->config,
                  "A run configuration whose [monitor] section gives the defaults");
  cmd->add_option(
      "--launch", o->launch,
      "Command line that starts a run, e.g. \"mpirun -n 2 {shardlm} train --config {config} "
      "{resume_args}\"");
  cmd->add_option("--threads", o->threads, "io threads (default 1)");
  cmd->add_flag("--no-producer-auth", o->no_producer_auth,
                "Accept ranks without the token (monitor.producer_auth = false; trusted networks "
                "only: anyone who reaches the port can then inject metrics and get rank 0's "
                "commands)");
  cmd->add_flag("--viewer-auth", o->viewer_auth,
                "Viewers need a token too (monitor.viewer_auth): the control token, or the rating "
                "token of a rater's link; /api/* and /metrics answer 401 without one");
  cmd->callback([&ctx, &run, o] {
    run = [&ctx, o] {
      ctx.env();  // logging prefix; no MPI needed
      monitor::MonitorConfig mc;
      if (!o->config.empty())
        mc = core::RunConfig::load(o->config).get<monitor::MonitorConfig>("monitor");
      if (o->port >= 0) mc.port = o->port;
      if (!o->bind.empty()) mc.bind = o->bind;
      if (!o->static_dir.empty()) mc.static_dir = o->static_dir;
      if (!o->launch.empty()) mc.launch_command = o->launch;
      if (o->threads > 0) mc.threads = o->threads;
      if (o->no_producer_auth) mc.producer_auth = false;
      if (o->viewer_auth) mc.viewer_auth = true;
      mc.validate();
      monitor::AggregatorConfig ac = mc.aggregator(o->run_dir);
      ac.handle_signals = true;
      monitor::Aggregator agg(ac);
      agg.start();
      std::printf("shardlm monitor: listening on %s (WebSocket %sws)\n", agg.url().c_str(),
                  ("ws" + agg.url().substr(4)).c_str());
      std::printf(
          "shardlm monitor: control token %s (also in %s/monitor.token; ranks need it: "
          "train.run_dir = that dir, or monitor.token)\n",
          agg.token().c_str(), o->run_dir.c_str());
      std::printf(
          "shardlm monitor: rater link %s?token=%s#rate (the rating token, also in "
          "%s/monitor.rating-token: it may vote, not control)\n",
          agg.url().c_str(), agg.rating_token().c_str(), o->run_dir.c_str());
      if (mc.viewer_auth) std::printf("shardlm monitor: viewers need a token (viewer_auth)\n");
      std::printf("shardlm monitor: port %u\n", static_cast<unsigned>(agg.port()));
      std::fflush(stdout);
      agg.wait();
      std::printf("shardlm monitor: stopped\n");
      return 0;
    };
  });
}

}  // namespace shardlm::launcher
