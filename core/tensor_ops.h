// Launchers of the element-wise kernels behind Tensor::fill, Tensor::to_dtype and Tensor::add_
// (gradient accumulation). They take raw device pointers already checked by tensor.cpp.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "strata/core/dtype.h"
#include "strata/core/memory_format.h"
#include "strata/core/shape.h"

namespace strata::detail {

// data (count) = value converted to dtype (convert_element), on stream.
void launch_fill(void* data, DType dtype, std::int64_t count, double value, cudaStream_t stream);

// destination (count) = source (count) converted from source_dtype to destination_dtype.
void launch_convert(const void* source, DType source_dtype, void* destination, DType destination_dtype,
                    std::int64_t count, cudaStream_t stream);

// y (count) = a (count) + alpha * b (count), all of dtype f32, f16 or bf16 (InvalidArgument
// otherwise): computed in f32 as one fused multiply-add and rounded once to dtype; y may be
// a or b.
void launch_add(const void* a, const void* b, void* y, DType dtype, std::int64_t count, float alpha,
                cudaStream_t stream);

// destination (destination_dtype) = source's elements of the 4-D shape (source_dtype), laid out
// in destination_format from the other format (source in it), each converted as
// convert_element does (a move of bits when the dtypes agree), on stream. source and
// destination must not overlap.
void launch_convert_memory_format(const void* source, DType source_dtype, void* destination,
                                  DType destination_dtype, const Shape& shape, MemoryFormat destination_format,
                                  cudaStream_t stream);
// The same on the calling thread, for host memory.
void convert_memory_format_on_host(const void* source, void* destination, DType dtype, const Shape& shape,
                                   MemoryFormat destination_format);

// Blocks for a grid-stride loop over count items: enough to fill the device, no more.
unsigned grid_stride_blocks(std::int64_t count, unsigned threads_per_block);

}  // namespace strata::detail
