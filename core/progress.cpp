// ProgressBar (see progress.h).
#include "core/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace shardlm::core {

ProgressBar::ProgressBar(Options o)
    : o_(std::move(o)),
      tty_(o_.tty >= 0 ? o_.tty != 0 : isatty(fileno(o_.out)) != 0),
      start_(std::chrono::steady_clock::now()) {}

ProgressBar::~ProgressBar() {
  if (line_open_) std::fputc('\n', o_.out);
}

double ProgressBar::seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

std::string ProgressBar::format_duration(double s) {
  if (!std::isfinite(s) || s < 0 || s > 1e8) return "?";
  auto t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600) return fmt::format("{}:{:02}:{:02}", t / 3600, (t / 60) % 60, t % 60);
  return fmt::format("{}:{:02}", t / 60, t % 60);
}

std::string ProgressBar::si(double v) {
  if (v >= 1e9) return fmt::format("{:.2f}G", v / 1e9);
  if (v >= 1e6) return fmt::format("{:.2f}M", v / 1e6);
  if (v >= 1e3) return fmt::format("{:.1f}k", v / 1e3);
  return fmt::format("{:.0f}", v);
}

std::string ProgressBar::line(double done, const std::string& fields) const {
  std::string s;
  if (o_.total > 0) {
    const double frac = std::clamp(done / o_.total, 0.0, 1.0);
    const int width = 20, filled = static_cast<int>(frac * width);
    s = fmt::format("[{}{}] ", std::string(filled, '#'), std::string(width - filled, '.'));
  }
  if (!o_.label.empty()) s += o_.label + " ";
  if (o_.total > 0) s += fmt::format("{:.1f}%", 100.0 * std::clamp(done / o_.total, 0.0, 1.0));
  if (!fields.empty()) s += (s.empty() ? "" : " | ") + fields;
  if (o_.total > 0) {
    const double eta = finished_ ? 0 : rate_ > 0 ? (o_.total - done) / rate_ : -1;
    s += fmt::format(" | ETA {}", format_duration(eta));
  }
  return s;
}

void ProgressBar::update(double done, const std::string& fields) {
  const double now = seconds();
  // Exponential average of the rate between updates: a steady ETA.
  if (now > last_t_ && done > last_done_) {
    const double r = (done - last_done_) / (now - last_t_);
    rate_ = rate_ == 0 ? r : 0.9 * rate_ + 0.1 * r;
    last_done_ = done;
    last_t_ = now;
  }
  if (!o_.enabled) return;
  const bool last = o_.total > 0 && done >= o_.total;
  if (!last && now - last_print_ < (tty_ ? 0.2 : o_.plain_every_s)) return;
  last_print_ = now;
  print(line(done, fields), false);
}

void ProgressBar::print(const std::string& text, bool final) {
  if (tty_) {
    std::fprintf(o_.out, "\r\033[K%s%s", text.c_str(), final ? "\n" : "");
    line_open_ = !final;
  } else {
    std::fprintf(o_.out, "%s\n", text.c_str());
  }
  std::fflush(o_.out);
}

void ProgressBar::message(const std::string& text) {
  if (!o_.enabled) return;
  if (line_open_) std::fputc('\n', o_.out);
  line_open_ = false;
  std::fprintf(o_.out, "%s\n", text.c_str());
  std::fflush(o_.out);
}

void ProgressBar::finish(const std::string& fields) {
  if (!o_.enabled || finished_) return;
  finished_ = true;
  std::string text = line(o_.total > 0 ? o_.total : last_done_, fields);
  print(text + " (" + format_duration(seconds()) + ")", true);
}

}  // namespace shardlm::core
