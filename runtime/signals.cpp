// Stop-signal handling (see signals.h). The handler only stores to an atomic.
#include "runtime/signals.h"

#include <atomic>
#include <csignal>

namespace shardlm::runtime {

namespace {
std::atomic<int> g_signal{0};

extern "C" void on_signal(int sig) {
  StopSignal s = sig == SIGINT    ? StopSignal::kInterrupt
                 : sig == SIGUSR1 ? StopSignal::kPreempt
                                  : StopSignal::kTerminate;
  // After the first Ctrl-C the default action is back: a second one kills at once.
  if (sig == SIGINT) std::signal(SIGINT, SIG_DFL);
  int expected = 0;
  g_signal.compare_exchange_strong(expected, static_cast<int>(s));
}
}  // namespace

void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGUSR1, &sa, nullptr);
}

StopSignal pending_stop_signal() {
  return static_cast<StopSignal>(g_signal.load());
}
void raise_stop_signal(StopSignal s) {
  g_signal = static_cast<int>(s);
}
void clear_stop_signal() {
  g_signal = 0;
}

const char* to_string(StopSignal s) {
  switch (s) {
    case StopSignal::kInterrupt:
      return "SIGINT";
    case StopSignal::kTerminate:
      return "SIGTERM";
    case StopSignal::kPreempt:
      return "SIGUSR1";
    default:
      return "none";
  }
}

}  // namespace shardlm::runtime
