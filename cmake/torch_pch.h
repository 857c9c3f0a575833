// The precompiled header shared by every target that includes LibTorch.
// Only headers that are expensive and stable belong here.
#pragma once
#include <torch/torch.h>
