// What batch_norm2d.cu and batch_norm2d_activation.cu share: the kernels, templated on the
// activation applied after the normalisation (IdentityActivation for plain batch norm), and
// their launchers; the argument checks, which name the calling op, are batch_norm2d_checks.h.
// One code path for both ops: where the fused op computes what batch norm followed by the
// activation's own kernel computes, it gives the same bits.
//
// The per-channel sums (statistics, backward) add in double in a fixed order
// (channel_reduction.cuh): deterministic and accurate. The element-wise kernels normalise and
// compute dL/dx, 16 bytes at a time where the layout allows; an activation's backward is
// evaluated on the pre-activation z = BN(x), recomputed from x and the saved statistics
// rather than stored.
//
// Channels-last x (strata/core/memory_format.h) runs the same kernels: ChannelLayout maps a
// channel's k-th value and a memory index to their places in either layout, and every
// per-channel sum visits the values in the same k = n * H * W + h * W + w order with the same
// chains, so the statistics, the parameter gradients and every element of y and dL_dx are
// bit for bit those of the contiguous layout (tested); in channels-last the reductions run
// neighbouring channels on neighbouring threads, so that their loads are coalesced.
// x, y, dL_dy and dL_dx share one layout (the checks refuse a mix).
//
// The kernels are templated on T, the storage of x, y, dL_dy and dL_dx (float, __half,
// __nv_bfloat16): each element is converted to float where it is read and rounded once to T
// where it is stored; everything between is the f32 path's arithmetic (float, and double for
// the sums), so f32 gives the same bits as before and f16/bf16 the f32 result of the same
// inputs, rounded once. The per-channel tensors are always float.
#pragma once

#include <cstdint>

#include "core/elementwise_map.cuh"
#include "kernels/channel_indexer.h"
#include "kernels/channel_reduction.cuh"
#include "kernels/channel_stats.h"
#include "kernels/common.cuh"
#include "kernels/memory_elements.h"
#include "strata/core/tensor.h"
#include "strata/kernels/batch_norm2d.h"

namespace strata::kernels::batch_norm {

using detail::dispatch_floating_dtype;
using detail::load_as_float;
using detail::store_from_float;

inline constexpr int kChannelThreads = 256;  // one block per channel combines a producer's partials

// x (N, C, H, W) seen as C channels of N planes of H * W values, in memory as (N, C, H, W) or,
// channels_last, as (N, H, W, C).
struct ChannelLayout {
  std::int64_t batch;
  std::int64_t channels;
  std::int64_t plane;  // H * W
  bool channels_last;

  // Index in x's memory of the k-th value of channel c, k = n * H * W + h * W + w in
  // [0, N * H * W): the same k order in both layouts, so sums over k are too.
  __host__ __device__ std::int64_t element(std::int64_t k, std::int64_t c) const {
    if (channels_last) return k * channels + c;
    const std::int64_t n = k / plane;
    return (n * channels + c) * plane + (k - n * plane);
  }
  __host__ __device__ std::int64_t values_per_channel() const { return batch * plane; }
  __host__ __device__ std::int64_t size() const { return batch * channels * plane; }
  channel_reduction::Extent reduction_extent() const { return {batch, channels, plane, channels_last}; }
};

// x's layout; y, dL_dy and dL_dx share it (checked). A channels-last x whose layouts coincide
// (C == 1 or H * W == 1) reads as contiguous.
inline ChannelLayout layout_of(const Tensor& x) {
  return ChannelLayout{.batch = x.size(0), .channels = x.size(1), .plane = x.size(2) * x.size(3),
                       .channels_last = !x.is_contiguous()};
}

// The channel of each memory index of a tensor of layout.
inline ChannelIndexer channel_indexer(const ChannelLayout& layout) {
  return ChannelIndexer(layout.channels, layout.plane, layout.channels_last);
}

// The per-channel affine map z = (x - mean) * invstd * weight + bias. spread holds invstd
// (training: the saved statistics) or, when spread_is_variance, the running variance (eval),
// turned into invstd as 1 / sqrtf(var + eps) wherever it is needed: the same float each time.
struct ChannelTransform {
  const float* mean;        // (C)
  const float* spread;      // (C)
  bool spread_is_variance;  // eval: spread is the running variance
  float eps;
  const float* weight;  // (C), or null: 1
  const float* bias;    // (C), or null: 0

  __device__ float invstd(std::int64_t c) const {
    return spread_is_variance ? 1.0f / sqrtf(spread[c] + eps) : spread[c];
  }

  // z for x in channel c, rounded in the same order by every kernel: the backward recomputes
  // the forward's z bit for bit.
  __device__ float apply(float x, std::int64_t c, float channel_invstd) const {
    float value = (x - mean[c]) * channel_invstd;
    if (weight != nullptr) value *= weight[c];
    if (bias != nullptr) value += bias[c];
    return value;
  }
};

// Plain batch norm: y = z, and dL/dz = dL/dy without reading x.
struct IdentityActivation {
  static constexpr bool kReadsPreactivation = false;
  __device__ float forward(float z) const { return z; }
  __device__ float backward(float dL_dy, float /*z*/) const { return dL_dy; }
};

// An activation made of a forward functor op(z) and a backward one op(dL_dy, z)
// (activation_ops.cuh).
template <typename ForwardOp, typename BackwardOp>
struct PointwiseActivation {
  static constexpr bool kReadsPreactivation = true;
  __device__ float forward(float z) const { return ForwardOp{}(z); }
  __device__ float backward(float dL_dy, float z) const { return BackwardOp{}(dL_dy, z); }
};

// dL/dz at one element from dL/dy there: z recomputed from x when the activation needs it.
template <typename Activation>
__device__ __forceinline__ float preactivation_gradient(const Activation& activation,
                                                        const ChannelTransform& transform, float dL_dy, float x,
                                                        std::int64_t c, float channel_invstd) {
  if constexpr (Activation::kReadsPreactivation) {
    return activation.backward(dL_dy, transform.apply(x, c, channel_invstd));
  } else {
    return dL_dy;
  }
}

// ---- element-wise passes ----------------------------------------------------------------
//
// Each computes one output element from the inputs at the same index and its channel's
// constants (an ElementOp: float operator()(std::int64_t c, float... inputs) const). They walk
// memory in 16-byte vectors of T (8 f16/bf16 or 4 f32 elements) where every pointer is
// 16-byte aligned and a vector's channels follow from its first element's: contiguous with
// H * W a multiple of the vector (one channel per vector), channels-last with C a multiple of
// it (consecutive channels); one channel computation per vector instead of per element. The
// rest, and other layouts, go element by element. Each element's arithmetic is the same
// either way, so the results are the same bits.

// Elements of T per 16-byte vector.
template <typename T>
inline constexpr int kLanes = static_cast<int>(detail::kVectorLanes<T>);

// The inputs of an element-wise pass, all of T.
template <typename T, int kInputs>
struct ElementInputs {
  const T* data[kInputs];
};

// How many leading 16-byte vectors of out and in the element-wise passes take whole (0 when
// they cannot).
template <typename T, int kInputs>
std::int64_t whole_vectors(const ChannelLayout& layout, const T* out, const ElementInputs<T, kInputs>& in) {
  bool aligned = detail::is_16_byte_aligned(out);
  for (const T* data : in.data) aligned = aligned && detail::is_16_byte_aligned(data);
  const bool channels_follow =
      layout.channels_last ? layout.channels % kLanes<T> == 0 : layout.plane % kLanes<T> == 0;
  return aligned && channels_follow ? layout.size() / kLanes<T> : 0;
}

// op(c, inputs[0], ...) for kInputs of 1 or 2.
template <typename ElementOp, int kInputs>
__device__ __forceinline__ float apply_element_op(const ElementOp& op, std::int64_t c, const float (&inputs)[kInputs]) {
  static_assert(kInputs == 1 || kInputs == 2, "unary and binary passes");
  if constexpr (kInputs == 1) {
    return op(c, inputs[0]);
  } else {
    return op(c, inputs[0], inputs[1]);
  }
}

// out[i] = op(c, in[0][i], ...) for every element i of channel c: the first vector_count
// vectors 16 bytes at a time, the rest one element at a time.
template <typename T, typename ElementOp, int kInputs>
__global__ void channel_map_kernel(ChannelLayout layout, ChannelIndexer channel_indexer, std::int64_t vector_count,
                                   ElementOp op, T* out, ElementInputs<T, kInputs> in) {
  using Vector = detail::VectorOf<T>;
  const std::int64_t first = global_thread_index();
  const std::int64_t stride = global_thread_count();
  const std::int64_t channel_step = layout.channels_last ? 1 : 0;
  for (std::int64_t v = first; v < vector_count; v += stride) {
    const std::int64_t c0 = channel_indexer.channel_of(v * kLanes<T>);
    alignas(16) T lanes[kInputs][kLanes<T>];
    STRATA_UNROLL
    for (int input = 0; input < kInputs; ++input) {
      *reinterpret_cast<Vector*>(lanes[input]) = reinterpret_cast<const Vector*>(in.data[input])[v];
    }
    alignas(16) T out_lanes[kLanes<T>];
    STRATA_UNROLL
    for (int lane = 0; lane < kLanes<T>; ++lane) {
      float values[kInputs];
      STRATA_UNROLL
      for (int input = 0; input < kInputs; ++input) values[input] = detail::convert_element<float>(lanes[input][lane]);
      out_lanes[lane] = detail::convert_element<T>(apply_element_op(op, c0 + lane * channel_step, values));
    }
    reinterpret_cast<Vector*>(out)[v] = *reinterpret_cast<const Vector*>(out_lanes);
  }
  const std::int64_t size = layout.size();
  for (std::int64_t i = vector_count * kLanes<T> + first; i < size; i += stride) {
    float values[kInputs];
    STRATA_UNROLL
    for (int input = 0; input < kInputs; ++input) values[input] = load_as_float(in.data[input], i);
    store_from_float(out, i, apply_element_op(op, channel_indexer.channel_of(i), values));
  }
}

// y = activation(z), z = transform(x).
template <typename Activation>
struct ApplyOp {
  ChannelTransform transform;
  Activation activation;
  __device__ float operator()(std::int64_t c, float x) const {
    return activation.forward(transform.apply(x, c, transform.invstd(c)));
  }
};

// Per channel (channel_reduction.cuh): the sums of dL/dz and of dL/dz * x_hat in double.
// They are dL/dbias and dL/dweight; their means over the channel go to channel_terms for the
// dL/dx kernel.
template <typename T, typename Activation>
struct BackwardReduction {
  static constexpr int kSums = 2;  // dL/dz, dL/dz * (x - mean)
  struct Channel {
    double mean;
    float invstd;  // the same float as the forward used
  };

  const T* dL_dy;  // (N, C, H, W)
  const T* x;      // (N, C, H, W)
  ChannelLayout layout;
  ChannelTransform transform;
  Activation activation;
  float* dL_dweight;     // (C) or null
  float* dL_dbias;       // (C) or null
  float* channel_terms;  // (2, C)

  __device__ Channel channel(std::int64_t c) const { return {transform.mean[c], transform.invstd(c)}; }
  __device__ void add(const Channel& channel, std::int64_t index, std::int64_t c, double (&sums)[kSums]) const {
    const float x_value = load_as_float(x, index);
    const double dz =
        preactivation_gradient(activation, transform, load_as_float(dL_dy, index), x_value, c, channel.invstd);
    sums[0] += dz;
    sums[1] += dz * (static_cast<double>(x_value) - channel.mean);
  }
  __device__ void finish(const Channel& channel, std::int64_t c, const double (&sums)[kSums]) const {
    const double sum_dz = sums[0];
    const double sum_dz_normalized = sums[1] * static_cast<double>(channel.invstd);
    if (dL_dweight != nullptr) dL_dweight[c] = static_cast<float>(sum_dz_normalized);
    if (dL_dbias != nullptr) dL_dbias[c] = static_cast<float>(sum_dz);
    const double n = static_cast<double>(layout.values_per_channel());
    channel_terms[c] = static_cast<float>(sum_dz / n);
    channel_terms[layout.channels + c] = static_cast<float>(sum_dz_normalized / n);
  }
};

// Training: dL/dx = weight * invstd * (dL/dz - mean(dL/dz) - x_hat * mean(dL/dz * x_hat)).
template <typename Activation>
struct BackwardDataOp {
  ChannelTransform transform;
  Activation activation;
  const float* channel_terms;  // (2, C)
  std::int64_t channels;
  __device__ float operator()(std::int64_t c, float dL_dy, float x) const {
    const float invstd = transform.invstd(c);
    const float normalized = (x - transform.mean[c]) * invstd;
    const float scale = transform.weight != nullptr ? transform.weight[c] * invstd : invstd;
    const float dL_dz = preactivation_gradient(activation, transform, dL_dy, x, c, invstd);
    return scale * (dL_dz - channel_terms[c] - normalized * channel_terms[channels + c]);
  }
};

// Eval (the statistics are constants): z is an affine map of x, and dL/dx is that map's
// slope times dL/dz, dL/dz * invstd * weight.
template <typename Activation>
struct EvalBackwardDataOp {
  ChannelTransform transform;
  Activation activation;
  __device__ float operator()(std::int64_t c, float dL_dy, float x) const {
    const float invstd = transform.invstd(c);
    float value = preactivation_gradient(activation, transform, dL_dy, x, c, invstd) * invstd;
    if (transform.weight != nullptr) value *= transform.weight[c];
    return value;
  }
};

// ---- launchers -------------------------------------------------------------------------

// The training statistics of x: saved (mean, invstd) written, running updated when defined
// (batch_norm2d.cu); from partials (a producer's, checked) instead of a pass over x when given.
void launch_statistics(const Tensor& x, const BatchNormParams& params, const ChannelPartials* partials,
                       BatchNormSaved& saved, BatchNormRunningStats& running, cudaStream_t stream);

// Threads for channel_map_kernel: enough for the larger of its vector loop and its tail.
template <typename T>
LaunchConfig element_launch_config(const ChannelLayout& layout, std::int64_t vectors, cudaStream_t stream,
                                   const char* name) {
  return detail::map_launch_config(layout.size(), vectors, kLanes<T>, stream, name);
}

// y = activation(transform(x)), y of x's dtype; name is the kernel's, for errors and profiles.
template <typename Activation>
void launch_apply(const Tensor& x, const ChannelTransform& transform, Activation activation, Tensor& y,
                  const char* name, cudaStream_t stream) {
  const ChannelLayout layout = layout_of(x);
  dispatch_floating_dtype(x.dtype(), name, [&](auto type) {
    using T = typename decltype(type)::type;
    const ElementInputs<T, 1> in{{memory_elements<T>(x)}};
    T* y_data = memory_elements<T>(y);
    const std::int64_t vectors = whole_vectors(layout, y_data, in);
    launch(channel_map_kernel<T, ApplyOp<Activation>, 1>, element_launch_config<T>(layout, vectors, stream, name),
           layout, channel_indexer(layout), vectors, ApplyOp<Activation>{transform, activation}, y_data, in);
  });
}

// The kernels' names, per op: "<op>_backward_reduce" and so on.
struct BackwardKernelNames {
  const char* reduce;
  const char* data;
};

// The gradients asked for (each undefined one skipped), training mode when
// !transform.spread_is_variance, else eval; dL_dy, x and dL_dx of one dtype, the parameter
// gradients f32. The caller has checked the arguments.
template <typename Activation>
void launch_backward(const Tensor& dL_dy, const Tensor& x, const ChannelTransform& transform, Activation activation,
                     BatchNormGradients& gradients, const BackwardKernelNames& names, cudaStream_t stream) {
  const bool training = !transform.spread_is_variance;
  const bool parameter_gradients = gradients.dL_dweight.defined() || gradients.dL_dbias.defined();
  if (!gradients.dL_dx.defined() && !parameter_gradients) return;
  const ChannelLayout layout = layout_of(x);
  dispatch_floating_dtype(x.dtype(), names.reduce, [&](auto type) {
    using T = typename decltype(type)::type;
    // Training's dL/dx needs the channel sums even when no parameter gradient is asked for.
    Tensor channel_terms;  // (2, C)
    if (training || parameter_gradients) {
      channel_terms = Tensor::empty({2, layout.channels}, DType::f32, stream);
      const BackwardReduction<T, Activation> reduction{
          memory_elements<T>(dL_dy),
          memory_elements<T>(x),
          layout,
          transform,
          activation,
          gradients.dL_dweight.defined() ? gradients.dL_dweight.data<float>() : nullptr,
          gradients.dL_dbias.defined() ? gradients.dL_dbias.data<float>() : nullptr,
          channel_terms.data<float>()};
      channel_reduction::launch(reduction, layout.reduction_extent(), stream, names.reduce);
    }
    if (!gradients.dL_dx.defined()) return;
    const ElementInputs<T, 2> in{{memory_elements<T>(dL_dy), memory_elements<T>(x)}};
    T* dL_dx_data = memory_elements<T>(gradients.dL_dx);
    const std::int64_t vectors = whole_vectors(layout, dL_dx_data, in);
    const LaunchConfig config = element_launch_config<T>(layout, vectors, stream, names.data);
    if (training) {
      const BackwardDataOp<Activation> op{transform, activation, channel_terms.data<float>(), layout.channels};
      launch(channel_map_kernel<T, BackwardDataOp<Activation>, 2>, config, layout, channel_indexer(layout), vectors, op,
             dL_dx_data, in);
    } else {
      launch(channel_map_kernel<T, EvalBackwardDataOp<Activation>, 2>, config, layout, channel_indexer(layout),
             vectors, EvalBackwardDataOp<Activation>{transform, activation}, dL_dx_data, in);
    }
  });
}

inline const float* data_or_null(const Tensor& tensor) { return tensor.defined() ? tensor.data<float>() : nullptr; }

}  // namespace strata::kernels::batch_norm
