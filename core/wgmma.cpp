// wgmma::available() (core/wgmma_available.h).
#include "core/wgmma_available.h"

#include "strata/core/config.h"
#include "strata/core/device.h"

namespace strata::wgmma {

bool available() {
#if STRATA_BACKEND_SIM
  return true;
#else
  if (STRATA_WGMMA_BUILT == 0) return false;
  const DeviceProperties& device = device_properties();
  return device.compute_capability_major == 9 && device.compute_capability_minor == 0;
#endif
}

}  // namespace strata::wgmma
