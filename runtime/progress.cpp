// Progress line (see progress.h).
#include "runtime/progress.h"

#include <cmath>
#include <cstdio>

#include <fmt/format.h>

namespace shardlm::runtime {

Progress::Progress(int64_t total_steps, bool tty) : total_(total_steps), tty_(tty) {}

std::string Progress::format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  auto t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600) return fmt::format("{}h{:02}m", t / 3600, (t % 3600) / 60);
  if (t >= 60) return fmt::format("{}m{:02}s", t / 60, t % 60);
  return fmt::format("{}s", t);
}

void Progress::step(int64_t step, double loss, double lr, double grad_norm, double tokens_per_s,
                    double step_seconds, bool skipped) {
  // Exponential average of the step time for a steady ETA.
  ema_step_s_ = ema_step_s_ == 0 ? step_seconds : 0.9 * ema_step_s_ + 0.1 * step_seconds;
  double eta = ema_step_s_ * static_cast<double>(total_ - step);
  std::string tps = tokens_per_s >= 1e6   ? fmt::format("{:.2f}M", tokens_per_s / 1e6)
                    : tokens_per_s >= 1e3 ? fmt::format("{:.1f}k", tokens_per_s / 1e3)
                                          : fmt::format("{:.0f}", tokens_per_s);
  std::string gn = std::isfinite(grad_norm) ? fmt::format("{:.3f}", grad_norm) : "inf";
  std::string text = fmt::format(
      "step {}/{} | loss {:.4f} | lr {:.2e} | gnorm {} | {} tok/s | "
      "{:.3f} s/step | ETA {}{}",
      step, total_, loss, lr, gn, tps, step_seconds, format_duration(eta),
      skipped ? " | skipped (overflow)" : "");
  if (tty_) {
    int width = 20;
    int filled = total_ > 0 ? static_cast<int>(width * step / total_) : width;
    std::string bar(filled, '#');
    bar += std::string(width - filled, '.');
    std::printf("\r\033[K[%s] %s", bar.c_str(), text.c_str());
    line_open_ = true;
  } else {
    std::printf("%s\n", text.c_str());
  }
  std::fflush(stdout);
}

void Progress::message(const std::string& text) {
  if (line_open_) std::printf("\n");
  line_open_ = false;
  std::printf("%s\n", text.c_str());
  std::fflush(stdout);
}

void Progress::finish() {
  if (line_open_) std::printf("\n");
  line_open_ = false;
  std::fflush(stdout);
}

}  // namespace shardlm::runtime
