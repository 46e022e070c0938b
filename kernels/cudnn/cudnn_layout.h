// The memory order Strata describes an activation in to cuDNN, shared by both builds (the
// launchers key their checks and plans on it; kernels/cudnn/cudnn_common.h makes the
// descriptor from it).
#pragma once

#include "strata/core/memory_format.h"
#include "strata/core/tensor.h"

namespace strata::kernels {

// NHWC (channels_last) only where it differs from NCHW in memory: a channels-last tensor
// whose two layouts coincide (C == 1 or H * W == 1) is described as NCHW, so that it shares
// the contiguous tensor's cuDNN plan and algorithms.
inline MemoryFormat cudnn_memory_format(const Tensor& activation) {
  return activation.is_contiguous() ? MemoryFormat::contiguous : MemoryFormat::channels_last;
}

}  // namespace strata::kernels
