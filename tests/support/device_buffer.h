// Raw device memory for the tests of device primitives (wgmma, TMA) whose kernels take plain
// pointers: cudaMalloc'd on construction, freed on destruction, copied to and from host vectors.
//   strata::testing::DeviceBuffer<float> d(64 * 128);
//   d.upload(values);  ...  const std::vector<float> result = d.download();
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <vector>

#include "core/check.h"

namespace strata::testing {

template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(std::size_t count) : count_(count) {
    void* data = nullptr;
    STRATA_CUDA_CHECK(cudaMalloc(&data, count * sizeof(T)), "test buffer of {} elements", count);
    data_ = static_cast<T*>(data);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { cudaFree(data_); }

  T* data() const { return data_; }
  std::size_t count() const { return count_; }

  // Copies values (at most count() of them) to the start of the buffer.
  void upload(const std::vector<T>& values) const {
    STRATA_CUDA_CHECK(cudaMemcpy(data_, values.data(), values.size() * sizeof(T), cudaMemcpyHostToDevice),
                      "test buffer upload");
  }
  std::vector<T> download() const {
    std::vector<T> values(count_);
    STRATA_CUDA_CHECK(cudaMemcpy(values.data(), data_, count_ * sizeof(T), cudaMemcpyDeviceToHost),
                      "test buffer download");
    return values;
  }

 private:
  T* data_ = nullptr;
  std::size_t count_;
};

}  // namespace strata::testing
