// Graceful stop: SIGINT/SIGTERM/SIGUSR1 set a flag that the trainer reads at
// each step boundary (it finishes the step, checkpoints, and exits). A second
// SIGINT restores the default action, so Ctrl-C twice still kills.
#pragma once

namespace shardlm::runtime {

enum class StopSignal { kNone = 0, kInterrupt, kTerminate, kPreempt /* SIGUSR1 */ };

// Installs the handlers (idempotent).
void install_stop_handlers();
// The first stop signal received since install (kNone if none).
StopSignal pending_stop_signal();
// For tests: pretend a signal arrived / forget it.
void raise_stop_signal(StopSignal s);
void clear_stop_signal();
const char* to_string(StopSignal s);

}  // namespace shardlm::runtime
