// This thread's autocast dtype and cast cache (strata/core/autocast.h).
#include "strata/core/autocast.h"

#include <vector>

#include "core/check.h"
#include "core/format.h"
#include "strata/core/tensor.h"

namespace strata {
namespace {

thread_local std::optional<DType> current_autocast_dtype;
thread_local int guards_alive = 0;

struct CachedCast {
  Tensor source;  // keeps the source's storage, and so its address, alive
  DType dtype;
  bool recorded;
  Tensor cast;
};
// A model has tens to a few hundred parameters: a linear search per cast is cheap, and it
// compares element addresses as they are now (a memory plan may move a storage).
thread_local std::vector<CachedCast> cached_casts;

}  // namespace

std::optional<DType> autocast_dtype() noexcept { return current_autocast_dtype; }

AutocastGuard::AutocastGuard(std::optional<DType> dtype) : previous_(current_autocast_dtype) {
  STRATA_CHECK(!dtype || *dtype == DType::bf16 || *dtype == DType::f16,
               "AutocastGuard: autocast runs ops in bf16 or f16, not {} (pass std::nullopt to switch it off)", *dtype);
  current_autocast_dtype = dtype;
  ++guards_alive;
}

AutocastGuard::~AutocastGuard() {
  current_autocast_dtype = previous_;
  if (--guards_alive == 0) cached_casts.clear();
}

std::size_t autocast_cached_casts() noexcept { return cached_casts.size(); }

namespace detail {

const Tensor* autocast_cache_find(const Tensor& source, DType dtype, MemoryFormat format, bool recorded) {
  for (const CachedCast& entry : cached_casts) {
    if (entry.dtype == dtype && entry.cast.memory_format() == format && entry.recorded == recorded &&
        entry.source.shares_storage_with(source) && entry.source.data_ptr() == source.data_ptr() &&
        entry.source.shape() == source.shape()) {
      return &entry.cast;
    }
  }
  return nullptr;
}

void autocast_cache_insert(const Tensor& source, DType dtype, bool recorded, const Tensor& cast) {
  if (guards_alive == 0) return;
  cached_casts.push_back(CachedCast{source, dtype, recorded, cast});
}

}  // namespace detail

}  // namespace strata
