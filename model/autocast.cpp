// Autocast state across LibTorch versions (see autocast.h).
#include "model/autocast.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

namespace shardlm::model {

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
AutocastState AutocastState::current() {
  AutocastState s;
  s.cpu = at::autocast::is_autocast_enabled(at::kCPU);
  s.cpu_dtype = at::autocast::get_autocast_dtype(at::kCPU);
  s.cuda = at::autocast::is_autocast_enabled(at::kCUDA);
  s.cuda_dtype = at::autocast::get_autocast_dtype(at::kCUDA);
  return s;
}
void AutocastState::apply() const {
  at::autocast::set_autocast_enabled(at::kCPU, cpu);
  at::autocast::set_autocast_dtype(at::kCPU, cpu_dtype);
  at::autocast::set_autocast_enabled(at::kCUDA, cuda);
  at::autocast::set_autocast_dtype(at::kCUDA, cuda_dtype);
  if (!cpu && !cuda) at::autocast::clear_cache();
}
#else
AutocastState AutocastState::current() {
  AutocastState s;
  s.cpu = at::autocast::is_cpu_enabled();
  s.cpu_dtype = at::autocast::get_autocast_cpu_dtype();
  s.cuda = at::autocast::is_enabled();
  s.cuda_dtype = at::autocast::get_autocast_gpu_dtype();
  return s;
}
void AutocastState::apply() const {
  at::autocast::set_cpu_enabled(cpu);
  at::autocast::set_autocast_cpu_dtype(cpu_dtype);
  at::autocast::set_enabled(cuda);
  at::autocast::set_autocast_gpu_dtype(cuda_dtype);
  if (!cpu && !cuda) at::autocast::clear_cache();
}
#endif

}  // namespace shardlm::model
