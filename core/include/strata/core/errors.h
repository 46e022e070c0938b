// Strata's exception hierarchy. Every failure a user can act on is one of these, with a
// message naming what failed (the call, the layer, the shapes) and where.
#pragma once

#include <cstddef>
#include <stdexcept>
#include <string>

#include <cuda_runtime_api.h>

namespace strata {

// Base of every exception Strata throws.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A caller passed something Strata cannot work with: wrong shapes, dtypes, parameters.
class InvalidArgument : public Error {
 public:
  using Error::Error;
};

// A feature that this build or this device does not provide (e.g. cuDNN in the simulator).
class NotSupported : public Error {
 public:
  using Error::Error;
};

// Reading or writing a file failed, or its contents are corrupt.
class IoError : public Error {
 public:
  using Error::Error;
};

// A CUDA runtime call or a kernel launch failed.
class CudaError : public Error {
 public:
  CudaError(const std::string& message, cudaError_t code) : Error(message), code_(code) {}
  cudaError_t code() const noexcept { return code_; }

 private:
  cudaError_t code_;
};

// A cuBLAS call failed; status is the cublasStatus_t value.
class CublasError : public Error {
 public:
  CublasError(const std::string& message, int status) : Error(message), status_(status) {}
  int status() const noexcept { return status_; }

 private:
  int status_;
};

// A cuDNN call failed; status is the cudnnStatus_t value.
class CudnnError : public Error {
 public:
  CudnnError(const std::string& message, int status) : Error(message), status_(status) {}
  int status() const noexcept { return status_; }

 private:
  int status_;
};

// Device memory could not be allocated even after the allocator released its cache.
class OutOfMemoryError : public Error {
 public:
  OutOfMemoryError(const std::string& message, std::size_t requested_bytes, std::size_t in_use_bytes,
                   std::size_t free_bytes)
      : Error(message), requested_bytes_(requested_bytes), in_use_bytes_(in_use_bytes), free_bytes_(free_bytes) {}
  std::size_t requested_bytes() const noexcept { return requested_bytes_; }
  std::size_t in_use_bytes() const noexcept { return in_use_bytes_; }
  std::size_t free_bytes() const noexcept { return free_bytes_; }

 private:
  std::size_t requested_bytes_;
  std::size_t in_use_bytes_;
  std::size_t free_bytes_;
};

// Writes a warning to stderr. Used where throwing is not allowed (destructors).
void log_warning(const std::string& message) noexcept;

}  // namespace strata
