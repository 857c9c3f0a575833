// Progress bar (see progress.h).
#include "data/progress.h"

#include <unistd.h>

#include <cstdio>

#include <fmt/format.h>

namespace shardlm::data {

std::string format_duration(double s) {
  if (s < 0 || s > 1e7) return "?";
  auto t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600) return fmt::format("{}:{:02}:{:02}", t / 3600, (t / 60) % 60, t % 60);
  return fmt::format("{}:{:02}", t / 60, t % 60);
}

namespace {
std::string si(double v) {
  if (v >= 1e9) return fmt::format("{:.2f}G", v / 1e9);
  if (v >= 1e6) return fmt::format("{:.2f}M", v / 1e6);
  if (v >= 1e3) return fmt::format("{:.1f}k", v / 1e3);
  return fmt::format("{:.0f}", v);
}
}  // namespace

Progress::Progress(std::string label, uint64_t total_bytes, bool enabled)
    : label_(std::move(label)),
      total_(total_bytes),
      enabled_(enabled),
      tty_(isatty(fileno(stderr)) != 0),
      start_(std::chrono::steady_clock::now()) {}

Progress::~Progress() {
  if (enabled_ && !finished_ && tty_) std::fputc('\n', stderr);
}

double Progress::seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

std::string Progress::line(double now) const {
  double mb = static_cast<double>(bytes_) / 1e6;
  double rate = now > 0 ? mb / now : 0, tok_rate = now > 0 ? static_cast<double>(tokens_) / now : 0;
  std::string s = fmt::format("{:<10}", label_);
  if (total_ > 0) {
    double frac = std::min(1.0, static_cast<double>(bytes_) / static_cast<double>(total_));
    int filled = static_cast<int>(frac * 20);
    s += fmt::format(" {:5.1f}% [{}{}] {:.1f}/{:.1f} MB", frac * 100, std::string(filled, '#'),
                     std::string(20 - filled, '.'), mb, static_cast<double>(total_) / 1e6);
    double eta = rate > 0 ? (static_cast<double>(total_) / 1e6 - mb) / rate : -1;
    s += fmt::format("  {:.2f} MB/s  {} tok/s  ETA {}", rate, si(tok_rate),
                     finished_ ? "0:00" : format_duration(eta));
  } else {
    s += fmt::format(" {:.1f} MB  {:.2f} MB/s  {} tok/s", mb, rate, si(tok_rate));
  }
  return s;
}

void Progress::update(uint64_t bytes_done, uint64_t tokens_done) {
  bytes_ = bytes_done;
  tokens_ = tokens_done;
  if (!enabled_) return;
  double now = seconds();
  if (now - last_print_ < (tty_ ? 0.2 : 10.0)) return;
  last_print_ = now;
  if (tty_)
    std::fprintf(stderr, "\r%s\033[K", line(now).c_str());
  else
    std::fprintf(stderr, "%s\n", line(now).c_str());
  std::fflush(stderr);
}

void Progress::finish() {
  if (!enabled_ || finished_) return;
  finished_ = true;
  if (total_ > 0) bytes_ = std::max(bytes_, total_);
  std::fprintf(stderr, "%s%s (%s)\n", tty_ ? "\r" : "", line(seconds()).c_str(),
               format_duration(seconds()).c_str());
  std::fflush(stderr);
}

}  // namespace shardlm::data
