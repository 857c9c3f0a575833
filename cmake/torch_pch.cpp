// Translation unit that owns the shared LibTorch precompiled header.
#include "torch_pch.h"
